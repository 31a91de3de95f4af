"""Red team: what a daemon killed mid-request leaves that nobody finishes.

Real containerd, real Redis, the daemon as a process of its own.

Each test fails on the code as it is (see the report of the red team pass).
"""

from __future__ import annotations

import functools
from pathlib import Path

import trio

from contd_trio.module.types import Container, NetworkInfo
from contd_trio.zbus.client import open_client
from tests.helpers import STEADY, wait_until
from tests.integration.faultkit import (
    ContdProcess,
    ask,
    cgroup_processes,
    command_line,
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
    daemon = ContdProcess(
        private_redis, containerd, root, tmp_path / "contd.log", "-reconcile-interval", "1"
    )
    daemon.start()
    try:
        async with open_client(private_redis.url) as bus:
            assert await within(lambda: "serving" in daemon.log(), 30), daemon.tail()
            spec = Container(
                name="c1", rootfs=str(rootfs), network=NetworkInfo(netns_name), entrypoint=STEADY
            )
            assert (await ask(bus, "Run", ns, spec, timeout=30)).kind == "ok"
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
                found += [f"exec output {p.name} left" for p in exec_dir.glob("*.out")]
                return found

            # Well past the exec's 3 s timeout and several reconciliations.
            problems = await settled(leftovers, timeout=15)
            assert (await ask(bus, "Delete", ns, "c1", timeout=30)).kind == "ok"
    finally:
        daemon.kill()
    assert problems == [], problems
