"""Supervision: one task reading containerd's events and acting on them.

* It reports each TaskStart to Run's start confirmation (:mod:`.lifecycle`).
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
tries again. Restarts run in tasks of the supervisor's own nursery, one per
container at most, each serialised with Run and Delete by the module's
per-container lock.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

from .. import errors, logs
from ..containerd.bundles import idle_shims, kill_if_idle
from ..containerd.client import Containerd, Exit
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
from ..text import shorten
from . import labels, spec_mapping
from .lifecycle import ContainerEvent, Key, Lifecycle
from .operations import KILL_BUDGET_SECONDS, ContainerOps
from .restart_policy import Decision, RestartPolicy, format_history, parse_history
from .retry import persist, retry_backoff
from .types import go_time

log = logging.getLogger("contd.supervisor")

EVENT_FILTERS = ('topic~="^/tasks/"', 'topic~="^/containers/"')
#: How many exits (namespace, id, pid) are remembered to spot repeated events.
_SEEN_EXITS = 4096
#: Reconciliation's default period (the daemon's -reconcile-interval).
RECONCILE_INTERVAL = 60.0

T = TypeVar("T")


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
        self.policy = policy
        self._now = clock
        self.reconcile_interval = reconcile_interval
        self._nursery: trio.Nursery | None = None
        self._recovering: set[Key] = set()
        self._managed: dict[Key, bool] = {}
        self._seen_exits: dict[tuple[str, str, int], None] = {}
        self._oom: set[Key] = set()
        self._reconcile_wanted = trio.Event()
        self._reconcile_reason = ""
        #: How many reconciliations finished (start-up included).
        self.reconciliations = 0

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Watch events until cancelled; started once subscribed. Never ends
        on its own: only a bug in the daemon would end it."""
        async with open_nursery() as nursery:
            self._nursery = nursery
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
        # Decided now, not once containerd answers: a Run (or a restart)
        # starting it judges this exit itself.
        starting = self.lifecycle.is_starting(namespace, exit_.container_id)
        self._start_soon(self._handle_exit, (namespace, exit_.container_id), exit_, event, starting)

    async def _handle_exit(self, key: Key, exit_: TaskExit, event: Event, starting: bool) -> None:
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
        if starting:
            return
        reason = "out of memory" if key in self._oom else f"exited with status {exit_.exit_status}"
        self._oom.discard(key)
        self._recover_soon(key, reason, delay=True, stale_pid=exit_.pid)

    # -- running work in the supervisor's nursery ------------------------------------------

    def _start_soon(self, work: Callable[..., Awaitable[None]], *args: object) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(self._guarded, work, *args)

    async def _guarded(self, work: Callable[..., Awaitable[None]], *args: object) -> None:
        """One piece of supervision work: its failure is logged, never raised
        into the nursery (which would end supervision, and the daemon)."""
        try:
            await work(*args)
        except errors.ContdError as exc:
            logs.event(log, logging.WARNING, "supervision step failed", step=work.__name__, error=str(exc))
        except Exception:
            log.exception("bug in supervision step %s", work.__name__)

    async def _locked(self, key: Key, call: Callable[..., Awaitable[T]], *args: object) -> T:
        """``call(*args)`` holding the container's lock (released between retries)."""
        async with self.ops.locks.hold(key):
            return await call(*args)

    # -- recovery ------------------------------------------------------------------------

    def _recover_soon(self, key: Key, reason: str, *, delay: bool, stale_pid: int = 0) -> None:
        if key in self._recovering or self._nursery is None:
            return
        self._recovering.add(key)
        self._start_soon(self._recover, key, reason, delay, stale_pid)

    async def _recover(self, key: Key, reason: str, delay: bool, stale_pid: int) -> None:
        """Count the crash and restart the container, or give it up.

        containerd being away makes the current step wait and retry (it is
        not the container's fault, so it is not counted); a restart that
        fails otherwise is one more crash.
        """
        namespace, container_id = key
        locked = self._locked
        try:
            while True:
                verdict = await persist(
                    "judge a crash", key, locked, key, self._crash_verdict, key, stale_pid
                )
                if verdict is None:
                    return  # nothing to do: going away, failed, gone, or running again
                if verdict is Decision.GIVE_UP:
                    await persist("give up a container", key, locked, key, self._give_up, key, reason)
                    return
                if delay:
                    await trio.sleep(self.policy.delay)
                try:
                    pid = await persist("restart a container", key, locked, key, self._restart, key)
                except errors.EntrypointExited as exc:
                    reason, delay, stale_pid = str(exc), True, 0
                    continue
                except errors.ContdError as exc:
                    logs.event(
                        log, logging.WARNING, "restart failed", ns=namespace, id=container_id, error=str(exc)
                    )
                    reason, delay, stale_pid = f"restart failed: {exc}", True, 0
                    continue
                if pid is not None:
                    self.lifecycle.publish(ContainerEvent(namespace, container_id, "restarted", pid=pid))
                return
        finally:
            self._recovering.discard(key)

    async def _crash_verdict(self, key: Key, stale_pid: int) -> Decision | None:
        """Under the lock: record the crash and decide, or None when no
        recovery is due any more."""
        namespace, container_id = key
        try:
            record = await self.containerd.get_container(namespace, container_id)
        except errors.NotFound:
            return None
        if (
            labels.going_away(record.labels)
            or labels.FAILED in record.labels
            or labels.pending(record.labels)
        ):
            return None
        try:
            state = await self.containerd.get_process(namespace, container_id)
        except errors.NotFound:
            state = None
        if state is not None and state.status == "running" and state.pid != stale_pid:
            return None  # running again (another restart won, or the exit was old news)
        decision, history = self.policy.on_crash(
            parse_history(record.labels.get(labels.CRASHES)), self._now()
        )
        await self.containerd.update_labels(
            namespace, container_id, {labels.CRASHES: format_history(history)}
        )
        return decision

    async def _restart(self, key: Key) -> int | None:
        """Under the lock: start the container's task again; re-checks first."""
        namespace, container_id = key
        try:
            record = await self.containerd.get_container(namespace, container_id)
        except errors.NotFound:
            return None
        if labels.going_away(record.labels) or labels.FAILED in record.labels:
            return None  # asked to go while we waited: never restart it
        try:
            state = await self.containerd.get_process(namespace, container_id)
        except errors.NotFound:
            state = None
        if state is not None and state.status == "running":
            return None
        if state is not None:
            await self.containerd.delete_task(namespace, container_id)
        container = spec_mapping.read_container(record.spec or {})
        container.name = container_id
        pid = await self.ops.start_task(namespace, container)
        await self.containerd.update_labels(
            namespace, container_id, {labels.RESTARTS: str(labels.restarts(record.labels) + 1)}
        )
        self.ops.monitor_stats(namespace, container_id, container.stats or ())
        return pid

    async def _give_up(self, key: Key, reason: str) -> None:
        """Under the lock: label the container failed, remove its task, keep
        the container (its data and logs), say so. Nothing is deleted (0-OS
        issue 1268). Shielded and bounded: the label is written first, so a
        give-up cut short is finished by reconciliation, never undone."""
        namespace, container_id = key
        self.ops.stop_stats(namespace, container_id)
        ended: Exit | None = None
        with trio.CancelScope(shield=True), trio.move_on_after(KILL_BUDGET_SECONDS) as scope:
            await self.containerd.update_labels(
                namespace, container_id, {labels.FAILED: shorten(reason, 1000)}
            )
            ended = await self.ops.kill_and_remove_task(namespace, container_id)
            if ended is not None:
                await self.containerd.update_labels(
                    namespace,
                    container_id,
                    {
                        labels.EXIT_STATUS: str(ended.exit_status),
                        labels.EXITED_AT: str(ended.exited_at_ns),
                    },
                )
        if scope.cancelled_caught:
            raise errors.FailedPrecondition(
                f"giving up {container_id} in {namespace} took over {KILL_BUDGET_SECONDS:g} seconds; "
                "reconciliation finishes it"
            )
        status = ended.exit_status if ended is not None else 0
        logs.event(log, logging.WARNING, "gave up on container", ns=namespace, id=container_id, reason=reason)
        self.lifecycle.publish(ContainerEvent(namespace, container_id, "failed", exit_status=status))

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
                await self.reconcile(why)
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

    async def reconcile(self, why: str) -> None:
        """Check every managed container against what it should be; the
        work found is done in tasks of its own.

        Raises:
            ContdError: containerd could not list what it has.
        """
        logs.event(log, logging.DEBUG if why == "periodic" else logging.INFO, "reconciling", reason=why)
        for namespace in await self.containerd.list_namespaces():
            tasks = {t.container_id: t for t in await self.containerd.list_tasks(namespace)}
            records = await self.containerd.list_containers(namespace)
            for orphan in tasks.keys() - {record.id for record in records}:
                # A task whose container is gone: containerd died while
                # making it for a Run whose container was removed since.
                self._take_on((namespace, orphan), self._remove_orphan)
            managed = [r for r in records if r.labels.get(labels.MANAGED) == "true"]
            for record in managed:
                key = (namespace, record.id)
                self._managed[key] = True
                if self.lifecycle.is_starting(*key) or key in self._recovering:
                    continue
                task = tasks.get(record.id)
                if labels.going_away(record.labels):
                    self._take_on(key, self._finish_off)
                elif labels.pending(record.labels):
                    self._take_on(key, self._remove_pending)
                elif labels.FAILED in record.labels:
                    if task is not None:
                        self._take_on(key, self._finish_give_up)
                elif task is None or task.status in ("created", "stopped", "unknown"):
                    # "created": the daemon died while a restart started it.
                    reason = "found not running" if task is None else f"found {task.status}"
                    self._recover_soon(key, reason, delay=False, stale_pid=task.pid if task else 0)
                else:
                    stats = spec_mapping.read_container(record.spec or {}).stats or ()
                    self.ops.monitor_stats(namespace, record.id, stats)
        await self._reap_orphan_shims()
        self.reconciliations += 1

    async def _reap_orphan_shims(self) -> None:
        """Kill the shims containerd started for tasks it then gave up (its
        client went away mid-create) and left running (see containerd.bundles)."""
        state = self.ops.settings.containerd_state
        if state is None:
            return
        address = self.containerd.channel.socket_path
        for shim in await trio.to_thread.run_sync(idle_shims, state, address):
            try:
                await self.containerd.get_process(shim.namespace, shim.container_id)
                continue  # containerd has its task: not an orphan
            except errors.NotFound:
                pass
            if await trio.to_thread.run_sync(kill_if_idle, shim, state, address):
                logs.event(
                    log,
                    logging.WARNING,
                    "killed a shim containerd left serving nothing",
                    ns=shim.namespace,
                    id=shim.container_id,
                    pid=shim.pid,
                )

    def _take_on(self, key: Key, work: Callable[[Key], Awaitable[None]]) -> None:
        """Run reconciliation work for one container, one piece at a time."""
        if key in self._recovering or self._nursery is None:
            return
        self._recovering.add(key)

        async def then_release() -> None:
            try:
                await work(key)
            finally:
                self._recovering.discard(key)

        self._start_soon(then_release)

    async def _finish_off(self, key: Key) -> None:
        """Complete the Delete of a container marked as going away."""
        with contextlib.suppress(errors.NotFound):
            await persist("finish off a container", key, self.ops.delete, *key)

    async def _remove_pending(self, key: Key) -> None:
        """Remove a container whose Run failed or died before answering
        success. Under the lock, so a Run still working on it finishes first
        (and unmarks it when it succeeds)."""
        await persist("remove a pending container", key, self._locked, key, self._remove_if_pending, key)

    async def _remove_if_pending(self, key: Key) -> None:
        try:
            record = await self.containerd.get_container(*key)
        except errors.NotFound:
            return
        if labels.pending(record.labels):
            logs.event(log, logging.INFO, "removing what a failed Run left", ns=key[0], id=key[1])
            await self.ops.remove_container(*key)

    async def _remove_orphan(self, key: Key) -> None:
        logs.event(log, logging.WARNING, "removing a task that has no container", ns=key[0], id=key[1])
        remove = self.ops.remove_orphan_task
        await persist("remove an orphan task", key, self._locked, key, remove, *key)

    async def _finish_give_up(self, key: Key) -> None:
        """A given-up container whose task survived (the give-up was cut
        short): remove the task, as giving up does."""
        remove = self.ops.kill_and_remove_task
        await persist("remove a given-up task", key, self._locked, key, remove, *key)
