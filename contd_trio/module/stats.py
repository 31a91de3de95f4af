"""Stats monitors: a container's metrics pushed to its backends every 2 s, as 0-OS did.

The metrics come from the container's cgroup (cgroup v1 or v2) and are sent
as JSON with 0-OS's keys (``timestamp``, ``memory_usage``, ``memory_limit``,
``memory_cache``, ``cpu_usage`` in ns, ``pids_current``) to each backend of
the container's ``Stats`` (see :mod:`.backends`). Each monitor is a task of
one supervised nursery (started by Run and reconciliation, stopped by Delete
and by giving up), never fire-and-forget; a tick without a task (the
container is being restarted) is skipped.

A monitor serves a tenant's endpoints, so it trusts none of them: a backend
that cannot be reached is logged (once, and again when it is back) and
retried with backoff; an entry that cannot be used at all is logged and
skipped. Nothing a monitor meets ends it, let alone the daemon. Each
monitor owns its connections, one per destination (a container's entries
naming the same Redis share it), and pushes to them all at once: they close
when it stops.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from .. import logs
from ..backoff import Backoff
from ..taskgroups import open_nursery
from .backends import STATS_BACKENDS, StatsPublisher
from .redis_publisher import PublishFailed
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


#: cgroup v1 writes "no limit" as the largest page-aligned int64.
_UNLIMITED_V1 = 1 << 62


@dataclass(frozen=True)
class CgroupMetrics:
    """A container's metrics, read from its cgroup at ``time_ns``."""

    time_ns: int
    memory_usage: int
    memory_limit: int  # 0: no limit
    memory_cache: int
    cpu_usage_ns: int
    pids: int

    def as_0os(self) -> dict[str, Any]:
        """What a stats backend gets: 0-OS's keys."""
        return {
            "timestamp": self.time_ns // 1_000_000_000,
            "memory_usage": self.memory_usage,
            "memory_limit": self.memory_limit,
            "memory_cache": self.memory_cache,
            "cpu_usage": self.cpu_usage_ns,
            "pids_current": self.pids,
        }


def read_cgroup(namespace: str, container_id: str, root: Path = CGROUP_ROOT) -> CgroupMetrics | None:
    """A container's metrics from its cgroup ``/<ns>/<id>``; None when it has none.

    Blocking (reads /sys): call from a thread.
    """
    relative = Path(namespace) / container_id
    memory_v1 = root / "memory" / relative
    if memory_v1.is_dir():
        limit = _read_int(memory_v1 / "memory.limit_in_bytes") or 0
        return CgroupMetrics(
            time_ns=time.time_ns(),
            memory_usage=_read_int(memory_v1 / "memory.usage_in_bytes") or 0,
            memory_limit=0 if limit >= _UNLIMITED_V1 else limit,
            memory_cache=_stat_field(memory_v1 / "memory.stat", "total_cache") or 0,
            cpu_usage_ns=_read_int(root / "cpuacct" / relative / "cpuacct.usage") or 0,
            pids=_read_int(root / "pids" / relative / "pids.current") or 0,
        )
    unified = root / relative
    if (unified / "cgroup.procs").exists():
        return CgroupMetrics(
            time_ns=time.time_ns(),
            memory_usage=_read_int(unified / "memory.current") or 0,
            memory_limit=_read_int(unified / "memory.max") or 0,
            memory_cache=_stat_field(unified / "memory.stat", "file") or 0,
            cpu_usage_ns=(_stat_field(unified / "cpu.stat", "usage_usec") or 0) * 1000,
            pids=_read_int(unified / "pids.current") or 0,
        )
    return None


def read_metrics(namespace: str, container_id: str, root: Path = CGROUP_ROOT) -> dict[str, Any] | None:
    """What the monitors push (0-OS's keys); None when it has no cgroup.

    Blocking (reads /sys): call from a thread.
    """
    metrics = read_cgroup(namespace, container_id, root)
    return None if metrics is None else metrics.as_0os()


class _Target:
    """The entries of a monitor that share one destination (and connection),
    with their retry schedule."""

    def __init__(self, destination: str, entries: int, publisher: StatsPublisher) -> None:
        self.destination = destination
        self.entries = entries
        self.publisher = publisher
        self.backoff = Backoff(first=PUSH_INTERVAL, maximum=60.0)
        self.retry_at = 0.0
        self.failing = False


class StatsMonitors:
    """The stats monitors of the daemon, one per container with stats backends."""

    def __init__(self, interval: float = PUSH_INTERVAL, cgroup_root: Path = CGROUP_ROOT) -> None:
        self.interval = interval
        self.cgroup_root = cgroup_root
        self._nursery: trio.Nursery | None = None
        self._scopes: dict[Key, trio.CancelScope] = {}

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the monitors until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def running(self) -> set[Key]:
        return set(self._scopes)

    def start(self, namespace: str, container_id: str, backends: Sequence[Stats]) -> None:
        """Start (or keep) the monitor of a container; no backends stops it."""
        key = (namespace, container_id)
        wanted = [b for b in backends if b.type in STATS_BACKENDS]
        if not wanted:
            self.stop(namespace, container_id)
            return
        if key in self._scopes or self._nursery is None:
            return
        scope = trio.CancelScope()
        self._scopes[key] = scope
        self._nursery.start_soon(self._monitor, key, wanted, scope)

    def stop(self, namespace: str, container_id: str) -> None:
        scope = self._scopes.pop((namespace, container_id), None)
        if scope is not None:
            scope.cancel()

    async def _monitor(self, key: Key, backends: list[Stats], scope: trio.CancelScope) -> None:
        namespace, container_id = key
        try:
            with scope:
                logs.event(log, logging.INFO, "stats monitor started", ns=namespace, id=container_id)
                async with AsyncExitStack() as stack:
                    targets = [
                        await self._open(stack, destination, entries)
                        for destination, entries in self._destinations(key, backends).items()
                    ]
                    await self._push_forever(key, targets)
        except Exception:  # a bug: it ends this monitor only, never the daemon
            log.exception("stats monitor of %s/%s failed", namespace, container_id)
        finally:
            with contextlib.suppress(KeyError):
                if self._scopes[key] is scope:
                    del self._scopes[key]

    def _destinations(self, key: Key, backends: list[Stats]) -> dict[tuple[str, str], list[Stats]]:
        """The usable entries by (type, destination), in the order of their first entry."""
        found: dict[tuple[str, str], list[Stats]] = {}
        for backend in backends:
            try:
                destination = STATS_BACKENDS[backend.type].destination(backend)
            except ValueError as exc:
                logs.event(
                    log,
                    logging.WARNING,
                    "unusable stats backend, skipped",
                    ns=key[0],
                    id=key[1],
                    endpoint=backend.endpoint,
                    error=str(exc),
                )
                continue
            found.setdefault((backend.type, destination), []).append(backend)
        return found

    async def _open(
        self, stack: AsyncExitStack, destination: tuple[str, str], entries: list[Stats]
    ) -> _Target:
        kind, where = destination
        publisher = await stack.enter_async_context(STATS_BACKENDS[kind].open_publisher(entries))
        return _Target(where, len(entries), publisher)

    async def _push_forever(self, key: Key, targets: list[_Target]) -> None:
        namespace, container_id = key
        while True:
            metrics = await trio.to_thread.run_sync(read_metrics, namespace, container_id, self.cgroup_root)
            if metrics is not None:
                payload = json.dumps(metrics).encode()
                # At once: a destination that takes its time delays no other.
                async with open_nursery() as nursery:
                    for target in targets:
                        nursery.start_soon(self._push, key, target, payload)
            await trio.sleep(self.interval)

    async def _push(self, key: Key, target: _Target, payload: bytes) -> None:
        now = trio.current_time()
        if now < target.retry_at:
            return
        try:
            await target.publisher.publish(payload)
        except PublishFailed as exc:
            delay = target.backoff.next()
            target.retry_at = trio.current_time() + delay
            if not target.failing:
                logs.event(
                    log,
                    logging.WARNING,
                    "could not push stats, retrying",
                    ns=key[0],
                    id=key[1],
                    endpoint=target.destination,
                    entries=target.entries,
                    error=str(exc),
                    retry_in=delay,
                )
            target.failing = True
            return
        if target.failing:
            logs.event(
                log,
                logging.INFO,
                "pushing stats again",
                ns=key[0],
                id=key[1],
                endpoint=target.destination,
            )
        target.failing = False
        target.backoff.reset()
        target.retry_at = 0.0
