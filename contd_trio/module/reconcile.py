"""Reconciliation: every managed container checked against what it should be.

containerd does not replay events, and some are lost anyway (the daemon was
down, an exit came while containerd was away), so the supervisor runs this
at start-up, after every gap in the event stream and every
``-reconcile-interval``. For each container the daemon made:

* one that should run and does not is recovered (restarted, or given up);
* one marked as going away is finished off (its Delete completed);
* one still marked pending (its Run failed, or the daemon died during it)
  is removed, never started;
* a given-up one whose task survived (the give-up was cut short) loses it;
* the others get their stats monitors (resumed after a daemon restart).

Exec processes a daemon before this one was cut off from are removed too
(:mod:`.stray_execs`).

It also removes what containerd itself leaves when it is cut off while
making a task: a task without its container, and shims serving nothing
(see :mod:`..containerd.bundles`). Every piece of work runs on its own
(:class:`.keyed_work.KeyedWork`), retried while containerd is away.
"""

from __future__ import annotations

import contextlib
import logging

import trio

from .. import errors, logs
from ..containerd.bundles import idle_shims, kill_if_idle
from ..containerd.client import Containerd
from ..taskgroups import open_nursery
from . import labels, spec_mapping
from .keyed_work import KeyedWork
from .lifecycle import Key, Lifecycle
from .operations import ContainerOps
from .recovery import Recovery
from .retry import persist
from .stray_execs import StrayExecs

log = logging.getLogger("contd.supervisor")


class Reconciler:
    """Args:
    containerd: the client.
    ops: the container operations.
    lifecycle: who is being started by a Run right now.
    work: where each container's work runs, one piece at a time.
    recovery: what restarts (or gives up) a container found not running.
    managed: the supervisor's record of which containers are managed.
    """

    def __init__(
        self,
        containerd: Containerd,
        ops: ContainerOps,
        lifecycle: Lifecycle,
        work: KeyedWork,
        recovery: Recovery,
        managed: dict[Key, bool],
    ) -> None:
        self.containerd = containerd
        self.ops = ops
        self.lifecycle = lifecycle
        self.work = work
        self.recovery = recovery
        self._managed = managed
        #: How many reconciliations finished (start-up included).
        self.count = 0
        self.stray_execs = StrayExecs(containerd, ops.exec_outputs, ops.shields)

    async def reconcile(self, why: str) -> None:
        """Check every managed container against what it should be; the
        work found is done in tasks of its own.

        Raises:
            ContdError: containerd could not list what it has.
        """
        level = logging.DEBUG if why == "periodic" else logging.INFO
        logs.event(log, level, "reconciling", reason=why)
        started = trio.current_time()
        running: list[Key] = []
        managed_count = 0
        for namespace in await self.containerd.list_namespaces():
            tasks = {t.container_id: t for t in await self.containerd.list_tasks(namespace)}
            records = await self.containerd.list_containers(namespace)
            for orphan in tasks.keys() - {record.id for record in records}:
                # A task whose container is gone: containerd died while
                # making it for a Run whose container was removed since.
                self.work.start((namespace, orphan), self._remove_orphan, (namespace, orphan))
            managed = [r for r in records if r.labels.get(labels.MANAGED) == "true"]
            managed_count += len(managed)
            for record in managed:
                key = (namespace, record.id)
                self._managed[key] = True
                if self.lifecycle.is_starting(*key) or self.work.busy(key):
                    continue
                task = tasks.get(record.id)
                if labels.going_away(record.labels):
                    self.work.start(key, self._finish_off, key)
                elif labels.pending(record.labels):
                    self.work.start(key, self.remove_pending, key)
                elif labels.FAILED in record.labels:
                    if task is not None:
                        self.work.start(key, self._finish_give_up, key)
                elif task is None or task.status in ("created", "stopped", "unknown"):
                    # "created": the daemon died while a restart started it.
                    reason = "found not running" if task is None else f"found {task.status}"
                    self.work.start(key, self.recovery.recover, key, reason, False, task.pid if task else 0)
                else:
                    running.append(key)
                    stats = spec_mapping.read_container(record.spec or {}).stats or ()
                    self.ops.monitor_stats(namespace, record.id, stats)
        async with open_nursery() as nursery:
            nursery.start_soon(self._remove_stray_execs, running)
            nursery.start_soon(self._reap_orphan_shims)
        self.count += 1
        seconds = round(trio.current_time() - started, 3)
        logs.event(log, level, "reconciled", reason=why, containers=managed_count, seconds=seconds)

    async def _remove_stray_execs(self, running: list[Key]) -> None:
        """The stray exec pass; its failure is logged and left to the next
        reconciliation, as the rest of this one need not wait for it."""
        try:
            await self.stray_execs.remove(running)
        except errors.ContdError as exc:
            logs.event(log, logging.WARNING, "could not look for stray exec processes", error=str(exc))

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

    async def _finish_off(self, key: Key) -> None:
        """Complete the Delete of a container marked as going away."""
        with contextlib.suppress(errors.NotFound):
            await persist("finish off a container", key, self.ops.deletions.delete, *key)

    async def remove_pending(self, key: Key) -> None:
        """Remove a container whose Run failed or died before answering
        success. Under the lock, so a Run still working on it finishes first
        (and unmarks it when it succeeds)."""
        await persist("remove a pending container", key, self.ops.locked, key, self.ops.remove_pending, *key)

    async def _remove_orphan(self, key: Key) -> None:
        logs.event(log, logging.WARNING, "removing a task that has no container", ns=key[0], id=key[1])
        remove = self.ops.remove_orphan_task
        await persist("remove an orphan task", key, self.ops.locked, key, remove, *key)

    async def _finish_give_up(self, key: Key) -> None:
        """A given-up container whose task survived (the give-up was cut
        short): remove the task, as giving up does."""
        remove = self.ops.kill_and_remove_task
        await persist("remove a given-up task", key, self.ops.locked, key, remove, *key)
