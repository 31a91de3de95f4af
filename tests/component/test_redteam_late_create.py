"""Component test of our error handling, with a fault injected at the
containerd channel (``faults.FaultProxy``): Run's ``Containers.Create`` is
held at the proxy past the Run's deadline and the 2 s it may outlast it, and
containerd makes the container all the same, later, once the Run has looked
for it and found nothing. containerd does that when it is slow or frozen: a
create whose caller left is still carried out, and a Get sent after it may
be answered first. The test makes the late container itself, through the
real containerd, with the labels the Run sent.

Periodic reconciliation is off (an hour), so nothing but the daemon's
answer to the late create can remove it. The real-process counterpart
(containerd SIGSTOPped) is ``tests/integration/test_redteam_create.py``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import trio

from contd_trio import errors
from contd_trio.app import open_daemon
from contd_trio.config import Config
from contd_trio.containerd import spec as oci
from contd_trio.containerd.client import CONTAINERS_CREATE, Containerd
from contd_trio.module import labels
from tests.component.faults import FaultProxy
from tests.component.support import container
from tests.helpers import wait_until


async def test_a_create_containerd_carries_out_after_run_gave_up_is_removed(
    daemon_config: Config,
    proxy: FaultProxy,
    real: Containerd,
    emptied: None,
    ns: str,
    rootfs: Path,
    netns_name: str,
) -> None:
    config = dataclasses.replace(daemon_config, reconcile_interval=3600.0)
    async with open_daemon(config, grpc_channel=proxy.channel) as daemon:
        held = proxy.hang(CONTAINERS_CREATE, container="late")
        with trio.move_on_after(0.5) as run_scope:
            await daemon.module.run(ns, container(rootfs, netns_name, "late"))
        assert run_scope.cancelled_caught, "the Run was not cut short at its create"
        assert held.calls, "the Run's create never reached the proxy"
        held.release()
        await wait_until(lambda: daemon.ops.janitor.pending == 0, timeout=10)
        assert "late" not in await real.container_ids(ns), "the create went through after all"
        # containerd carries out the create late, as it does when frozen.
        pending = {labels.MANAGED: "true", labels.PENDING: "true"}
        await real.create_container(ns, "late", oci.default_spec(ns, "late"), labels=pending)

        async def gone() -> bool:
            try:
                await real.get_container(ns, "late")
            except errors.NotFound:
                return True
            return False

        await wait_until(gone, timeout=15)
        # The name is usable again.
        await daemon.module.run(ns, container(rootfs, netns_name, "late"))
        record = await real.get_container(ns, "late")
        assert not labels.pending(record.labels)
