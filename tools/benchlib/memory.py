"""Memory: the daemon's RSS idle and over many Inspect calls, and the
unique memory of each container's log shim.

* ``contd`` is started with one idle container; its RSS is read once idle,
  after 1,000 warm-up Inspects and after 10,000 more (growth is the last
  minus the warm-up);
* then 20 containers print a line every 0.1 s (half of them forwarding it
  to a Redis channel in the containers' network namespace) and the USS
  (Private_Clean + Private_Dirty) of every ``contd-logshim`` is read, next
  to the runc shim's for scale.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from pathlib import Path

import trio
import trio_asyncio

from contd_trio.module.types import Logs, LogsRedis
from tools import services

from .client import container, contd_client, run_many
from .common import IDLE, Bench, Figure, bench_services, median, rss_kib, start_contd, stop, uss_kib

PART = "memory"
CHATTY = "sh -c 'i=0; while true; do i=$((i+1)); echo line $i; sleep 0.1; done'"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--inspects", type=int, default=10_000, help="Inspects after the warm-up")
    parser.add_argument("--warmup", type=int, default=1_000, help="Inspects before the first reading")
    parser.add_argument("--shims", type=int, default=20, help="chatty containers for the log shim figure")


async def _inspects(bench: Bench, pid: int, warmup: int, count: int) -> tuple[int, int, int]:
    """RSS (KiB) idle, after the warm-up and after ``count`` more Inspects."""
    ns = f"bench{uuid.uuid4().hex[:6]}"
    async with contd_client(bench.redis.url) as contd:
        await run_many(contd, ns, ["c0"], bench.rootfs, bench.netns, IDLE)
        await trio.sleep(2)
        idle = rss_kib(pid)
        for _ in range(warmup):
            await contd.inspect(ns, "c0")
        after_warmup = rss_kib(pid)
        for _ in range(count):
            await contd.inspect(ns, "c0")
        return idle, after_warmup, rss_kib(pid)


async def _chatty(bench: Bench, count: int, backend: services.RedisService) -> None:
    async with contd_client(bench.redis.url) as contd:
        for i in range(count):
            logs = [Logs("redis", LogsRedis(backend.channel_url(f"out{i}"), backend.channel_url(f"err{i}")))]
            spec = container(f"m{i}", bench.rootfs, bench.netns, CHATTY)
            spec.logs = logs if i % 2 else None
            await contd.run("benchshims", spec)


def _pids_of(*markers: bytes) -> list[int]:
    """Processes whose command line holds every marker."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if all(marker in cmdline for marker in markers):
                found.append(int(proc.name))
    return found


def measure(args: argparse.Namespace) -> list[Figure]:
    idle, growth = [], []
    with bench_services(PART) as bench:
        for _ in range(args.repeat):
            daemon = start_contd(bench, "-log-level", "warning")
            try:
                before, warm, after = trio_asyncio.run(
                    _inspects, bench, daemon.pid, args.warmup, args.inspects
                )
            finally:
                stop(daemon)
            services.reap_containerd(bench.containerd.address)
            idle.append(before / 1024)
            growth.append((after - warm) / 1024)
        # In the containers' network namespace: the log shims reach backends from there.
        backend = services.start_redis(bench.run_dir, name="backend", port=6379, netns=bench.netns)
        daemon = start_contd(bench, "-log-level", "warning")
        try:
            trio_asyncio.run(_chatty, bench, args.shims, backend)
            time.sleep(3)  # let them write and forward for a while
            shims = _pids_of(b"contd-logshim", str(bench.run_dir).encode())
            forwarding = set(_pids_of(b"--stdout.0"))
            logshim = [uss_kib(p) / 1024 for p in shims]
            by_kind = {
                "forwarding": [uss_kib(p) / 1024 for p in shims if p in forwarding],
                "file only": [uss_kib(p) / 1024 for p in shims if p not in forwarding],
            }
            runc = [uss_kib(p) / 1024 for p in services.shim_pids(bench.containerd.address)]
        finally:
            stop(daemon)
            backend.stop()
    return [
        Figure(PART, "daemon RSS, idle with one container", "MB", median(idle), target="<= 45 MB", runs=idle),
        Figure(
            PART,
            f"daemon RSS growth over {args.inspects:,} Inspects (after {args.warmup:,})",
            "MB",
            median(growth),
            target="<= 1 MB",
            runs=growth,
        ),
        Figure(
            PART,
            f"log shim USS, mean of {len(logshim)} (half forwarding to Redis)",
            "MB",
            statistics.mean(logshim),
            statistics.mean(runc),
            "runc shim USS",
            "",
            logshim,
            runc,
        ),
        *(
            Figure(PART, f"log shim USS, {kind} ({len(sizes)})", "MB", statistics.mean(sizes), runs=sizes)
            for kind, sizes in by_kind.items()
            if sizes
        ),
    ]
