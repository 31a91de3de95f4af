"""Per-call overhead of a unary containerd call (Version), three ways:

* our client (grpclib under trio-asyncio, every call crossing from Trio);
* plain grpclib on plain asyncio, the same channel code without the bridge;
* ``ctr version``, a whole process per call (what a shell script pays).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import tempfile
import time
from pathlib import Path

import trio
import trio_asyncio
from google.protobuf import empty_pb2
from grpclib.client import Channel

from contd_trio._proto.containerd.services.version.v1 import version_grpc
from contd_trio.containerd.channel import open_channel
from contd_trio.containerd.client import Containerd
from tools import services

from .common import Figure, median, p50

PART = "containerd"
CONCURRENT = 500


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--containerd-calls", type=int, default=2000, help="sequential Version calls")


async def _ours(socket: Path, calls: int) -> tuple[float, float]:
    async with open_channel(socket) as channel:
        ctd = Containerd(channel)
        await ctd.version()
        times = []
        for _ in range(calls):
            started = time.perf_counter()
            await ctd.version()
            times.append(time.perf_counter() - started)
        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(CONCURRENT):
                nursery.start_soon(ctd.version)
        return p50(times), (time.perf_counter() - started) / CONCURRENT


async def _plain_grpclib(socket: Path, calls: int) -> tuple[float, float]:
    channel = Channel(path=str(socket))
    stub = version_grpc.VersionStub(channel)
    try:
        await stub.Version(empty_pb2.Empty())
        times = []
        for _ in range(calls):
            started = time.perf_counter()
            await stub.Version(empty_pb2.Empty(), timeout=30)
            times.append(time.perf_counter() - started)
        started = time.perf_counter()
        await asyncio.gather(*(stub.Version(empty_pb2.Empty(), timeout=30) for _ in range(CONCURRENT)))
        return p50(times), (time.perf_counter() - started) / CONCURRENT
    finally:
        channel.close()


def _ctr_version(socket: Path, calls: int) -> float:
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        subprocess.run([services.CTR, "--address", str(socket), "version"], check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return p50(times)


def measure(args: argparse.Namespace) -> list[Figure]:
    ours_seq, ours_conc, plain_seq, plain_conc, ctr = [], [], [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-containerd-") as tmp:
        service = services.start_containerd(Path(tmp))
        try:
            for _ in range(args.repeat):
                seq, conc = trio_asyncio.run(_ours, service.address, args.containerd_calls)
                ours_seq.append(seq * 1e6)
                ours_conc.append(conc * 1e6)
                seq, conc = asyncio.run(_plain_grpclib(service.address, args.containerd_calls))
                plain_seq.append(seq * 1e6)
                plain_conc.append(conc * 1e6)
                ctr.append(_ctr_version(service.address, 50) * 1e6)
        finally:
            service.stop()
    plain = "plain grpclib on asyncio"
    return [
        Figure(
            PART,
            "Version call, sequential, p50",
            "us",
            median(ours_seq),
            median(plain_seq),
            plain,
            "",
            ours_seq,
            plain_seq,
        ),
        Figure(
            PART,
            f"Version call, {CONCURRENT} at once, per call",
            "us",
            median(ours_conc),
            median(plain_conc),
            plain,
            "",
            ours_conc,
            plain_conc,
        ),
        Figure(
            PART,
            "Version call vs a ctr process per call, p50",
            "us",
            median(ours_seq),
            median(ctr),
            "ctr version",
            "",
            ours_seq,
            ctr,
        ),
    ]
