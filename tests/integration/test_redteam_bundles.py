"""Red team of the idle-shim sweep (``containerd.bundles``) against a
tenant's process named like the log shim (commit e4ea28b).

Real containerd, runc and a container made by the daemon. The sweep kills a
runc shim only when its bundle is gone, it runs no container, and containerd
has no task for it; the first two are what ``idle_shims`` and
``kill_if_idle`` judge, and are judged here with the bundle out of sight (a
state directory without it), as after containerd lost the task.
"""

from __future__ import annotations

import os
from pathlib import Path

from contd_trio.containerd.bundles import LOG_SHIM_NAME, Shim, idle_shims, kill_if_idle
from contd_trio.module.client import ContainerClient
from contd_trio.module.types import Container, NetworkInfo
from tests.integration.faultkit import command_line
from tools import services

#: An entrypoint whose command line ends in the log shim's name: the
#: container's init looks like a log shim to a check by name alone.
DISGUISED = f"sh -c 'trap \"exit 0\" TERM; while true; do sleep 0.1 & wait; done' {LOG_SHIM_NAME}"


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


async def test_a_shim_whose_container_is_named_like_the_log_shim_is_not_idle(
    contd: ContainerClient,
    containerd: services.ContainerdService,
    ns: str,
    rootfs: Path,
    netns_name: str,
    tmp_path: Path,
) -> None:
    subject = Container(
        name="disguised", rootfs=str(rootfs), network=NetworkInfo(netns_name), entrypoint=DISGUISED
    )
    await contd.run(ns, subject)
    [shim_pid] = services.shim_pids(containerd.address, ns)
    argvs = {child: command_line(child) for child in children(shim_pid)}
    named = [child for child, argv in argvs.items() if any(a.endswith(LOG_SHIM_NAME) for a in argv)]
    assert len(named) == 2, f"the log shim and the container's init, both named {LOG_SHIM_NAME}: {argvs}"
    no_bundles = tmp_path / "state-without-bundles"
    no_bundles.mkdir()
    shim = Shim(shim_pid, ns, "disguised")
    assert shim not in idle_shims(no_bundles, containerd.address, min_age=0.0)
    assert not kill_if_idle(shim, no_bundles, containerd.address)
    os.kill(shim_pid, 0)  # still there
    info = await contd.inspect(ns, "disguised")
    assert info.task is not None and info.task.status == "running"
    await contd.delete(ns, "disguised")
