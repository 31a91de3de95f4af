"""Supervision: one task reading containerd's events and acting on them.

* It reports each TaskStart, and each exit, to the starts under way (Run's
  and restarts', :mod:`.lifecycle`); an exit seen during a start is judged
  once the start is over.
* When a managed container's own process exits (``id == container_id``;
  exec exits are not crashes) and nobody asked for it (the going-away label,
  re-read right before every restart), it restarts it after a delay; at the
  policy's limit it gives up: the container is labelled ``contd.failed``,
  its task removed, the container kept, and an event says so. Exit events
  can come twice (a dead shim makes containerd publish another): handling
  is idempotent.
* It reconciles at start-up, after every gap in the event stream
  (containerd restarted: events are not replayed) and every
  ``reconcile_interval``: a container that should run and does not is
  started again, one marked as going away is finished off, one still marked
  pending (its Run failed or died) is removed, a given-up one whose task
  survived loses it, and stats monitors are resumed.
* Every state change is published on the bus.

It never ends the daemon on its own. containerd being away (Unavailable,
DeadlineExceeded) makes each piece of work back off and retry, an exit seen
meanwhile included; other errors are logged, and the next reconciliation
tries again. Recovery (:mod:`.recovery`) and reconciliation
(:mod:`.reconcile`) run in tasks of the supervisor's own nursery, one per
container at a time (:mod:`.keyed_work`), each serialised with Run and
Delete by the container's lock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import trio

from .. import errors, logs
from ..containerd.client import Containerd
from ..containerd.events import (
    ContainerCreate,
    ContainerDelete,
    Event,
    Gap,
    TaskExit,
    TaskOOM,
    TaskStart,
)
from ..taskgroups import open_nursery
from . import labels
from .keyed_work import KeyedWork
from .lifecycle import ContainerEvent, Key, Lifecycle
from .operations import ContainerOps
from .reconcile import Reconciler
from .recovery import Recovery
from .restart_policy import RestartPolicy
from .retry import persist, retry_backoff
from .types import go_time

log = logging.getLogger("contd.supervisor")

EVENT_FILTERS = ('topic~="^/tasks/"', 'topic~="^/containers/"')
#: How many exits (namespace, id, pid) are remembered to spot repeated events.
_SEEN_EXITS = 4096
#: Reconciliation's default period (the daemon's -reconcile-interval).
RECONCILE_INTERVAL = 60.0


class Supervisor:
    """Args:
    containerd: the client.
    ops: the container operations it shares with the RPC facade (locks,
        starting, removing, stats monitors).
    lifecycle: start confirmations and published events, shared with Run.
    policy: when a crashed container is restarted or given up.
    clock: wall clock (crash times are kept in labels, across daemon restarts).
    reconcile_interval: seconds between reconciliations when nothing else
        asks for one.
    """

    def __init__(
        self,
        containerd: Containerd,
        ops: ContainerOps,
        lifecycle: Lifecycle,
        policy: RestartPolicy,
        clock: Callable[[], float] = time.time,
        reconcile_interval: float = RECONCILE_INTERVAL,
    ) -> None:
        self.containerd = containerd
        self.ops = ops
        self.lifecycle = lifecycle
        self.reconcile_interval = reconcile_interval
        self.work = KeyedWork()
        self._managed: dict[Key, bool] = {}
        self.recovery = Recovery(containerd, ops, lifecycle, policy, clock)
        self.reconciler = Reconciler(containerd, ops, lifecycle, self.work, self.recovery, self._managed)
        self._seen_exits: dict[tuple[str, str, int], None] = {}
        self._oom: set[Key] = set()
        self._reconcile_wanted = trio.Event()
        self._reconcile_reason = ""

    @property
    def reconciliations(self) -> int:
        """How many reconciliations finished (start-up included)."""
        return self.reconciler.count

    async def reconcile(self, why: str) -> None:
        """Reconcile now (see :mod:`.reconcile`)."""
        await self.reconciler.reconcile(why)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Watch events until cancelled; started once subscribed. Never ends
        on its own: only a bug in the daemon would end it."""
        async with open_nursery() as nursery:
            self.work.bind(nursery)
            async with self.containerd.watch_events(EVENT_FILTERS) as events:
                nursery.start_soon(self._reconcile_forever)
                task_status.started()
                async for item in events:
                    if isinstance(item, Gap):
                        self.request_reconcile(f"event stream gap: {item.reason}")
                    else:
                        await self._dispatch(item)

    # -- events --------------------------------------------------------------------------

    async def _dispatch(self, event: Event) -> None:
        """Act on one event. containerd trouble while doing so never stops
        supervision: exits are retried in their own task, publishing the
        other kinds is given up (and logged)."""
        try:
            await self._act_on(event)
        except errors.ContdError as exc:
            logs.event(
                log,
                logging.WARNING,
                "could not handle event",
                topic=event.topic,
                ns=event.namespace,
                id=event.container_id,
                error=str(exc),
            )

    async def _act_on(self, event: Event) -> None:
        payload = event.payload
        ns = event.namespace
        when = go_time(event.timestamp_ns)
        if isinstance(payload, TaskStart):
            self.lifecycle.task_started(ns, payload.container_id, payload.pid)
            if await self._is_managed(ns, payload.container_id):
                self.lifecycle.publish(
                    ContainerEvent(ns, payload.container_id, "started", pid=payload.pid, time=when)
                )
        elif isinstance(payload, TaskExit):
            if payload.id == payload.container_id:  # the container's own process, not an exec
                self._on_exit(ns, payload, event)
        elif isinstance(payload, TaskOOM):
            self._oom.add((ns, payload.container_id))
            if await self._is_managed(ns, payload.container_id):
                self.lifecycle.publish(ContainerEvent(ns, payload.container_id, "oom", time=when))
        elif isinstance(payload, ContainerCreate):
            self._managed.pop((ns, payload.id), None)
            if self.ops.settle_create(ns, payload.id):
                # Made after its Run gave up on the create (and perhaps after
                # the janitor found nothing): remove it if still pending.
                self.work.follow((ns, payload.id), self.reconciler.remove_pending, (ns, payload.id))
            if await self._is_managed(ns, payload.id):
                self.lifecycle.publish(ContainerEvent(ns, payload.id, "created", time=when))
        elif isinstance(payload, ContainerDelete):
            key = (ns, payload.id)
            if self._managed.pop(key, False):
                self.lifecycle.publish(ContainerEvent(ns, payload.id, "deleted", time=when))
            self._oom.discard(key)

    async def _is_managed(self, namespace: str, container_id: str) -> bool:
        key = (namespace, container_id)
        known = self._managed.get(key)
        if known is None:
            try:
                record = await self.containerd.get_container(namespace, container_id)
            except errors.NotFound:
                return False
            known = self._managed[key] = record.labels.get(labels.MANAGED) == "true"
        return known

    def _on_exit(self, namespace: str, exit_: TaskExit, event: Event) -> None:
        seen = (namespace, exit_.container_id, exit_.pid)
        if seen in self._seen_exits:
            return  # the same exit again (a dead shim makes containerd repeat it)
        self._seen_exits[seen] = None
        if len(self._seen_exits) > _SEEN_EXITS:
            del self._seen_exits[next(iter(self._seen_exits))]
        # Recorded now, not once containerd answers: a Run (or a restart)
        # starting it fails on this exit when it is its process's.
        starts = self.lifecycle.task_exited(namespace, exit_.container_id, exit_.pid, exit_.exit_status)
        self.work.spawn(self._handle_exit, (namespace, exit_.container_id), exit_, event, starts)

    async def _handle_exit(self, key: Key, exit_: TaskExit, event: Event, starts: list[trio.Event]) -> None:
        namespace, container_id = key
        if not await persist("check an exited container", key, self._is_managed, *key):
            return
        self.lifecycle.publish(
            ContainerEvent(
                namespace,
                container_id,
                "exited",
                exit_status=exit_.exit_status,
                pid=exit_.pid,
                time=go_time(event.timestamp_ns),
            )
        )
        # Judged once the starts under way are over: one that failed on this
        # exit has removed the container (or is recovering it already); one
        # that succeeded before it came leaves a crash to recover, and the
        # verdict re-checks all of that under the container's lock.
        for over in starts:
            await over.wait()
        reason = "out of memory" if key in self._oom else f"exited with status {exit_.exit_status}"
        self._oom.discard(key)
        # Never dropped for other work on the container (a restart finishing
        # when its new process dies): the verdict re-checks once it is over.
        self.work.follow(key, self.recovery.recover, key, reason, True, exit_.pid)

    # -- reconciliation --------------------------------------------------------------------

    def request_reconcile(self, why: str) -> None:
        """Ask for a reconciliation soon (the reason is logged)."""
        self._reconcile_reason = why
        self._reconcile_wanted.set()

    async def _reconcile_forever(self) -> None:
        """Reconcile at start-up, when asked, and every ``reconcile_interval``;
        a reconciliation that fails is retried with backoff."""
        why = "start-up"
        backoff = retry_backoff()
        while True:
            try:
                await self.reconciler.reconcile(why)
            except errors.ContdError as exc:
                delay = backoff.next()
                logs.event(log, logging.WARNING, "reconciliation failed", error=str(exc), retry_in=delay)
                with trio.move_on_after(delay):
                    await self._reconcile_wanted.wait()
                why = f"retry after: {exc}"
                continue
            backoff.reset()
            with trio.move_on_after(self.reconcile_interval):
                await self._reconcile_wanted.wait()
            why = self._reconcile_reason if self._reconcile_wanted.is_set() else "periodic"
            self._reconcile_wanted = trio.Event()
