"""Crash recovery: when a managed container's own process exited and nobody
asked for it, count the crash, restart the container after a delay, or at
the policy's limit give it up.

Giving up labels the container ``contd.failed``, removes its task and keeps
the container (its data and logs: 0-OS issue 1268 lost a user's workload
there). The going-away label is read again right before every restart, so
neither Delete nor SignalDelete ever causes one. containerd being away
makes each step wait and retry (not the container's fault, so not counted);
a restart that fails otherwise is one more crash.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import trio

from .. import errors, logs
from ..containerd.client import Containerd, Exit
from ..text import shorten
from . import labels, spec_mapping
from .deletion import KILL_BUDGET_SECONDS
from .lifecycle import ContainerEvent, Key, Lifecycle
from .operations import ContainerOps
from .restart_policy import Decision, RestartPolicy, format_history, parse_history
from .retry import persist

log = logging.getLogger("contd.supervisor")


class Recovery:
    """Args:
    containerd: the client.
    ops: the container operations (locks, starting, removing, stats).
    lifecycle: published events.
    policy: when a crashed container is restarted or given up.
    clock: wall clock (crash times are kept in labels, across daemon restarts).
    """

    def __init__(
        self,
        containerd: Containerd,
        ops: ContainerOps,
        lifecycle: Lifecycle,
        policy: RestartPolicy,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.containerd = containerd
        self.ops = ops
        self.lifecycle = lifecycle
        self.policy = policy
        self._now = clock

    async def recover(self, key: Key, reason: str, delay: bool, stale_pid: int) -> None:
        """Count the crash and restart the container, or give it up.

        containerd being away makes the current step wait and retry (it is
        not the container's fault, so it is not counted); a restart that
        fails otherwise is one more crash.
        """
        namespace, container_id = key
        locked = self.ops.locked
        while True:
            verdict = await persist("judge a crash", key, locked, key, self._crash_verdict, key, stale_pid)
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
        with self.ops.shields.shield(), trio.move_on_after(KILL_BUDGET_SECONDS) as scope:
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
