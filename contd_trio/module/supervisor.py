"""Supervision: one task reading containerd's events and acting on them.

* It reports each TaskStart to Run's start confirmation (:mod:`.lifecycle`).
* When a managed container's own process exits (``id == container_id``;
  exec exits are not crashes) and nobody asked for it (the going-away label,
  re-read right before every restart), it restarts it after a delay; at the
  policy's limit it gives up: the task is removed, the container kept with a
  ``contd.failed`` label, and an event says so. Exit events can come twice
  (a dead shim makes containerd publish another): handling is idempotent.
* At start-up and after every gap in the event stream (containerd restarted:
  events are not replayed) it reconciles: a container that should run and
  does not is started again, one marked as going away is finished off, stats
  monitors are resumed.
* Every state change is published on the bus.

Restarts run in tasks of the supervisor's own nursery, one per container at
most, each serialised with Run and Delete by the module's per-container lock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import trio

from .. import errors, logs
from ..containerd import spec as oci
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
from . import labels
from .container import ContainerModule
from .lifecycle import ContainerEvent, Key, Lifecycle
from .restart_policy import Decision, RestartPolicy, format_history, parse_history

log = logging.getLogger("contd.supervisor")

EVENT_FILTERS = ('topic~="^/tasks/"', 'topic~="^/containers/"')
#: How many exits (namespace, id, pid) are remembered to spot repeated events.
_SEEN_EXITS = 4096


class Supervisor:
    def __init__(
        self,
        containerd: Containerd,
        module: ContainerModule,
        lifecycle: Lifecycle,
        policy: RestartPolicy,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.containerd = containerd
        self.module = module
        self.lifecycle = lifecycle
        self.policy = policy
        # Wall clock: crash times are kept in labels, across daemon restarts.
        self._now = clock
        self._nursery: trio.Nursery | None = None
        self._recovering: set[Key] = set()
        self._managed: dict[Key, bool] = {}
        self._seen_exits: dict[tuple[str, str, int], None] = {}
        self._oom: set[Key] = set()
        #: How many reconciliations ran (start-up included).
        self.reconciliations = 0

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Watch events until cancelled; started once subscribed."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            async with self.containerd.watch_events(EVENT_FILTERS) as events:
                task_status.started()
                await self.reconcile("start-up")
                async for item in events:
                    if isinstance(item, Gap):
                        await self.reconcile(f"event stream gap: {item.reason}")
                        continue
                    try:
                        await self._dispatch(item)
                    except errors.ContdError as exc:
                        # containerd trouble while handling one event must not
                        # stop supervision; reconciliation catches up later.
                        logs.event(
                            log,
                            logging.WARNING,
                            "could not handle event",
                            topic=item.topic,
                            ns=item.namespace,
                            id=item.container_id,
                            error=str(exc),
                        )

    # -- events --------------------------------------------------------------------------

    async def _dispatch(self, event: Event) -> None:
        payload = event.payload
        ns = event.namespace
        if isinstance(payload, TaskStart):
            self.lifecycle.task_started(ns, payload.container_id, payload.pid)
            if await self._is_managed(ns, payload.container_id):
                self.lifecycle.publish(
                    ContainerEvent(ns, payload.container_id, "started", pid=payload.pid, time=event.timestamp)
                )
        elif isinstance(payload, TaskExit):
            if payload.id == payload.container_id:  # the container's own process, not an exec
                await self._on_exit(ns, payload, event)
        elif isinstance(payload, TaskOOM):
            if await self._is_managed(ns, payload.container_id):
                self._oom.add((ns, payload.container_id))
                self.lifecycle.publish(ContainerEvent(ns, payload.container_id, "oom", time=event.timestamp))
        elif isinstance(payload, ContainerCreate):
            self._managed.pop((ns, payload.id), None)
            if await self._is_managed(ns, payload.id):
                self.lifecycle.publish(ContainerEvent(ns, payload.id, "created", time=event.timestamp))
        elif isinstance(payload, ContainerDelete):
            key = (ns, payload.id)
            if self._managed.pop(key, False):
                self.lifecycle.publish(ContainerEvent(ns, payload.id, "deleted", time=event.timestamp))
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

    async def _on_exit(self, namespace: str, exit_: TaskExit, event: Event) -> None:
        key = (namespace, exit_.container_id)
        seen = (namespace, exit_.container_id, exit_.pid)
        if seen in self._seen_exits:
            return  # the same exit again (a dead shim makes containerd repeat it)
        self._seen_exits[seen] = None
        if len(self._seen_exits) > _SEEN_EXITS:
            del self._seen_exits[next(iter(self._seen_exits))]
        if not await self._is_managed(*key):
            return
        self.lifecycle.publish(
            ContainerEvent(
                namespace,
                exit_.container_id,
                "exited",
                exit_status=exit_.exit_status,
                pid=exit_.pid,
                time=event.timestamp,
            )
        )
        if self.lifecycle.is_starting(*key):
            return  # Run (or a restart) is starting it: that exit is theirs to judge
        reason = "out of memory" if key in self._oom else f"exited with status {exit_.exit_status}"
        self._oom.discard(key)
        self._recover_soon(key, reason, delay=True, stale_pid=exit_.pid)

    # -- recovery ------------------------------------------------------------------------

    def _recover_soon(self, key: Key, reason: str, *, delay: bool, stale_pid: int = 0) -> None:
        if key in self._recovering or self._nursery is None:
            return
        self._recovering.add(key)
        self._nursery.start_soon(self._recover, key, reason, delay, stale_pid)

    async def _recover(self, key: Key, reason: str, delay: bool, stale_pid: int) -> None:
        namespace, container_id = key
        try:
            while True:
                async with self.module.locks.hold(key):
                    verdict = await self._crash_verdict(key, stale_pid)
                    if verdict is None:
                        return  # nothing to do: going away, failed, gone, or running again
                    if verdict is Decision.GIVE_UP:
                        await self._give_up(key, reason)
                        return
                if delay:
                    await trio.sleep(self.policy.delay)
                async with self.module.locks.hold(key):
                    try:
                        pid = await self._restart(key)
                    except errors.EntrypointExited as exc:
                        reason, delay, stale_pid = str(exc), True, 0
                        continue
                    except errors.ContdError as exc:
                        logs.event(
                            log,
                            logging.WARNING,
                            "restart failed",
                            ns=namespace,
                            id=container_id,
                            error=str(exc),
                        )
                        reason, delay, stale_pid = f"restart failed: {exc}", True, 0
                        continue
                if pid is not None:
                    self.lifecycle.publish(ContainerEvent(namespace, container_id, "restarted", pid=pid))
                return
        except errors.ContdError as exc:
            logs.event(
                log,
                logging.WARNING,
                "could not recover container",
                ns=namespace,
                id=container_id,
                error=str(exc),
            )
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
        if labels.going_away(record.labels) or labels.FAILED in record.labels:
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
        container = oci.read_spec(record.spec or {})
        container.name = container_id
        pid = await self.module.start_task(namespace, container)
        await self.containerd.update_labels(
            namespace, container_id, {labels.RESTARTS: str(labels.restarts(record.labels) + 1)}
        )
        if self.module.stats is not None:
            self.module.stats.start(namespace, container_id, container.stats or ())
        return pid

    async def _give_up(self, key: Key, reason: str) -> None:
        """Under the lock: remove the task, keep the container (its data and
        logs), label it failed and say so. Nothing is deleted (0-OS issue 1268)."""
        namespace, container_id = key
        ended = await self.module._kill_and_remove_task(namespace, container_id)
        status = ended.exit_status if ended is not None else 0
        new_labels = {labels.FAILED: reason[:1000], labels.EXIT_STATUS: str(status)}
        if ended is not None:
            new_labels[labels.EXITED_AT] = str(ended.exited_at.to_unix_nano())
        await self.containerd.update_labels(namespace, container_id, new_labels)
        if self.module.stats is not None:
            self.module.stats.stop(namespace, container_id)
        logs.event(log, logging.WARNING, "gave up on container", ns=namespace, id=container_id, reason=reason)
        self.lifecycle.publish(ContainerEvent(namespace, container_id, "failed", exit_status=status))

    # -- reconciliation --------------------------------------------------------------------

    async def reconcile(self, why: str) -> None:
        """Check every managed container against what it should be."""
        self.reconciliations += 1
        logs.event(log, logging.INFO, "reconciling", reason=why)
        for namespace in await self.containerd.list_namespaces():
            tasks = {t.container_id: t for t in await self.containerd.list_tasks(namespace)}
            managed = await self.containerd.list_containers(
                namespace, filters=[f'labels."{labels.MANAGED}"==true']
            )
            for record in managed:
                key = (namespace, record.id)
                self._managed[key] = True
                if self.lifecycle.is_starting(*key) or key in self._recovering:
                    continue
                if labels.going_away(record.labels):
                    self._finish_off_soon(key)
                    continue
                if labels.FAILED in record.labels:
                    continue
                task = tasks.get(record.id)
                # "created": the daemon died during a Run; start it properly.
                if task is None or task.status in ("created", "stopped", "unknown"):
                    reason = (
                        "found not running"
                        if task is None
                        else f"found exited with status {task.exit_status}"
                    )
                    self._recover_soon(key, reason, delay=False, stale_pid=task.pid if task else 0)
                elif self.module.stats is not None:
                    stats = oci.read_spec(record.spec or {}).stats or ()
                    self.module.stats.start(namespace, record.id, stats)

    def _finish_off_soon(self, key: Key) -> None:
        if key in self._recovering or self._nursery is None:
            return
        self._recovering.add(key)
        self._nursery.start_soon(self._finish_off, key)

    async def _finish_off(self, key: Key) -> None:
        try:
            await self.module.delete(*key)
        except errors.NotFound:
            pass
        except errors.ContdError as exc:
            logs.event(
                log, logging.WARNING, "could not finish off container", ns=key[0], id=key[1], error=str(exc)
            )
        finally:
            self._recovering.discard(key)
