"""What Run and the supervisor share: who is starting, who waits for a
TaskStart, and how a state change is told to the bus.

Run registers interest here before it starts a task; the supervisor, which
reads containerd's event stream, reports each TaskStart and each exit here.
An exit seen while a container is starting is recorded for the start (which
fails when it is its process's), and the supervisor judges it only once the
start is over: it is never lost between the two.
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
    """What a start learns from containerd's events: its TaskStart, and the
    exit of the process it started."""

    def __init__(self) -> None:
        #: Set once containerd's TaskStart for the container's init process is seen.
        self.started = trio.Event()
        self.pid = 0
        #: Set once an exit of the process given to :meth:`watch` is seen.
        self.exited = trio.Event()
        self.exit_status = 0
        #: Set when the start is over (the supervisor's cue to judge the exits it saw).
        self.over = trio.Event()
        self._process = 0
        # Exits may be seen before Start has answered with the pid: kept until then.
        self._exits: dict[int, int] = {}

    def watch(self, pid: int) -> None:
        """The started process: its exit (seen already or later) sets :attr:`exited`."""
        self._process = pid
        self._check()

    def _record_exit(self, pid: int, exit_status: int) -> None:
        self._exits[pid] = exit_status
        self._check()

    def _check(self) -> None:
        if self._process in self._exits and not self.exited.is_set():
            self.exit_status = self._exits[self._process]
            self.exited.set()


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
            waiter.over.set()
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

    def task_exited(self, namespace: str, container_id: str, pid: int, exit_status: int) -> list[trio.Event]:
        """Record an exit of the container's own process for the starts
        under way; returns the events set once each of them is over."""
        waiters = self._waiters.get((namespace, container_id), ())
        for waiter in waiters:
            waiter._record_exit(pid, exit_status)
        return [waiter.over for waiter in waiters]

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
