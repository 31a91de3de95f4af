"""Run through the daemon next to ``ctr`` doing the same, and Delete.

* Run of a busybox container (zbus request to reply) with ``-start-settle
  0`` against ``ctr run -d --rootfs``, one at a time;
* 20 Runs at once with the default flags against 20 ``ctr run -d`` at once;
* Delete of a container that leaves on SIGTERM against ``ctr task kill`` +
  ``ctr task rm`` + ``ctr c rm``.

Each daemon figure comes from a daemon of its own flags; ``ctr`` talks to
the same private containerd.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import trio
import trio_asyncio

from contd_trio.module.client import ContainerClient
from tools import services

from .client import container, contd_client
from .common import Bench, Figure, bench_services, median, p50, start_contd, stop

PART = "run"
# Leaves at once on SIGTERM: `wait` is interrupted by a trapped signal, `sleep` is not.
SCRIPT = 'trap "exit 0" TERM; while true; do sleep 1 & wait; done'
COOPERATIVE = f"sh -c {shlex.quote(SCRIPT)}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=int, default=20, help="sequential Runs per measurement")
    parser.add_argument("--at-once", type=int, default=20, help="Runs started together")


def _ctr_run(address: Path, ns: str, name: str, rootfs: Path, *flags: str) -> None:
    services.ctr(
        address, "run", "-d", *flags, "--rootfs", str(rootfs), name, "/bin/sh", "-c", SCRIPT, namespace=ns
    )


def _ctr_delete(address: Path, ns: str, name: str) -> None:
    services.ctr(address, "task", "kill", name, namespace=ns)
    # ctr has no "wait": retry the removal until the task has exited.
    while subprocess.run(
        [services.CTR, "--address", str(address), "--namespace", ns, "task", "rm", name], capture_output=True
    ).returncode:
        time.sleep(0.002)
    services.ctr(address, "c", "rm", name, namespace=ns)


async def _timed(into: list[float], fn, *args) -> None:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    await fn(*args)
    into.append(time.perf_counter() - started)


async def _ours_sequential(bench: Bench, runs: int) -> tuple[float, float]:
    """p50 of Run and of Delete, seconds."""
    ns = f"bench{uuid.uuid4().hex[:6]}"
    run_times: list[float] = []
    delete_times: list[float] = []
    async with contd_client(bench.redis.url) as contd:
        await contd.run(ns, container("warmup", bench.rootfs, bench.netns, COOPERATIVE))
        await contd.delete(ns, "warmup")
        for i in range(runs):
            await _timed(run_times, contd.run, ns, container(f"s{i}", bench.rootfs, bench.netns, COOPERATIVE))
        await trio.sleep(0.5)  # let the shells install their trap
        for i in range(runs):
            await _timed(delete_times, contd.delete, ns, f"s{i}")
    return p50(run_times), p50(delete_times)


async def _ours_at_once(bench: Bench, count: int) -> float:
    """Wall time of ``count`` Runs sent together, seconds."""
    ns = f"bench{uuid.uuid4().hex[:6]}"
    async with contd_client(bench.redis.url) as contd:
        await contd.run(ns, container("warmup", bench.rootfs, bench.netns, COOPERATIVE))
        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for i in range(count):
                nursery.start_soon(contd.run, ns, container(f"p{i}", bench.rootfs, bench.netns, COOPERATIVE))
        wall = time.perf_counter() - started
        await _delete_all(contd, ns, [f"p{i}" for i in range(count)] + ["warmup"])
    return wall


async def _delete_all(contd: ContainerClient, ns: str, names: list[str]) -> None:
    async with trio.open_nursery() as nursery:
        for name in names:
            nursery.start_soon(contd.delete, ns, name)


def _ctr_sequential(bench: Bench, runs: int, *flags: str) -> tuple[float, float]:
    ns = f"benchctr{uuid.uuid4().hex[:6]}"
    address = bench.containerd.address
    run_times, delete_times = [], []
    for i in range(runs):
        started = time.perf_counter()
        _ctr_run(address, ns, f"s{i}", bench.rootfs, *flags)
        run_times.append(time.perf_counter() - started)
    time.sleep(0.5)
    for i in range(runs):
        started = time.perf_counter()
        _ctr_delete(address, ns, f"s{i}")
        delete_times.append(time.perf_counter() - started)
    return p50(run_times), p50(delete_times)


async def _in_thread(limiter: trio.CapacityLimiter, fn: Callable[..., None], *args: object) -> None:
    await trio.to_thread.run_sync(fn, *args, limiter=limiter)


async def _ctr_at_once(bench: Bench, count: int, *flags: str) -> float:
    ns = f"benchctr{uuid.uuid4().hex[:6]}"
    address = bench.containerd.address
    limiter = trio.CapacityLimiter(count)
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i in range(count):
            nursery.start_soon(_in_thread, limiter, _ctr_run, address, ns, f"p{i}", bench.rootfs, *flags)
    wall = time.perf_counter() - started
    await trio.sleep(0.5)
    async with trio.open_nursery() as nursery:
        for i in range(count):
            nursery.start_soon(_in_thread, limiter, _ctr_delete, address, ns, f"p{i}")
    return wall


def measure(args: argparse.Namespace) -> list[Figure]:
    ours_run, ours_delete, ours_wall, ctr_run, ctr_delete, ctr_wall = [], [], [], [], [], []
    # Every container of ours runs under a seccomp allow-list (see
    # contd_trio/containerd/seccomp.py), which costs runc about 10 ms per
    # create; plain `ctr run` applies none. --seccomp gives ctr containerd's
    # default profile: the same protection, paid the same way.
    ctr_seccomp_run: list[float] = []
    ctr_seccomp_wall: list[float] = []
    with bench_services(PART) as bench:
        for _ in range(args.repeat):
            daemon = start_contd(bench, "-log-level", "warning", "-workers", "64", "-start-settle", "0")
            try:
                run_p50, delete_p50 = trio_asyncio.run(_ours_sequential, bench, args.runs)
            finally:
                stop(daemon)
            ours_run.append(run_p50)
            ours_delete.append(delete_p50)
            daemon = start_contd(bench, "-log-level", "warning")
            try:
                ours_wall.append(trio_asyncio.run(_ours_at_once, bench, args.at_once))
            finally:
                stop(daemon)
            run_p50, delete_p50 = _ctr_sequential(bench, args.runs)
            ctr_run.append(run_p50)
            ctr_delete.append(delete_p50)
            ctr_seccomp_run.append(_ctr_sequential(bench, args.runs, "--seccomp")[0])
            ctr_wall.append(trio.run(_ctr_at_once, bench, args.at_once))
            ctr_seccomp_wall.append(trio.run(_ctr_at_once, bench, args.at_once, "--seccomp"))

    def ms(values: list[float]) -> list[float]:
        return [v * 1e3 for v in values]

    return [
        Figure(
            PART,
            "Run, -start-settle 0, request to reply, p50",
            "ms",
            median(ms(ours_run)),
            median(ms(ctr_run)),
            "ctr run -d --rootfs",
            "<= 0.9x ctr",
            ms(ours_run),
            ms(ctr_run),
        ),
        Figure(
            PART,
            "Run, -start-settle 0, request to reply, p50, against ctr with a seccomp profile too",
            "ms",
            median(ms(ours_run)),
            median(ms(ctr_seccomp_run)),
            "ctr run -d --seccomp --rootfs",
            "",
            ms(ours_run),
            ms(ctr_seccomp_run),
        ),
        Figure(
            PART,
            f"{args.at_once} Runs at once, default flags, wall",
            "s",
            median(ours_wall),
            median(ctr_wall),
            f"{args.at_once} parallel ctr run -d",
            "<= ctr + 0.3 s",
            ours_wall,
            ctr_wall,
        ),
        Figure(
            PART,
            f"{args.at_once} Runs at once, default flags, wall, against ctr with a seccomp profile too",
            "s",
            median(ours_wall),
            median(ctr_seccomp_wall),
            f"{args.at_once} parallel ctr run -d --seccomp",
            "",
            ours_wall,
            ctr_seccomp_wall,
        ),
        Figure(
            PART,
            "Delete of a container leaving on SIGTERM, p50",
            "ms",
            median(ms(ours_delete)),
            median(ms(ctr_delete)),
            "ctr task kill + task rm + c rm",
            "",
            ms(ours_delete),
            ms(ctr_delete),
        ),
    ]
