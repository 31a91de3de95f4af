"""The zbus server: round trip one call at a time, throughput under load,
and status while every worker is busy.

The demo server (``python -m contd_trio.zbus.demo``) serves
``calculator.Add``; load comes from separate processes speaking Redis
directly with redis-py, synchronously (RPUSH, then BLPOP for the answer), so
the load generator's cost stays out of the server's process. The issue's Go
client costs about the same per call.

The reference server is a stand-in for Go zbus v1.0.1's (not built here): a
process doing nothing but BLPOP, decode, add, encode, RPUSH + EXPIRE, one
request at a time on redis-py. It is the cost of the protocol's two Redis
hops with the least server work; Go's measured figures (0.35 ms
sequential, 3,700 calls/s for 8 clients) are kept in the notes.
"""

from __future__ import annotations

import argparse
import multiprocessing
import multiprocessing.synchronize
import subprocess
import sys
import time
import uuid
from pathlib import Path

import redis

from contd_trio.zbus import codec
from contd_trio.zbus.transport import parse_broker_url
from tools import services

from .common import ROOT, Figure, median, p50, percentile

PART = "zbus"
CALCULATOR = codec.ObjectID("calculator", "1.0")
UTILS = codec.ObjectID("utils", "1.0")
GO_SEQUENTIAL_MS = 0.35
GO_PIPELINED_PER_S = 3700.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clients", type=int, default=1, help="load processes of the throughput figure")
    parser.add_argument(
        "--depth", type=int, default=8, help="calls each load process keeps in flight (Go client: 8)"
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of the throughput figure")
    parser.add_argument("--sequential-calls", type=int, default=2000)


def _connect(broker: str) -> redis.Redis:
    return redis.Redis(**parse_broker_url(broker).redis_kwargs(), socket_timeout=30)


def _add_request(module: str, reply_to: str, request_id: str) -> bytes:
    return codec.encode_request(
        codec.Request(
            id=request_id,
            inputs=[codec.pack(1.0), codec.pack(2.0)],
            object=CALCULATOR,
            reply_to=reply_to,
            method="Add",
        )
    )


def _sequential(broker: str, module: str, count: int) -> float:
    """p50 of a round trip, seconds."""
    r = _connect(broker)
    queue = codec.queue_name(module, CALCULATOR)
    reply_to = f"bench.{uuid.uuid4()}"
    latencies = []
    for i in range(count):
        started = time.perf_counter()
        r.rpush(queue, _add_request(module, reply_to, str(i)))
        if r.blpop([reply_to], 10) is None:
            raise RuntimeError("no answer within 10 s")
        latencies.append(time.perf_counter() - started)
    return p50(latencies)


def _load_client(
    broker: str,
    module: str,
    seconds: float,
    depth: int,
    start_at: float,
    out: multiprocessing.Queue,  # type: ignore[type-arg]
) -> None:
    r = _connect(broker)
    queue = codec.queue_name(module, CALCULATOR)
    reply_to = f"bench.{uuid.uuid4()}"
    payload = _add_request(module, reply_to, "x")
    while time.time() < start_at:
        time.sleep(0.001)
    deadline = time.perf_counter() + seconds
    sent = answered = 0
    pipe = r.pipeline(transaction=False)
    while time.perf_counter() < deadline:
        for _ in range(depth - (sent - answered)):
            pipe.rpush(queue, payload)
            sent += 1
        pipe.execute()
        if r.blpop([reply_to], 10) is None:
            raise RuntimeError("no answer within 10 s")
        answered += 1 + len(r.lpop(reply_to, depth) or [])
    finished = time.perf_counter()
    while answered < sent:
        if r.blpop([reply_to], 10) is None:
            raise RuntimeError("no answer within 10 s")
        answered += 1
    out.put((answered, finished - (deadline - seconds)))


def _throughput(broker: str, module: str, clients: int, depth: int, seconds: float) -> float:
    """Calls per second of ``clients`` processes, each ``depth`` calls at once."""
    out: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    start_at = time.time() + 0.5
    procs = [
        multiprocessing.Process(target=_load_client, args=(broker, module, seconds, depth, start_at, out))
        for _ in range(clients)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=seconds + 60) for _ in procs]
    for p in procs:
        p.join()
    return float(sum(n for n, _ in results) / max(t for _, t in results))


def _status_while_busy(broker: str, module: str, workers: int, count: int) -> float:
    """p50 of a status round trip while Sleep requests hold every worker, seconds."""
    r = _connect(broker)
    sleepers = f"bench.{uuid.uuid4()}"
    for i in range(workers):
        request = codec.Request(
            id=f"sleep-{i}", inputs=[codec.pack(10 * 10**9)], object=UTILS, reply_to=sleepers, method="Sleep"
        )
        r.rpush(codec.queue_name(module, UTILS), codec.encode_request(request))
    time.sleep(0.5)  # let the server take them
    reply_to = f"bench.{uuid.uuid4()}"
    latencies = []
    for i in range(count):
        request = codec.Request(
            id=str(i), inputs=[], object=codec.STATUS_OBJECT, reply_to=reply_to, method="Status"
        )
        started = time.perf_counter()
        r.rpush(codec.queue_name(module, codec.STATUS_OBJECT), codec.encode_request(request))
        if r.blpop([reply_to], 10) is None:
            raise RuntimeError("no status answer within 10 s")
        latencies.append(time.perf_counter() - started)
        time.sleep(0.002)
    return percentile(latencies, 0.5)


def reference_server(broker: str, module: str, ready: multiprocessing.synchronize.Event) -> None:
    """The stand-in reference: serve Add one request at a time."""
    r = _connect(broker)
    queue = codec.queue_name(module, CALCULATOR)
    ready.set()
    while True:
        got = r.blpop([queue], 1)
        if got is None:
            continue
        payload = got[1]
        assert isinstance(payload, bytes)
        request = codec.decode_request(payload)
        a, b = (codec.unpack(x) for x in request.inputs)
        response = codec.Response(id=request.id, output=codec.Output(data=codec.encode_results([a + b])))
        pipe = r.pipeline(transaction=False)
        pipe.rpush(request.reply_to, codec.encode_response(response))
        pipe.expire(request.reply_to, 300)
        pipe.execute()


def measure(args: argparse.Namespace) -> list[Figure]:
    import tempfile

    seq, ref_seq, thr, ref_thr, status = [], [], [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-zbus-") as tmp:
        redis_service = services.start_redis(Path(tmp))
        broker = redis_service.url
        server = subprocess.Popen(
            [sys.executable, "-m", "contd_trio.zbus.demo", "-broker", broker, "-log-level", "warning"],
            cwd=ROOT,
        )
        ready = multiprocessing.Event()
        reference = multiprocessing.Process(
            target=reference_server, args=(broker, "reference", ready), daemon=True
        )
        reference.start()
        try:
            ready.wait(10)
            _sequential(broker, "server", 50)  # warm up, and wait for the server to be up
            _sequential(broker, "reference", 50)
            for _ in range(args.repeat):
                seq.append(_sequential(broker, "server", args.sequential_calls) * 1e3)
                ref_seq.append(_sequential(broker, "reference", args.sequential_calls) * 1e3)
                thr.append(_throughput(broker, "server", args.clients, args.depth, args.seconds))
                ref_thr.append(_throughput(broker, "reference", args.clients, args.depth, args.seconds))
            status.append(_status_while_busy(broker, "server", 16, 500) * 1e3)
        finally:
            reference.terminate()
            server.terminate()
            server.wait(10)
            redis_service.stop()
    stand_in = "sync redis-py server, stand-in for Go zbus"
    return [
        Figure(
            PART,
            "one call at a time (Add on the demo), p50",
            "ms",
            median(seq),
            median(ref_seq),
            stand_in,
            f"<= Go's ({GO_SEQUENTIAL_MS} ms)",
            seq,
            ref_seq,
            note=f"Go zbus v1.0.1 server measured {GO_SEQUENTIAL_MS} ms p50 on this machine kind (the issue)",
        ),
        Figure(
            PART,
            f"{args.clients} client(s) x {args.depth} calls at once, throughput",
            "calls/s",
            median(thr),
            median(ref_thr),
            stand_in,
            f">= 1.3x Go ({GO_PIPELINED_PER_S:,.0f}/s)",
            thr,
            ref_thr,
            note=f"Go zbus v1.0.1 server (10 workers) measured {GO_PIPELINED_PER_S:,.0f} calls/s (the issue)",
        ),
        Figure(
            PART, "status while 16 Sleep requests hold every worker, p50", "ms", median(status), runs=status
        ),
    ]
