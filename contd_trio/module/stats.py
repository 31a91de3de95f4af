"""Stats backends: a container's metrics pushed to Redis every 2 s, as 0-OS did.

The metrics come from the container's cgroup (cgroup v1 or v2) and are
PUBLISHed as JSON with 0-OS's keys (``timestamp``, ``memory_usage``,
``memory_limit``, ``memory_cache``, ``cpu_usage`` in ns, ``pids_current``)
on the channel of ``redis://host:port/channel``. Each monitor is a task of
one supervised nursery (started by Run and reconciliation, stopped by Delete
and by giving up), never fire-and-forget; a tick without a task (the
container is being restarted) is skipped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import trio

from .. import logs
from ..zbus.errors import ZbusError
from ..zbus.transport import BrokerAddress, RedisTransport, open_redis_transport
from .types import Stats

log = logging.getLogger("contd.stats")

PUSH_INTERVAL = 2.0
CGROUP_ROOT = Path("/sys/fs/cgroup")

Key = tuple[str, str]


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().split()[0]
    except (OSError, IndexError):
        return None
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _stat_field(path: Path, name: str) -> int | None:
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == name:
                return int(value)
    except (OSError, ValueError):
        return None
    return None


def read_metrics(namespace: str, container_id: str, root: Path = CGROUP_ROOT) -> dict[str, Any] | None:
    """A container's metrics from its cgroup ``/<ns>/<id>``; None when it has none.

    Blocking (reads /sys): call from a thread.
    """
    relative = Path(namespace) / container_id
    memory_v1 = root / "memory" / relative
    if memory_v1.is_dir():
        cpu = root / "cpuacct" / relative
        return {
            "timestamp": int(time.time()),
            "memory_usage": _read_int(memory_v1 / "memory.usage_in_bytes") or 0,
            "memory_limit": _read_int(memory_v1 / "memory.limit_in_bytes") or 0,
            "memory_cache": _stat_field(memory_v1 / "memory.stat", "total_cache") or 0,
            "cpu_usage": _read_int(cpu / "cpuacct.usage") or 0,
            "pids_current": _read_int(root / "pids" / relative / "pids.current") or 0,
        }
    unified = root / relative
    if (unified / "cgroup.procs").exists():
        usage_usec = _stat_field(unified / "cpu.stat", "usage_usec") or 0
        return {
            "timestamp": int(time.time()),
            "memory_usage": _read_int(unified / "memory.current") or 0,
            "memory_limit": _read_int(unified / "memory.max") or 0,
            "memory_cache": _stat_field(unified / "memory.stat", "file") or 0,
            "cpu_usage": usage_usec * 1000,
            "pids_current": _read_int(unified / "pids.current") or 0,
        }
    return None


def _endpoint(url: str) -> tuple[BrokerAddress, str]:
    """``redis://host[:port]/channel`` → the Redis and the channel."""
    rest = url.removeprefix("redis://")
    netloc, _, channel = rest.partition("/")
    host, _, port = netloc.rpartition(":") if ":" in netloc else (netloc, "", "6379")
    return BrokerAddress(host=host.strip("[]"), port=int(port)), channel


class StatsMonitors:
    """The stats monitors of the daemon, one per container with stats backends."""

    def __init__(self, interval: float = PUSH_INTERVAL, cgroup_root: Path = CGROUP_ROOT) -> None:
        self.interval = interval
        self.cgroup_root = cgroup_root
        self._nursery: trio.Nursery | None = None
        self._scopes: dict[Key, trio.CancelScope] = {}
        self._transports: dict[BrokerAddress, RedisTransport] = {}
        self._stack: AsyncExitStack | None = None

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the monitors until cancelled."""
        async with AsyncExitStack() as stack, trio.open_nursery() as nursery:
            self._stack = stack
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def running(self) -> set[Key]:
        return set(self._scopes)

    def start(self, namespace: str, container_id: str, backends: Sequence[Stats]) -> None:
        """Start (or keep) the monitor of a container; no backends stops it."""
        key = (namespace, container_id)
        endpoints = [b.endpoint for b in backends if b.type == "redis" and b.endpoint]
        if not endpoints:
            self.stop(namespace, container_id)
            return
        if key in self._scopes or self._nursery is None:
            return
        scope = trio.CancelScope()
        self._scopes[key] = scope
        self._nursery.start_soon(self._monitor, key, endpoints, scope)

    def stop(self, namespace: str, container_id: str) -> None:
        scope = self._scopes.pop((namespace, container_id), None)
        if scope is not None:
            scope.cancel()

    async def _transport(self, address: BrokerAddress) -> RedisTransport:
        transport = self._transports.get(address)
        if transport is None:
            assert self._stack is not None
            transport = await self._stack.enter_async_context(open_redis_transport(address))
            self._transports[address] = transport
        return transport

    async def _monitor(self, key: Key, endpoints: list[str], scope: trio.CancelScope) -> None:
        namespace, container_id = key
        targets = [_endpoint(url) for url in endpoints]
        with scope:
            logs.event(log, logging.INFO, "stats monitor started", ns=namespace, id=container_id)
            while True:
                metrics = await trio.to_thread.run_sync(
                    read_metrics, namespace, container_id, self.cgroup_root
                )
                if metrics is not None:
                    payload = json.dumps(metrics).encode()
                    for address, channel in targets:
                        try:
                            transport = await self._transport(address)
                            await transport.publish(channel, payload)
                        except (ZbusError, ValueError) as exc:
                            logs.event(
                                log,
                                logging.WARNING,
                                "could not push stats",
                                ns=namespace,
                                id=container_id,
                                endpoint=f"{address}/{channel}",
                                error=str(exc),
                            )
                await trio.sleep(self.interval)
        with contextlib.suppress(KeyError):
            if self._scopes[key] is scope:
                del self._scopes[key]
