"""Driving a running ``contd`` from the benchmark: a zbus client under
trio-asyncio, and containers started many at once."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from contd_trio.module.client import ContainerClient
from contd_trio.module.types import Container, NetworkInfo
from contd_trio.zbus.client import open_client


@asynccontextmanager
async def contd_client(broker: str, *, ready_within: float = 60.0) -> AsyncIterator[ContainerClient]:
    """A client of the daemon, once it answers."""
    async with open_client(broker) as bus:
        await bus.status("container", timeout=ready_within)
        yield ContainerClient(bus, timeout=300)


def container(name: str, rootfs: Path, netns: str, entrypoint: str) -> Container:
    return Container(name=name, rootfs=str(rootfs), network=NetworkInfo(netns), entrypoint=entrypoint)


async def run_many(
    contd: ContainerClient,
    ns: str,
    names: list[str],
    rootfs: Path,
    netns: str,
    entrypoint: str,
    at_once: int = 8,
) -> None:
    """Run a container of each name, ``at_once`` at a time."""
    limiter = trio.CapacityLimiter(at_once)

    async def one(name: str) -> None:
        async with limiter:
            await contd.run(ns, container(name, rootfs, netns, entrypoint))

    async with trio.open_nursery() as nursery:
        for name in names:
            nursery.start_soon(one, name)


async def timed_calls(count: int, call: Callable[[], Awaitable[object]]) -> list[float]:
    """Seconds each of ``count`` sequential calls took."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        await call()
        times.append(time.perf_counter() - started)
    return times
