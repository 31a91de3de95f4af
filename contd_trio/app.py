"""The daemon's top-level nursery: it owns every long-lived task.

Start-up waits (with logged backoff) for Redis and containerd, since zinit's
``after:`` orders starts but does not promise readiness. SIGTERM or SIGINT
stops taking requests, gives in-flight ones ``shutdown_grace`` to finish
(then cancels them, each still answering its caller) and returns:
containers keep running. Work that settles what a cancelled request made
gets ``SHIELDED_WORK_AFTER_GRACE_SECONDS`` more, then its shields are lifted
(see ``module.shields``), so a frozen containerd cannot hold the stop.
"""

from __future__ import annotations

import logging
import os
import platform
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio

from . import errors, logs
from .backoff import Backoff
from .config import Config
from .containerd.channel import open_channel
from .containerd.client import Containerd
from .containerd.spec import HostFacts
from .module.container import ContainerModule
from .module.exec_runner import ExecRunner
from .module.lifecycle import Lifecycle
from .module.names import EVENTS, MODULE, OBJECT
from .module.operations import UNCERTAIN_CREATE_SECONDS, ContainerOps, RunSettings
from .module.output import install_logshim
from .module.paths import Paths
from .module.restart_policy import RestartPolicy
from .module.retry import Janitor
from .module.service import container_methods
from .module.stats import StatsMonitors
from .module.supervisor import Supervisor
from .module.validate import LocalHost
from .zbus.errors import BusUnavailable
from .zbus.server import Server
from .zbus.transport import RedisTransport, open_redis_transport, parse_broker_url

log = logging.getLogger("contd")

#: How long cancelled requests may go on settling what they made at a stop
#: (the same bound as a Run's create past its deadline).
SHIELDED_WORK_AFTER_GRACE_SECONDS = UNCERTAIN_CREATE_SECONDS
#: After those, how often containerd is asked whether it still answers, and
#: how long it has to answer.
CONTAINERD_PROBE_SECONDS = 1.0


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


async def wait_for_containerd(containerd: Containerd) -> str:
    """Return containerd's version once it answers; log each failed attempt."""
    backoff = Backoff(first=0.2, maximum=5.0)
    while True:
        try:
            version, _revision = await containerd.version(timeout=10)
        except (errors.Unavailable, errors.DeadlineExceeded) as exc:
            delay = backoff.next()
            logs.event(
                log,
                logging.WARNING,
                "waiting for containerd",
                socket=containerd.channel.socket_path,
                error=str(exc),
                retry_in=delay,
            )
            await trio.sleep(delay)
        else:
            return version


@dataclass
class Daemon:
    """What a running daemon is made of (for tests and the REPL)."""

    config: Config
    server: Server
    containerd: Containerd
    ops: ContainerOps
    module: ContainerModule
    supervisor: Supervisor
    stats: StatsMonitors


def host_facts(config: Config) -> HostFacts:
    """This node as validation and the spec see it: its CPUs and machine,
    and the daemon's settings that name host paths."""
    return HostFacts(
        cpu_count=os.cpu_count() or 1,
        corex_path=str(config.corex),
        machine=platform.machine(),
        containerd_socket=str(config.containerd_socket),
        containerd_root=str(config.containerd_root),
        containerd_state=str(config.containerd_state),
        daemon_root=str(config.root),
        broker_socket=parse_broker_url(config.broker).unix_path or "",
        pids_limit=config.pids_limit,
    )


@asynccontextmanager
async def open_daemon(config: Config, *, grpc_channel: Any = None) -> AsyncIterator[Daemon]:
    """Connect to Redis and containerd (waiting for both), start supervision
    and serve ``container@0.0.1`` until the block ends.

    ``grpc_channel`` replaces the channel on containerd's socket (component
    tests inject faults through it; see ``containerd.channel``)."""
    async with (
        open_redis_transport(config.broker) as transport,
        open_channel(config.containerd_socket, grpc_channel=grpc_channel) as channel,
    ):
        await wait_for_broker(transport)
        containerd = Containerd(channel)
        version = await wait_for_containerd(containerd)
        server = Server(MODULE, transport, workers=config.workers, timeout=config.request_timeout)
        lifecycle = Lifecycle(publish=lambda event: server.publish_nowait(OBJECT, EVENTS, event))
        stats = StatsMonitors()
        host = LocalHost(host_facts(config))
        logshim = await trio.to_thread.run_sync(install_logshim, config.root / "bin")
        settings = RunSettings(
            logshim=logshim,
            log_max_bytes=config.log_max_bytes,
            containerd_state=config.containerd_state,
            start_settle=config.start_settle,
            netns_dir=host.facts.netns_dir,
        )
        janitor = Janitor()
        paths = Paths(config.root)
        ops = ContainerOps(containerd, paths, settings, lifecycle, stats, janitor)
        module = ContainerModule(
            ops, host, ExecRunner(containerd, ops.exec_outputs, logshim, janitor, ops.shields)
        )
        policy = RestartPolicy(
            delay=config.restart_delay, limit=config.restart_limit, window=config.restart_window
        )
        supervisor = Supervisor(
            containerd, ops, lifecycle, policy, reconcile_interval=config.reconcile_interval
        )
        server.register(OBJECT, container_methods(module))
        async with trio.open_nursery() as nursery:
            await nursery.start(stats.serve)
            await nursery.start(janitor.serve)
            # Subscribed to events before the first Run can need them.
            await nursery.start(supervisor.serve)
            await nursery.start(server.serve)
            logs.event(
                log,
                logging.INFO,
                "serving",
                module=MODULE,
                object=OBJECT,
                broker=config.broker,
                containerd=config.containerd_socket,
                containerd_version=version,
                workers=config.workers,
            )
            try:
                yield Daemon(config, server, containerd, ops, module, supervisor, stats)
            finally:
                nursery.cancel_scope.cancel()


async def _lift_shields_later(daemon: Daemon) -> None:
    """Work cut short by the stop may still settle what it made, shielded,
    for ``SHIELDED_WORK_AFTER_GRACE_SECONDS`` and then as long as containerd
    answers (a busy one rolls back 50 Runs in more than that): only a
    containerd that stops answering, frozen or gone, would make each of
    these wait out a call's whole timeout, so then the shields are lifted."""
    await trio.sleep(SHIELDED_WORK_AFTER_GRACE_SECONDS)
    while True:
        try:
            await daemon.containerd.version(timeout=CONTAINERD_PROBE_SECONDS)
        except errors.ContdError as exc:
            reason = str(exc)
            logs.event(log, logging.WARNING, "roll-backs cut short: containerd does not answer", error=reason)
            break
        await trio.sleep(CONTAINERD_PROBE_SECONDS)
    daemon.ops.shields.lift()


async def _take_later_signals(signals: AsyncIterator[int]) -> None:
    """Once the stop is as short as it gets, take further signals (an
    operator's third Ctrl-C) and only log them: one left in the receiver
    is raised again as it closes, and SIGTERM would then kill the daemon
    at the end of its stop (SIGINT would end it with KeyboardInterrupt)."""
    async for signum in signals:
        logs.event(log, logging.INFO, "already stopping", signal=signal.Signals(signum).name)


async def run_daemon(config: Config) -> None:
    """Serve until SIGTERM or SIGINT, then stop gracefully.

    A signal while still waiting for Redis or containerd ends the wait at
    once; a second signal during a graceful stop cuts it short.
    """
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        # The outer nursery holds what lifts the shields: the inner one
        # waits for the shielded work it is to end.
        async with trio.open_nursery() as outer:
            async with trio.open_nursery() as nursery:
                stop_requested = trio.Event()
                serving: list[Daemon] = []

                async def serve() -> None:
                    async with open_daemon(config) as daemon:
                        serving.append(daemon)
                        await stop_requested.wait()
                        daemon.ops.stopping.set()
                        await daemon.server.stop(config.shutdown_grace)
                        outer.start_soon(_lift_shields_later, daemon)
                        await daemon.server.wait_stopped()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(serve)
                async for signum in signals:
                    name = signal.Signals(signum).name
                    if not serving or stop_requested.is_set():
                        logs.event(log, logging.INFO, "stopping now", signal=name)
                        if serving:
                            outer.start_soon(_lift_shields_later, serving[0])
                        outer.start_soon(_take_later_signals, signals)
                        nursery.cancel_scope.cancel()
                        break
                    logs.event(
                        log,
                        logging.INFO,
                        "stopping",
                        signal=name,
                        grace=config.shutdown_grace,
                        in_flight=serving[0].server.in_flight,
                    )
                    stop_requested.set()
            outer.cancel_scope.cancel()
    logs.event(log, logging.INFO, "stopped")
