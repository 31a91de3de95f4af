"""What Run and the supervisor share: who is starting, who waits for a
TaskStart, and how a state change is told to the bus.

Run registers interest here before it starts a task; the supervisor, which
reads containerd's event stream, reports each TaskStart here. While a
container is starting, its exits are Run's business, not the supervisor's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import msgpack
import trio

from .. import logs
from ..zbus.codec import timestamp_now

log = logging.getLogger("contd.events")

#: The kinds of state change published on ``container.container@0.0.1.Events``.
KINDS = ("created", "started", "exited", "restarted", "failed", "oom", "deleted")

Key = tuple[str, str]  # (namespace, container id)
Publish = Callable[[dict[str, Any]], None]


class StartWaiter:
    """Set once containerd's TaskStart for the container's init process is seen."""

    def __init__(self) -> None:
        self.started = trio.Event()
        self.pid = 0


@dataclass
class ContainerEvent:
    """One state change, in the shape published on the bus."""

    namespace: str
    id: str
    kind: str
    exit_status: int = 0
    pid: int = 0
    time: msgpack.Timestamp | None = None

    def to_go(self) -> dict[str, Any]:
        return {
            "Namespace": self.namespace,
            "ID": self.id,
            "Kind": self.kind,
            "ExitStatus": self.exit_status,
            "Pid": self.pid,
            "Time": self.time or timestamp_now(),
        }


class Lifecycle:
    def __init__(self, publish: Publish | None = None) -> None:
        self._publish = publish
        self._waiters: dict[Key, list[StartWaiter]] = {}
        self._starting: dict[Key, int] = {}

    @contextmanager
    def starting(self, namespace: str, container_id: str) -> Iterator[StartWaiter]:
        """Mark a container as being started by Run, and wait for its TaskStart."""
        key = (namespace, container_id)
        waiter = StartWaiter()
        self._waiters.setdefault(key, []).append(waiter)
        self._starting[key] = self._starting.get(key, 0) + 1
        try:
            yield waiter
        finally:
            self._waiters[key].remove(waiter)
            if not self._waiters[key]:
                del self._waiters[key]
            self._starting[key] -= 1
            if not self._starting[key]:
                del self._starting[key]

    def is_starting(self, namespace: str, container_id: str) -> bool:
        return (namespace, container_id) in self._starting

    def task_started(self, namespace: str, container_id: str, pid: int) -> None:
        for waiter in self._waiters.get((namespace, container_id), ()):
            waiter.pid = pid
            waiter.started.set()

    def publish(self, event: ContainerEvent) -> None:
        logs.event(
            log,
            logging.INFO,
            f"container {event.kind}",
            ns=event.namespace,
            id=event.id,
            exit_status=event.exit_status if event.kind in ("exited", "failed") else None,
            pid=event.pid or None,
        )
        if self._publish is not None:
            self._publish(event.to_go())
