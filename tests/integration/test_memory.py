"""The daemon's memory does not grow with the number of calls it serves.

The daemon and its client run in this process on the real containerd and
Redis. After a warm-up, which fills every bounded cache and record, the
memory allocated while serving many more Inspects and still held once they
are over is measured with tracemalloc (traced from before the warm-up, so
that a bounded record whose entries are replaced does not count as growth). Before the bounds, each containerd
call left about 130 bytes in h2's record of closed streams (up to 65,536
calls) and a cancelled timer of about 90 bytes in trio-asyncio's loop (for
the call's 30 s timeout): 3,000 calls here held about 600 KiB.
"""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

from contd_trio.module.client import ContainerClient
from contd_trio.module.types import Container, NetworkInfo
from tests.helpers import STEADY

#: Inspects before measuring: 2,400 containerd calls, past every bound.
WARMUP = 1200
#: Inspects measured: 3,000 containerd calls.
MEASURED = 1500
#: Generous: what is held past the bounds is a few kilobytes.
GROWTH_BOUND = 256 * 1024


async def test_memory_does_not_grow_with_inspect_calls(
    contd: ContainerClient, ns: str, netns_name: str, rootfs: Path
) -> None:
    await contd.run(
        ns, Container(name="c1", rootfs=str(rootfs), network=NetworkInfo(netns_name), entrypoint=STEADY)
    )
    tracemalloc.start(1)
    try:
        for _ in range(WARMUP):
            await contd.inspect(ns, "c1")
        gc.collect()
        warm, _peak = tracemalloc.get_traced_memory()
        for _ in range(MEASURED):
            info = await contd.inspect(ns, "c1")
        del info
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - warm
    finally:
        tracemalloc.stop()
    assert held < GROWTH_BOUND, f"{held} bytes held after {MEASURED} Inspects"
    await contd.delete(ns, "c1")
