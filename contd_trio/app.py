"""The daemon's top-level nursery: it owns every long-lived task.

Start-up waits (with logged backoff) for Redis, since zinit's ``after:``
orders starts but does not promise readiness. SIGTERM or SIGINT stops taking
requests, gives in-flight ones ``shutdown_grace`` to finish (then cancels
them, each still answering its caller) and returns: containers keep running.
"""

from __future__ import annotations

import logging
import signal

import trio

from . import logs
from .backoff import Backoff
from .config import Config
from .zbus.errors import BusUnavailable
from .zbus.server import Server
from .zbus.transport import RedisTransport, open_redis_transport

log = logging.getLogger("contd")

MODULE = "container"


async def wait_for_broker(transport: RedisTransport) -> None:
    """Return once Redis answers; log each failed attempt."""
    backoff = Backoff(first=0.2, maximum=5.0)
    while True:
        try:
            await transport.ping()
        except BusUnavailable as exc:
            delay = backoff.next()
            logs.event(
                log,
                logging.WARNING,
                "waiting for redis",
                broker=transport.address,
                error=str(exc),
                retry_in=delay,
            )
            await trio.sleep(delay)
        else:
            return


async def run_daemon(
    config: Config, *, task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve until SIGTERM or SIGINT, then stop gracefully."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with open_redis_transport(config.broker) as transport:
            await wait_for_broker(transport)
            server = Server(MODULE, transport, workers=config.workers, timeout=config.request_timeout)
            async with trio.open_nursery() as nursery:
                await nursery.start(server.serve)
                logs.event(
                    log,
                    logging.INFO,
                    "serving",
                    module=MODULE,
                    broker=config.broker,
                    workers=config.workers,
                    objects=",".join(map(str, server.dispatcher.objects())) or "-",
                )
                task_status.started(server)
                async for signum in signals:
                    logs.event(
                        log,
                        logging.INFO,
                        "stopping",
                        signal=signal.Signals(signum).name,
                        grace=config.shutdown_grace,
                        in_flight=server.in_flight,
                    )
                    break
                await server.stop(config.shutdown_grace)
    logs.event(log, logging.INFO, "stopped")
