"""Inspect with 1 container and with 101: nothing per request may grow with
the number of containers.

The containers run ``sleep`` and nothing else, so they load nothing while
Inspect is measured; every measurement inspects the same first container.
"""

from __future__ import annotations

import argparse
import uuid

import trio_asyncio

from .client import contd_client, run_many, timed_calls
from .common import IDLE, Bench, Figure, bench_services, median, p50, start_contd, stop

PART = "inspect"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calls", type=int, default=2000, help="Inspects per measurement")
    parser.add_argument("--containers", type=int, default=101, help="containers of the large case")


async def _measure(bench: Bench, calls: int, many: int, repeat: int) -> tuple[list[float], list[float]]:
    ns = f"bench{uuid.uuid4().hex[:6]}"
    one: list[float] = []
    lots: list[float] = []
    async with contd_client(bench.redis.url) as contd:
        await run_many(contd, ns, ["c0"], bench.rootfs, bench.netns, IDLE)
        await timed_calls(calls // 10, lambda: contd.inspect(ns, "c0"))  # warm up
        for _ in range(repeat):
            one.append(p50(await timed_calls(calls, lambda: contd.inspect(ns, "c0"))))
        names = [f"c{i}" for i in range(1, many)]
        await run_many(contd, ns, names, bench.rootfs, bench.netns, IDLE)
        await timed_calls(calls // 10, lambda: contd.inspect(ns, "c0"))
        for _ in range(repeat):
            lots.append(p50(await timed_calls(calls, lambda: contd.inspect(ns, "c0"))))
    return one, lots


def measure(args: argparse.Namespace) -> list[Figure]:
    with bench_services(PART) as bench:
        daemon = start_contd(bench, "-log-level", "warning")
        try:
            one, lots = trio_asyncio.run(_measure, bench, args.calls, args.containers, args.repeat)
        finally:
            stop(daemon)
    return [
        Figure(
            PART,
            f"Inspect p50 with {args.containers} containers vs 1",
            "ms",
            median(lots) * 1e3,
            median(one) * 1e3,
            "the same daemon with 1 container",
            "<= 1.3x",
            runs=[x * 1e3 for x in lots],
            reference_runs=[x * 1e3 for x in one],
        )
    ]
