"""Run and Delete through the daemon, next to ``ctr`` doing the same, in one run.

Starts a private Redis and containerd, builds a busybox rootfs, starts
``contd`` against them, then measures:

* Run of a busybox container (request to reply, through zbus) against
  ``ctr run -d --rootfs``: one at a time, then 50 at once;
* Delete of a container that leaves on SIGTERM against
  ``ctr task kill`` + ``ctr task rm`` + ``ctr c rm``.

Usage:

    .venv/bin/python tools/bench_run.py [--count 20]
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import trio
import trio_asyncio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from contd_trio.module.client import ContainerClient  # noqa: E402
from contd_trio.module.types import Container, NetworkInfo  # noqa: E402
from contd_trio.zbus.client import open_client  # noqa: E402
from tools import services  # noqa: E402

# Leaves at once on SIGTERM: `wait` is interrupted by a trapped signal, `sleep` is not.
SCRIPT = 'trap "exit 0" TERM; while true; do sleep 1 & wait; done'
COOPERATIVE = f"sh -c {shlex.quote(SCRIPT)}"


def p50(values: list[float]) -> float:
    return sorted(values)[len(values) // 2] * 1e3


def fmt(values: list[float]) -> str:
    ordered = sorted(values)
    return f"p50 {p50(values):6.1f} ms  min {ordered[0] * 1e3:6.1f}  max {ordered[-1] * 1e3:6.1f}"


def ctr_run(address: Path, ns: str, name: str, rootfs: Path) -> None:
    services.ctr(address, "run", "-d", "--rootfs", str(rootfs), name, "/bin/sh", "-c", SCRIPT, namespace=ns)


def ctr_delete(address: Path, ns: str, name: str) -> None:
    services.ctr(address, "task", "kill", name, namespace=ns)
    # ctr has no "wait": retry the removal until the task has exited.
    while subprocess.run(
        [services.CTR, "--address", str(address), "--namespace", ns, "task", "rm", name], capture_output=True
    ).returncode:
        time.sleep(0.002)
    services.ctr(address, "c", "rm", name, namespace=ns)


async def bench_daemon(broker: str, rootfs: Path, netns: str, count: int) -> dict[str, list[float]]:
    ns = f"bench{uuid.uuid4().hex[:6]}"
    results: dict[str, list[float]] = {"run": [], "delete": [], "run50": [], "delete50": []}
    async with open_client(broker) as bus:
        contd = ContainerClient(bus, timeout=120)

        def spec(name: str) -> Container:
            return Container(
                name=name, rootfs=str(rootfs), network=NetworkInfo(netns), entrypoint=COOPERATIVE
            )

        await contd.run(ns, spec("warmup"))
        await contd.delete(ns, "warmup")
        for i in range(count):
            started = time.perf_counter()
            await contd.run(ns, spec(f"s{i}"))
            results["run"].append(time.perf_counter() - started)
        await trio.sleep(0.5)  # let the shells install their trap
        for i in range(count):
            started = time.perf_counter()
            await contd.delete(ns, f"s{i}")
            results["delete"].append(time.perf_counter() - started)

        async def timed(coro_fn, *args, into: list[float]) -> None:  # type: ignore[no-untyped-def]
            started = time.perf_counter()
            await coro_fn(*args)
            into.append(time.perf_counter() - started)

        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for i in range(50):
                nursery.start_soon(lambda i=i: timed(contd.run, ns, spec(f"p{i}"), into=results["run50"]))
        results["run50_wall"] = [time.perf_counter() - started]
        await trio.sleep(0.5)
        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for i in range(50):
                nursery.start_soon(lambda i=i: timed(contd.delete, ns, f"p{i}", into=results["delete50"]))
        results["delete50_wall"] = [time.perf_counter() - started]
    return results


async def bench_ctr(address: Path, rootfs: Path, count: int) -> dict[str, list[float]]:
    ns = f"benchctr{uuid.uuid4().hex[:6]}"
    results: dict[str, list[float]] = {"run": [], "delete": []}
    for i in range(count):
        started = time.perf_counter()
        await trio.to_thread.run_sync(ctr_run, address, ns, f"s{i}", rootfs)
        results["run"].append(time.perf_counter() - started)
    await trio.sleep(0.5)
    for i in range(count):
        started = time.perf_counter()
        await trio.to_thread.run_sync(ctr_delete, address, ns, f"s{i}")
        results["delete"].append(time.perf_counter() - started)
    started = time.perf_counter()
    limiter = trio.CapacityLimiter(50)
    async with trio.open_nursery() as nursery:
        for i in range(50):
            nursery.start_soon(
                lambda i=i: trio.to_thread.run_sync(ctr_run, address, ns, f"p{i}", rootfs, limiter=limiter)
            )
    results["run50_wall"] = [time.perf_counter() - started]
    await trio.sleep(0.5)
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i in range(50):
            nursery.start_soon(
                lambda i=i: trio.to_thread.run_sync(ctr_delete, address, ns, f"p{i}", limiter=limiter)
            )
    results["delete50_wall"] = [time.perf_counter() - started]
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20, help="sequential runs of each kind")
    parser.add_argument("--start-settle", default="250ms", help="contd's -start-settle (default %(default)s)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp, services.network_namespace() as netns:
        run_dir = Path(tmp)
        rootfs = services.build_busybox_rootfs(run_dir / "rootfs")
        with services.running_services(run_dir) as (redis_service, containerd):
            daemon = subprocess.Popen(
                services.contd_command(
                    redis_service,
                    containerd,
                    run_dir / "root",
                    "-log-level",
                    "warning",
                    "-workers",
                    "64",
                    "-start-settle",
                    args.start_settle,
                ),
                cwd=ROOT,
            )
            try:
                ours = trio_asyncio.run(bench_daemon, redis_service.url, rootfs, netns, args.count)
                theirs = trio_asyncio.run(bench_ctr, containerd.address, rootfs, args.count)
            finally:
                daemon.terminate()
                daemon.wait(30)
                services.reap_containerd(containerd.address)
    settle = args.start_settle
    print(f"busybox rootfs, {args.count} sequential each, then 50 at once; contd -start-settle {settle}")
    print(f"Run    contd (zbus request to reply): {fmt(ours['run'])}")
    print(f"       ctr run -d --rootfs:            {fmt(theirs['run'])}")
    ours_ms, theirs_ms = ours["run50_wall"][0] * 1e3, theirs["run50_wall"][0] * 1e3
    print(f"50 Runs at once, wall: contd {ours_ms:.0f} ms, 50 ctr processes {theirs_ms:.0f} ms")
    print(f"Delete contd:                         {fmt(ours['delete'])}")
    print(f"       ctr task kill + task rm + c rm: {fmt(theirs['delete'])}")
    ours_ms, theirs_ms = ours["delete50_wall"][0] * 1e3, theirs["delete50_wall"][0] * 1e3
    print(f"50 Deletes at once, wall: contd {ours_ms:.0f} ms, 50 ctr processes {theirs_ms:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
