"""The example module of Go zbus's cross-language compatibility suite.

``python -m contd_trio.zbus.demo -broker URL`` serves module ``server`` with
``calculator@1.0`` and ``utils@1.0`` exactly as zbus's
``examples/server/api`` declares them, so that suite's Go client (and ours)
can be pointed at this server.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys

import trio

from .. import logs, taskgroups
from . import codec, gotypes
from .dispatch import Method
from .errors import BusUnavailable, CallError
from .server import DEFAULT_WORKERS, Server
from .transport import RedisTransport, open_redis_transport, parse_broker_url

MODULE = "server"
CALCULATOR = codec.ObjectID("calculator", "1.0")
UTILS = codec.ObjectID("utils", "1.0")

log = logging.getLogger("contd.zbus.demo")

F64 = gotypes.FLOAT64


async def add(a: float, b: float) -> float:
    return a + b


async def add_sub(a: float, b: float) -> tuple[float, float]:
    return a + b, a - b


async def divide(a: float, b: float) -> float:
    if b == 0:
        raise CallError("division by zero")
    return a / b


async def power(a: float, b: float) -> float:
    try:
        return math.pow(a, b)
    except (OverflowError, ValueError):
        return math.inf if a > 0 else math.nan


async def average(values: list[float] | None) -> float:
    if not values:
        return 0.0
    return sum(values) / len(values)


async def capitalize(text: str) -> str:
    return text.upper()


async def make_tuple() -> tuple[int, str, float]:
    return 10, "hello world", 0.5


async def sleep(duration_ns: int) -> None:
    await trio.sleep(max(duration_ns, 0) / 1e9)


async def panic() -> int:
    raise RuntimeError("Aaaaah!")


CALCULATOR_METHODS = {
    "Add": Method(add, params=(F64, F64), results=(F64,)),
    "AddSub": Method(add_sub, params=(F64, F64), results=(F64, F64)),
    "Divide": Method(divide, params=(F64, F64), results=(F64,)),
    "Pow": Method(power, params=(F64, F64), results=(F64,)),
    "Avg": Method(average, params=(gotypes.slice_of(F64),), results=(F64,)),
}

UTILS_METHODS = {
    "Capitalize": Method(capitalize, params=(gotypes.STRING,), results=(gotypes.STRING,)),
    "Tuple": Method(make_tuple, results=(gotypes.INT, gotypes.STRING, F64)),
    "Sleep": Method(sleep, params=(gotypes.DURATION,)),
    "Panic": Method(panic, results=(gotypes.INT,)),
}


def make_server(
    transport: RedisTransport, *, module: str = MODULE, workers: int = DEFAULT_WORKERS, timeout: float = 300.0
) -> Server:
    server = Server(module, transport, workers=workers, timeout=timeout)
    server.register(CALCULATOR, CALCULATOR_METHODS)
    server.register(UTILS, UTILS_METHODS)
    return server


async def publish_tiktok(server: Server, period: float = 1.0) -> None:
    """``utils@1.0.TikTok``: the current time, once a period, forever."""
    while True:
        await trio.sleep(period)
        server.publish_nowait(UTILS, "TikTok", codec.timestamp_now())


async def serve_demo(broker: str, workers: int, timeout: float) -> None:
    async with open_redis_transport(broker) as transport:
        server = make_server(transport, workers=workers, timeout=timeout)
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            nursery.start_soon(publish_tiktok, server)
            logs.event(log, logging.INFO, "serving", module=MODULE, broker=broker, workers=workers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m contd_trio.zbus.demo", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "-broker", "--broker", default="tcp://localhost:6379", help="redis address (default %(default)s)"
    )
    parser.add_argument(
        "-workers",
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        help="requests served at once (default %(default)s)",
    )
    parser.add_argument(
        "-timeout",
        "--timeout",
        type=float,
        default=300.0,
        help="per-request deadline in seconds (default %(default)s)",
    )
    parser.add_argument(
        "-log-level", "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    args = parser.parse_args(argv)
    try:
        parse_broker_url(args.broker)
    except ValueError as exc:
        parser.error(str(exc))
    if args.workers < 1:
        parser.error("-workers must be at least 1")
    logs.configure(args.log_level)
    try:
        taskgroups.run(serve_demo, args.broker, args.workers, args.timeout)
    except KeyboardInterrupt:
        return 0
    except BusUnavailable as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
