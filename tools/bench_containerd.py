"""Per-call overhead of a unary containerd call (Version), three ways, in one run:

* our client (grpclib under trio-asyncio, every call crossing from Trio);
* plain grpclib on plain asyncio, the same channel code without the bridge;
* ``ctr version``, a whole process per call (what a shell script pays).

Usage (a private containerd is started when no socket is given):

    .venv/bin/python tools/bench_containerd.py [--socket PATH] [--calls 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio
import trio_asyncio
from google.protobuf import empty_pb2
from grpclib.client import Channel

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from contd_trio._proto.containerd.services.version.v1 import version_grpc  # noqa: E402
from contd_trio.containerd.channel import open_channel  # noqa: E402
from contd_trio.containerd.client import Containerd  # noqa: E402
from tools import services  # noqa: E402


def report(name: str, sequential: list[float], concurrent: float | None) -> None:
    ordered = sorted(sequential)
    p50 = ordered[len(ordered) // 2] * 1e6
    p99 = ordered[int(len(ordered) * 0.99)] * 1e6
    line = f"{name:<34} sequential p50 {p50:8.0f} us  p99 {p99:8.0f} us"
    if concurrent is not None:
        line += f"  | 500 concurrent: {concurrent * 1e6:6.0f} us per call"
    print(line)


async def ours(socket: Path, calls: int) -> tuple[list[float], float]:
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
            for _ in range(500):
                nursery.start_soon(ctd.version)
        return times, (time.perf_counter() - started) / 500


async def plain_grpclib(socket: Path, calls: int) -> tuple[list[float], float]:
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
        await asyncio.gather(*(stub.Version(empty_pb2.Empty(), timeout=30) for _ in range(500)))
        return times, (time.perf_counter() - started) / 500
    finally:
        channel.close()


def ctr_version(socket: Path, calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        subprocess.run([services.CTR, "--address", str(socket), "version"], check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", type=Path, help="use this containerd instead of a private one")
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ctd-") as tmp:
        service = None
        socket = args.socket
        if socket is None:
            service = services.start_containerd(Path(tmp))
            socket = service.address
        try:
            version = services.ctr(socket, "version").split("Server:")[-1].split()[1]
            print(
                f"containerd {version}; python {sys.version.split()[0]}; {args.calls} sequential calls each"
            )
            seq, conc = trio_asyncio.run(ours, socket, args.calls)
            report("contd_trio client (trio-asyncio)", seq, conc)
            seq, conc = asyncio.run(plain_grpclib(socket, args.calls))
            report("plain grpclib on asyncio", seq, conc)
            report("ctr version (a process per call)", ctr_version(socket, 50), None)

        finally:
            if service is not None:
                service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
