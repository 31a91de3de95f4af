"""Red team: faults of the daemon's own process and disk.

Real containerd, real Redis; the daemon as a process of its own where the
test kills it.

Each test fails on the code as it is (see the report of the red team pass).
"""

from __future__ import annotations

import contextlib
import functools
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from contd_trio.app import Daemon
from contd_trio.module.client import ContainerClient
from contd_trio.module.types import Container, NetworkInfo
from contd_trio.zbus.client import open_client
from contd_trio.zbus.errors import CallError
from tests.helpers import STEADY, wait_until
from tests.integration.faultkit import (
    FORBIDDEN,
    ContdProcess,
    ask,
    cgroup_processes,
    command_line,
    serving_with_c1,
    settled,
    within,
)
from tools import services

#: The exec's own process, told apart from the entrypoint's by its argument.
EXEC_MARK = "997"


async def test_an_exec_cut_off_by_a_daemon_kill_is_removed_after_the_restart(
    private_redis: services.RedisService,
    containerd: services.ContainerdService,
    tmp_path: Path,
    ns: str,
    netns_name: str,
    rootfs: Path,
) -> None:
    """Exec promises that its process and output file are removed whatever
    happens. The daemon SIGKILLed while an Exec (timeout 3 s) runs leaves
    the process running past its timeout, for good, and its output file in
    the daemon's root: the restarted daemon's reconciliation looks at
    containers and tasks, never at exec processes."""
    root = tmp_path / "root"
    daemon = ContdProcess(private_redis, containerd, root, tmp_path / "contd.log", "-reconcile-interval", "1")
    daemon.start()
    try:
        async with open_client(private_redis.url) as bus:
            await serving_with_c1(daemon, bus, ns, rootfs, netns_name)
            script = f"touch /exec-started; exec sleep {EXEC_MARK}"
            async with trio.open_nursery() as nursery:
                # Its caller gets no answer: the daemon dies under it.
                exec_call = functools.partial(ask, timeout=30)
                nursery.start_soon(exec_call, bus, "Exec", ns, "c1", 3 * 10**9, "sh", "-c", script)
                await wait_until(lambda: (rootfs / "exec-started").exists(), timeout=30)
                daemon.kill()
                nursery.cancel_scope.cancel()
            daemon.start()
            assert await within(lambda: "serving" in daemon.log(), 30), daemon.tail()

            def leftovers() -> list[str]:
                found = [
                    f"exec process {pid} {command_line(pid)} still runs"
                    for pid in cgroup_processes(ns).get("c1", [])
                    if EXEC_MARK in command_line(pid)
                ]
                exec_dir = root / "exec" / ns
                found += [f"exec output {p.name} left" for p in exec_dir.rglob("*") if p.is_file()]
                return found

            # Well past the exec's 3 s timeout and several reconciliations.
            problems = await settled(leftovers, timeout=15)
            assert (await ask(bus, "Delete", ns, "c1", timeout=30)).kind == "ok"
    finally:
        daemon.kill()
    assert problems == [], problems


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """``directory`` as a read-only filesystem (a disk remounted read-only
    after an error, say) while the block runs."""
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(directory)], check=True)
    try:
        yield
    finally:
        subprocess.run(["umount", str(directory)], check=True)


@pytest.mark.parametrize("method", ["Run", "Exec", "Delete"])
async def test_a_read_only_daemon_root_is_a_clear_error_not_a_bug(
    daemon: Daemon, contd: ContainerClient, ns: str, netns_name: str, rootfs: Path, method: str
) -> None:
    """The daemon's root is a disk like any other: when it cannot be written,
    Run (the log directory), Exec (the output directory) and Delete (the log
    files) answer ``internal error: OSError: [Errno 30] Read-only file
    system: ...``, the answer kept for bugs, with a traceback in the log."""
    root = daemon.config.root

    def spec(name: str) -> Container:
        return Container(name=name, rootfs=str(rootfs), network=NetworkInfo(netns_name), entrypoint=STEADY)

    if method != "Run":
        await contd.run(ns, spec("c1"))
    blocked = {"Run": root / "logs", "Exec": root / "exec", "Delete": root / "logs" / ns}[method]
    try:
        with read_only(blocked), pytest.raises(CallError) as failed:
            if method == "Run":
                await contd.run(ns, spec("c1"))
            elif method == "Exec":
                await contd.exec_process(ns, "c1", "true")
            else:
                await contd.delete(ns, "c1")
    finally:
        with contextlib.suppress(CallError):
            await contd.delete(ns, "c1")
    message = failed.value.message
    assert not any(word in message for word in FORBIDDEN), message
