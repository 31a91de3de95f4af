"""Delete: SIGTERM with the container's grace, then SIGKILL and removal.

One deletion of a container at a time (its lock); a Delete that finds
another under way takes it over by cutting that one's SIGTERM grace, so no
Delete waits past what its own deadline allows. The removal primitives
(the task, the container, its files) are :class:`ContainerOps`'s, shared
with Run's clean-up and supervision.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from typing import TYPE_CHECKING

import trio

from .. import logs
from ..containerd.client import ContainerRecord
from ..errors import FailedPrecondition, NotFound
from ..taskgroups import wait_any
from ..zbus.server import slot_lent
from . import labels, spec_mapping
from .disk import storage_error
from .types import DEFAULT_SHUTDOWN_TIMEOUT_NS

if TYPE_CHECKING:
    from .operations import ContainerOps

log = logging.getLogger("contd.module")

#: How long a container (or exec) killed with SIGKILL may take to be gone.
KILL_GRACE_SECONDS = 10.0
#: What the end of a Delete may take, shielded: SIGKILL and the wait for it,
#: then removing the task, the container and its files. A Delete's SIGTERM
#: grace is cut so that this still fits in the time its request has left.
KILL_BUDGET_SECONDS = KILL_GRACE_SECONDS + 10.0


class Deletions:
    """Deleting containers, for the facade and reconciliation (through
    ``ContainerOps.deletions``)."""

    def __init__(self, ops: ContainerOps) -> None:
        self.ops = ops
        #: The SIGTERM graces under way, by container, and when the Deletes
        #: waiting for that container need them over (see :meth:`delete`).
        self._graces: dict[tuple[str, str], trio.CancelScope] = {}
        self._waiting_deletes: dict[tuple[str, str], list[float]] = {}

    async def delete(self, namespace: str, container_id: str) -> None:
        """SIGTERM, up to the container's shutdown timeout, SIGKILL, then
        remove its task, the container and its files, under its lock.

        The grace is cut so that the end (SIGKILL and removal, shielded from
        cancellation and bounded) fits in the time the caller has left; a
        stopping daemon cuts it short. Once marked as going away, a container
        is removed even if this is cut short: reconciliation finishes it off.

        A Delete that finds another deletion of the container under way (a
        finish-off, whose grace is the whole shutdown timeout, or a Delete
        with a longer deadline) takes it over: that one's grace is cut to
        end when this Delete's must, so this one waits for the lock no longer
        than it would have taken itself; the container gone by then is this
        Delete done.

        Raises:
            NotFound: no such container.
            FailedPrecondition: it did not die of SIGKILL in time (it stays
                marked as going away).
            StorageError: it is deleted, but the daemon's disk refused to
                remove some of its files.
        """
        key = (namespace, container_id)
        await self.ops.containerd.get_container(namespace, container_id)  # NotFound: nothing to delete
        must_end_by = trio.current_effective_deadline() - KILL_BUDGET_SECONDS
        waiting = self._waiting_deletes.setdefault(key, [])
        waiting.append(must_end_by)
        try:
            self._cut_grace(key)
            async with self.ops.locks.hold(key):
                waiting.remove(must_end_by)
                try:
                    record = await self.ops.containerd.get_container(namespace, container_id)
                except NotFound:
                    logs.event(
                        log, logging.INFO, "container deleted meanwhile", ns=namespace, id=container_id
                    )
                    return
                await self._delete_locked(namespace, container_id, record)
        finally:
            if must_end_by in waiting:
                waiting.remove(must_end_by)
            if not waiting and self._waiting_deletes.get(key) is waiting:
                del self._waiting_deletes[key]
        logs.event(log, logging.INFO, "container deleted", ns=namespace, id=container_id)

    def _cut_grace(self, key: tuple[str, str]) -> None:
        """End the SIGTERM grace under way for the container by the time the
        Deletes waiting for it need it over."""
        grace = self._graces.get(key)
        waiting = self._waiting_deletes.get(key)
        if grace is not None and waiting:
            grace.deadline = min(grace.deadline, *waiting)

    async def _delete_locked(self, namespace: str, container_id: str, record: ContainerRecord) -> None:
        await self.mark_going_away(namespace, container_id)
        self.ops.stop_stats(namespace, container_id)
        timeout_ns = spec_mapping.read_container(record.spec or {}).shutdown_timeout_ns
        wanted = (timeout_ns or DEFAULT_SHUTDOWN_TIMEOUT_NS) / 1e9
        left = trio.current_effective_deadline() - trio.current_time()
        grace = max(0.0, min(wanted, left - KILL_BUDGET_SECONDS))
        try:
            await self.terminate(namespace, container_id, grace)
        finally:
            await self.finish_delete(namespace, container_id)

    async def terminate(self, namespace: str, container_id: str, grace: float) -> None:
        """SIGTERM the task and wait up to ``grace`` for it to exit."""
        try:
            state = await self.ops.containerd.get_process(namespace, container_id)
        except NotFound:
            return  # no task
        if grace <= 0 or state.status not in ("running", "paused", "pausing"):
            return
        # Waiting before signalling, as 0-OS did: the exit cannot slip by.
        async with self.ops.containerd.watch_exit(namespace, container_id) as exit_watch:
            with contextlib.suppress(NotFound):
                await self.ops.containerd.kill(namespace, container_id, signal.SIGTERM)
            key = (namespace, container_id)
            # Only waiting: the request's worker slot serves others meanwhile
            # (lent outside the grace, whose end must not cut taking it back).
            async with slot_lent():
                with trio.move_on_after(grace) as waiting:
                    self._graces[key] = waiting
                    try:
                        self._cut_grace(key)  # a Delete may be waiting already
                        await wait_any(exit_watch.done, self.ops.stopping)
                    finally:
                        del self._graces[key]
        if not exit_watch.done.is_set():
            logs.event(
                log,
                logging.INFO,
                "daemon stopping, not waiting out the grace"
                if self.ops.stopping.is_set()
                else "container ignored SIGTERM",
                ns=namespace,
                id=container_id,
                grace=grace,
            )

    async def finish_delete(self, namespace: str, container_id: str) -> None:
        """SIGKILL, then remove the task, the container and its files:
        shielded and bounded by :data:`KILL_BUDGET_SECONDS`.

        Raises:
            FailedPrecondition: not all removed in time.
            StorageError: removed, but not all its files.
        """
        refused: list[OSError] = []
        with self.ops.shields.shield(), trio.move_on_after(KILL_BUDGET_SECONDS) as scope:
            refused = await self.ops.remove_container(namespace, container_id)
        if scope.cancelled_caught:
            raise FailedPrecondition(
                f"container {container_id} in namespace {namespace} could not be removed within "
                f"{KILL_BUDGET_SECONDS:g} seconds of SIGKILL; it will be removed once it exits"
            )
        if refused:
            # The caller is told, so that a disk gone bad is seen; the
            # container itself is gone all the same.
            raise storage_error(
                f"remove every file of container {container_id} (the container is deleted)", refused[0]
            )

    async def mark_going_away(self, namespace: str, container_id: str) -> None:
        await self.ops.containerd.update_labels(namespace, container_id, {labels.GOING_AWAY: "true"})
