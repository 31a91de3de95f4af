"""Exec processes whose daemon was killed mid-Exec are removed by the next
daemon, found through containerd even when their output files are gone;
exec processes somebody else started are left alone.

Real containerd, real Redis, the daemon as a process of its own.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

import trio

from contd_trio.zbus.client import open_client
from tests.helpers import wait_until
from tests.integration.faultkit import (
    ContdProcess,
    ask,
    cgroup_processes,
    command_line,
    serving_with_c1,
    settled,
    within,
)
from tools import services

#: Told apart from every other process of the container by their arguments.
OURS = "996"
FOREIGN = "995"


async def test_an_exec_whose_files_are_gone_is_found_through_containerd(
    private_redis: services.RedisService,
    containerd: services.ContainerdService,
    tmp_path: Path,
    ns: str,
    netns_name: str,
    rootfs: Path,
) -> None:
    """The daemon is SIGKILLed mid-Exec and the exec's output files are
    removed before it comes back (as when containerd was away when a daemon
    died after its Exec): the new daemon still kills and removes the exec
    process, which the runc shim names in Tasks.ListPids. An exec process
    an operator started with ``ctr`` (an exec id not of the daemon's) runs on."""
    root = tmp_path / "root"
    daemon = ContdProcess(private_redis, containerd, root, tmp_path / "contd.log", "-reconcile-interval", "1")
    foreign: subprocess.Popen[bytes] | None = None
    daemon.start()
    try:
        async with open_client(private_redis.url) as bus:
            await serving_with_c1(daemon, bus, ns, rootfs, netns_name)
            # An operator's exec: ctr waits on it, in the background here.
            ctr = [services.CTR, "--address", str(containerd.address), "--namespace", ns]
            foreign = subprocess.Popen(
                [*ctr, "tasks", "exec", "--exec-id", "operator-1", "c1", "sleep", FOREIGN],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

            def running(mark: str) -> list[int]:
                return [p for p in cgroup_processes(ns).get("c1", []) if mark in command_line(p)]

            await wait_until(lambda: running(FOREIGN), timeout=30)
            script = f"touch /exec-started; exec sleep {OURS}"
            async with trio.open_nursery() as nursery:
                exec_call = functools.partial(ask, timeout=60)
                nursery.start_soon(exec_call, bus, "Exec", ns, "c1", 60 * 10**9, "sh", "-c", script)
                await wait_until(lambda: (rootfs / "exec-started").exists(), timeout=30)
                daemon.kill()
                nursery.cancel_scope.cancel()
            outputs = list((root / "exec").rglob("*.std*"))
            assert outputs, "the exec's output files were not where the daemon keeps them"
            for path in outputs:
                path.unlink()
            daemon.start()
            assert await within(lambda: "serving" in daemon.log(), 30), daemon.tail()

            def ours_left() -> list[str]:
                return [f"exec process {pid} {command_line(pid)} still runs" for pid in running(OURS)]

            problems = await settled(ours_left, timeout=15)
            foreign_runs = bool(running(FOREIGN))
            found = "removing an exec process nobody waits for" in daemon.log()
            assert (await ask(bus, "Delete", ns, "c1", timeout=30)).kind == "ok"
    finally:
        daemon.kill()
        if foreign is not None:
            foreign.kill()
            foreign.wait(10)
    assert problems == [], problems
    assert found, daemon.tail()
    assert foreign_runs, "the operator's exec process was killed too"
