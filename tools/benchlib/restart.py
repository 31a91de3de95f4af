"""Daemon restart with many running containers: how long until it serves
List, and until its start-up reconciliation is over.

For each count, containers running ``sleep`` are added up to it, the daemon
is stopped (SIGTERM; the containers keep running) and started again. Serving
is when a List sent right after the start is answered (it waits in Redis
until then); reconciled is the time of the daemon's ``reconciled`` log line.
"""

from __future__ import annotations

import argparse
import datetime
import time
import uuid
from pathlib import Path

import trio
import trio_asyncio

from .client import contd_client, run_many
from .common import IDLE, Bench, Figure, bench_services, median, start_contd, stop, wait_until

PART = "restart"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--counts", default="10,101,300", help="running containers at each restart (default %(default)s)"
    )


def _log_time(log: Path, message: str, after: int) -> float | None:
    """``time.time()`` of the first log line past byte ``after`` with this message."""
    with open(log, "rb") as f:
        f.seek(after)
        for raw in f:
            fields = raw.decode(errors="replace").split(maxsplit=2)
            if len(fields) == 3 and (fields[2].rstrip() == message or fields[2].startswith(message + " ")):
                stamp = datetime.datetime.strptime(fields[1], "%Y-%m-%dT%H:%M:%S.%fZ")
                return stamp.replace(tzinfo=datetime.UTC).timestamp()
    return None


async def _grow(bench: Bench, ns: str, have: int, want: int) -> None:
    async with contd_client(bench.redis.url) as contd:
        names = [f"c{i}" for i in range(have, want)]
        await run_many(contd, ns, names, bench.rootfs, bench.netns, IDLE)


def _restart(bench: Bench, ns: str, log: Path) -> tuple[float, float]:
    offset = log.stat().st_size if log.exists() else 0
    started = time.time()
    daemon = start_contd(bench, "-log-level", "info", log=log)
    try:
        # The client's first request waits in Redis until the daemon serves it.
        serving = trio_asyncio.run(_first_list_after_start, bench, ns)
        wait_until(lambda: _log_time(log, "reconciled", offset) is not None, 120, "reconciliation")
        reconciled = _log_time(log, "reconciled", offset)
        assert reconciled is not None
    finally:
        stop(daemon)
    return serving - started, reconciled - started


async def _first_list_after_start(bench: Bench, ns: str) -> float:
    from contd_trio.module.client import ContainerClient
    from contd_trio.zbus.client import open_client

    async with open_client(bench.redis.url) as bus:
        with trio.fail_after(120):
            await ContainerClient(bus, timeout=120).list_containers(ns)
        return time.time()


def measure(args: argparse.Namespace) -> list[Figure]:
    counts = [int(c) for c in args.counts.split(",")]
    figures = []
    with bench_services(PART) as bench:
        ns = f"bench{uuid.uuid4().hex[:6]}"
        log = bench.run_dir / "contd.log"
        have = 0
        for count in counts:
            daemon = start_contd(bench, "-log-level", "warning")
            try:
                trio_asyncio.run(_grow, bench, ns, have, count)
            finally:
                stop(daemon)
            have = count
            serving, reconciled = zip(*(_restart(bench, ns, log) for _ in range(args.repeat)), strict=True)
            figures.append(
                Figure(
                    PART,
                    f"restart with {count} running, until serving List",
                    "s",
                    median(serving),
                    target="<= 3 s at 101",
                    runs=list(serving),
                )
            )
            figures.append(
                Figure(
                    PART,
                    f"restart with {count} running, until reconciled",
                    "s",
                    median(reconciled),
                    target="<= 5 s at 101",
                    runs=list(reconciled),
                )
            )
    return figures
