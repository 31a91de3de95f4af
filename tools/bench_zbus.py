"""Benchmark the zbus server: throughput, round-trip latency, status while busy.

Starts the demo server (``python -m contd_trio.zbus.demo``) against a Redis,
then drives it from separate load processes that speak Redis directly (so the
load generator's cost stays out of the server's process):

* ``sequential``: one client, one request at a time (p50/p99 round trip);
* ``pipelined``: N client processes, each keeping ``depth`` requests queued
  (calls/s), as the Go reference's figure was measured (8 clients);
* ``status``: 16 slow ``Sleep`` requests hold every worker while a client
  asks for the status object (p50/p99).

Usage (a private Redis is started when no broker is given):

    .venv/bin/python tools/bench_zbus.py [--broker unix:///path] [--clients 8]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from contd_trio.zbus import codec  # noqa: E402
from contd_trio.zbus.transport import parse_broker_url  # noqa: E402
from tools import services  # noqa: E402

CALCULATOR = codec.ObjectID("calculator", "1.0")
UTILS = codec.ObjectID("utils", "1.0")
CALC_QUEUE = codec.queue_name("server", CALCULATOR)
UTILS_QUEUE = codec.queue_name("server", UTILS)
STATUS_QUEUE = codec.queue_name("server", codec.STATUS_OBJECT)


def connect(broker: str) -> redis.Redis:
    return redis.Redis(**parse_broker_url(broker).redis_kwargs(), socket_timeout=30)


def add_request(reply_to: str, request_id: str) -> bytes:
    return codec.encode_request(
        codec.Request(
            id=request_id,
            inputs=[codec.pack(1.0), codec.pack(2.0)],
            object=CALCULATOR,
            reply_to=reply_to,
            method="Add",
        )
    )


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def sequential(broker: str, count: int) -> dict[str, float]:
    r = connect(broker)
    reply_to = f"bench.{uuid.uuid4()}"
    latencies = []
    for i in range(count):
        started = time.perf_counter()
        r.rpush(CALC_QUEUE, add_request(reply_to, str(i)))
        if r.blpop([reply_to], 10) is None:
            raise RuntimeError("no answer within 10 s")
        latencies.append(time.perf_counter() - started)
    return {
        "p50_ms": percentile(latencies, 0.5) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
    }


def _pipelined_client(
    broker: str, seconds: float, depth: int, start_at: float, out: multiprocessing.Queue
) -> None:  # type: ignore[type-arg]
    r = connect(broker)
    reply_to = f"bench.{uuid.uuid4()}"
    payload = add_request(reply_to, "x")
    while time.time() < start_at:
        time.sleep(0.001)
    deadline = time.perf_counter() + seconds
    sent = answered = 0
    pipe = r.pipeline(transaction=False)
    while time.perf_counter() < deadline:
        for _ in range(depth - (sent - answered)):
            pipe.rpush(CALC_QUEUE, payload)
            sent += 1
        pipe.execute()
        got = r.blpop([reply_to], 10)
        if got is None:
            raise RuntimeError("no answer within 10 s")
        answered += 1 + len(r.lpop(reply_to, depth) or [])
    finished = time.perf_counter()
    while answered < sent:
        if r.blpop([reply_to], 10) is None:
            raise RuntimeError("no answer within 10 s")
        answered += 1
    out.put((answered, finished - (deadline - seconds)))


def pipelined(broker: str, clients: int, depth: int, seconds: float) -> dict[str, float]:
    out: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    start_at = time.time() + 0.5
    procs = [
        multiprocessing.Process(target=_pipelined_client, args=(broker, seconds, depth, start_at, out))
        for _ in range(clients)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=seconds + 60) for _ in procs]
    for p in procs:
        p.join()
    total = sum(n for n, _ in results)
    elapsed = max(t for _, t in results)
    return {"calls_per_s": total / elapsed, "calls": total}


def status_while_busy(broker: str, slow: int, count: int) -> dict[str, float]:
    r = connect(broker)
    sleepers = f"bench.{uuid.uuid4()}"
    for i in range(slow):
        r.rpush(
            UTILS_QUEUE,
            codec.encode_request(
                codec.Request(
                    id=f"sleep-{i}",
                    inputs=[codec.pack(10 * 10**9)],
                    object=UTILS,
                    reply_to=sleepers,
                    method="Sleep",
                )
            ),
        )
    time.sleep(0.5)  # let the server take them
    reply_to = f"bench.{uuid.uuid4()}"
    latencies = []
    busy_seen = 0
    for i in range(count):
        started = time.perf_counter()
        r.rpush(
            STATUS_QUEUE,
            codec.encode_request(
                codec.Request(
                    id=str(i), inputs=[], object=codec.STATUS_OBJECT, reply_to=reply_to, method="Status"
                )
            ),
        )
        got = r.blpop([reply_to], 10)
        if got is None:
            raise RuntimeError("no status answer within 10 s")
        latencies.append(time.perf_counter() - started)
        status = codec.decode_status(codec.decode_response(got[1]).output.data or b"")
        busy_seen = max(busy_seen, sum(w.state == "busy" for w in status.workers))
        time.sleep(0.002)
    return {
        "p50_ms": percentile(latencies, 0.5) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
        "busy_workers_seen": busy_seen,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", help="use this Redis instead of starting a private one")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--depth", type=int, default=64, help="requests each client keeps queued")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=16, help="the server's -workers")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-zbus-") as tmp:
        redis_service = None
        broker = args.broker
        if broker is None:
            redis_service = services.start_redis(Path(tmp))
            broker = redis_service.url
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "contd_trio.zbus.demo",
                "-broker",
                broker,
                "-workers",
                str(args.workers),
                "-log-level",
                "warning",
            ],
            cwd=ROOT,
        )
        try:
            r = connect(broker)
            r.delete(CALC_QUEUE, UTILS_QUEUE, STATUS_QUEUE)
            sequential(broker, 50)  # warm up, and wait for the server to be up
            python = sys.version.split()[0]
            print(f"server: demo, -workers {args.workers}; python {python}; {os.cpu_count()} CPUs")
            print("sequential Add round trip:", _fmt(sequential(broker, 2000)))
            print(
                f"pipelined Add, {args.clients} clients x depth {args.depth}:",
                _fmt(pipelined(broker, args.clients, args.depth, args.seconds)),
            )
            print(
                f"status while {args.workers} Sleep(10s) requests hold every worker:",
                _fmt(status_while_busy(broker, args.workers, 500)),
            )
        finally:
            server.terminate()
            server.wait(10)
            if redis_service is not None:
                redis_service.stop()
    return 0


def _fmt(values: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


if __name__ == "__main__":
    sys.exit(main())
