"""What is done to containers: the operations the RPC facade
(:mod:`.container`) and the supervisor (:mod:`.supervisor`) share.

Run's creation and start confirmation, the un-pending that commits a Run,
every way of removing what a failure left (Delete itself: :mod:`.deletion`),
the per-container locks that serialise all of it, and the hooks of the stats
monitors. Nothing here answers a caller or decides a policy: the facade
validates and words the answers, the supervisor decides when to restart.

Every wait is bounded, and clean-up that must finish runs shielded from
cancellation; what containerd refuses while it is away the janitor
(:mod:`.retry`) finishes once it is back.
"""

from __future__ import annotations

import contextlib
import logging
import posixpath
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import trio

from .. import logs
from ..containerd import spec as oci
from ..containerd.bundles import is_stale_bundle_error, remove_stale_bundle
from ..containerd.client import Containerd, Exit, ProcessState
from ..errors import (
    AlreadyExists,
    ContainerdError,
    ContdError,
    DeadlineExceeded,
    EntrypointExited,
    FailedPrecondition,
    NotFound,
)
from ..taskgroups import wait_any
from ..text import shorten_front
from ..zbus.server import slot_lent
from . import labels
from .deletion import KILL_GRACE_SECONDS, Deletions
from .disk import prepare_files, remove_directory_if_empty, remove_files
from .exec_outputs import ExecOutputs
from .lifecycle import Lifecycle
from .locks import KeyedLocks
from .logfiles import log_files
from .logstream import last_lines
from .output import task_output_uri
from .paths import Paths
from .retry import Janitor
from .shields import Shields
from .stats import StatsMonitors
from .types import Container, Stats

log = logging.getLogger("contd.module")

T = TypeVar("T")

#: How long removing a half-made container may take, shielded from cancellation.
CLEANUP_SECONDS = 20.0
#: How long a create may outlast its request's deadline (containerd's answer
#: says for sure whether it made the container), and how long a Run whose
#: create failed looks for what containerd made all the same; the janitor
#: goes on after that.
UNCERTAIN_CREATE_SECONDS = 2.0
#: How many such creates are remembered until containerd's create event
#: shows they were made after all (periodic reconciliation finds the rest).
UNSETTLED_CREATES_KEPT = 4096
#: Lines of output quoted in an error (an entrypoint or exec that failed).
ERROR_OUTPUT_LINES = 10
#: ... and at most this many characters of them (output need have no newline).
ERROR_OUTPUT_CHARS = 4096


@dataclass(frozen=True)
class RunSettings:
    """How Run starts containers (from the daemon's flags).

    Attributes:
        logshim: the installed log shim (see :mod:`.output`).
        log_max_bytes: where container logs rotate.
        start_settle: how long a new entrypoint must stay up for Run to succeed.
        start_event_wait: how long Run waits for containerd's TaskStart before
            asking containerd for the task's state itself.
        netns_dir: where a container's network namespace (a name) is; its
            log shim reaches the log backends from there.
    """

    logshim: Path
    log_max_bytes: int = 10 * 1024 * 1024
    #: containerd's state directory, where a bundle it left without a shim
    #: is removed (see containerd.bundles); None leaves them alone.
    containerd_state: Path | None = None
    start_settle: float = 0.25
    start_event_wait: float = 2.0
    netns_dir: str = "/var/run/netns"


class ContainerOps:
    """The container operations, for the facade and the supervisor.

    Args:
        containerd: the client every call goes through.
        paths: the daemon's own files.
        settings: how tasks are started.
        lifecycle: start confirmations and published events.
        stats: the stats monitors, or None to run none.
        janitor: finishes clean-up that containerd refused mid-way (it was
            away); one that is never served runs nothing.
    """

    def __init__(
        self,
        containerd: Containerd,
        paths: Paths,
        settings: RunSettings,
        lifecycle: Lifecycle,
        stats: StatsMonitors | None = None,
        janitor: Janitor | None = None,
    ) -> None:
        self.containerd = containerd
        self.paths = paths
        self.settings = settings
        self.lifecycle = lifecycle
        self.stats = stats
        self.janitor = janitor or Janitor()
        #: Exec output files, and the exec processes this daemon runs now.
        self.exec_outputs = ExecOutputs(paths)
        #: One lock per (namespace, id): what changes a container holds it.
        self.locks = KeyedLocks()
        #: Set when the daemon starts to stop: Deletes waiting out a SIGTERM
        #: grace stop waiting and finish, so their callers get a true answer.
        self.stopping = trio.Event()
        #: The shielded scopes of its work, lifted when a stop has waited enough.
        self.shields = Shields()
        #: Delete and its parts (SIGTERM with a grace, SIGKILL and removal).
        self.deletions = Deletions(self)
        #: Containers whose create was cut short or failed: containerd may
        #: still make them (it finishes a create whose caller has left, even
        #: after answering a later Get with NotFound), so the supervisor
        #: removes one when its create event comes (oldest first, bounded).
        self._unsettled_creates: dict[tuple[str, str], None] = {}

    async def locked(self, key: tuple[str, str], call: Callable[..., Awaitable[T]], *args: object) -> T:
        """``call(*args)`` holding the container's lock."""
        async with self.locks.hold(key):
            return await call(*args)

    # -- stats hooks -------------------------------------------------------------------------

    def monitor_stats(self, namespace: str, container_id: str, backends: Sequence[Stats]) -> None:
        if self.stats is not None:
            self.stats.start(namespace, container_id, backends)

    def stop_stats(self, namespace: str, container_id: str) -> None:
        if self.stats is not None:
            self.stats.stop(namespace, container_id)

    # -- making a container ----------------------------------------------------------------------

    async def create(self, namespace: str, container_id: str, spec: dict[str, object]) -> int:
        """Create the container, marked as managed and pending; returns when
        containerd created it (what tells this container from a later one
        of the same name). The caller holds the container's lock.

        A pending container of that name found in the way is what an
        earlier Run left: one whose create containerd carried out after the
        Run gave up (its removal may not have come yet), or one of a daemon
        that died mid-Run. No Run is working on it (that Run would hold the
        lock), so it is removed and the create made again, once.

        Raises:
            AlreadyExists: a container of that name exists (not a pending one).
            ContdError: containerd failed.
        """
        try:
            return await self._create_once(namespace, container_id, spec)
        except AlreadyExists:
            if not await self.remove_pending(namespace, container_id):
                raise
        return await self._create_once(namespace, container_id, spec)

    async def _create_once(self, namespace: str, container_id: str, spec: dict[str, object]) -> int:
        """One create, as :meth:`create` describes.

        The create is not cut short by the request's deadline at once: it
        gets ``UNCERTAIN_CREATE_SECONDS`` more, so that a containerd that
        answers tells for sure whether it made the container (the Run then
        removes it before it answers). Only a create that containerd does
        not answer by then (it is frozen), or that fails other than with
        AlreadyExists, is uncertain: containerd may make it all the same,
        even after a Get answered NotFound. Its pending container is then
        looked for by the janitor, and removed when its create event comes.
        """
        new_labels = {labels.MANAGED: "true", labels.PENDING: "true"}
        key = (namespace, container_id)
        bound = trio.current_effective_deadline() + UNCERTAIN_CREATE_SECONDS
        try:
            with self.shields.shield(deadline=bound) as scope:
                record = await self.containerd.create_container(
                    namespace, container_id, spec, labels=new_labels
                )
        except AlreadyExists:
            raise AlreadyExists(f"container {container_id} already exists in namespace {namespace}") from None
        except BaseException:
            self._remember_unsettled(key)
            await self.remove_if_pending(namespace, container_id, within=UNCERTAIN_CREATE_SECONDS)
            raise
        if scope.cancelled_caught:
            self._remember_unsettled(key)
            self._remove_pending_later(key)
            await trio.lowlevel.checkpoint()  # past the request's deadline: raises Cancelled
            raise DeadlineExceeded(f"containerd did not create {container_id} in time")
        # Ours now: a create of this name cut short before can only fail.
        self._unsettled_creates.pop(key, None)
        return record.created_at_ns

    def _remember_unsettled(self, key: tuple[str, str]) -> None:
        self._unsettled_creates[key] = None
        if len(self._unsettled_creates) > UNSETTLED_CREATES_KEPT:
            del self._unsettled_creates[next(iter(self._unsettled_creates))]

    def settle_create(self, namespace: str, container_id: str) -> bool:
        """containerd made this container (its create event): whether a
        create of it was cut short before, so that it may be a pending
        container no Run will remove (the supervisor then removes it)."""
        key = (namespace, container_id)
        if key not in self._unsettled_creates:
            return False
        del self._unsettled_creates[key]
        return True

    async def confirm(self, namespace: str, container_id: str) -> None:
        """Commit a Run: the container is no longer pending (the last call
        before Run answers success)."""
        await self.containerd.update_labels(namespace, container_id, {labels.PENDING: ""})

    async def start_task(self, namespace: str, container: Container) -> int:
        """Create and start the container's task, its output going through
        the log shim; returns the pid once the start is confirmed.

        Wait is called before Start (containerd's rule), interest in the
        TaskStart event is registered before Start, and the task's state is
        asked for when the event is late. An exit before the start is
        confirmed or within the settle window fails the start, whether
        containerd's Wait answer or its TaskExit event tells it first.

        Raises:
            EntrypointExited: the process exited; the task is left for the caller.
            StorageError: the daemon's disk refused the log file.
            ContdError: containerd failed (or went away while we waited).
        """
        container_id = container.name
        log_file = self.paths.log_file(namespace, container_id)
        await trio.to_thread.run_sync(prepare_files, f"write the log of {container_id}", log_file)
        uri = task_output_uri(
            self.settings.logshim,
            log_file,
            self.settings.log_max_bytes,
            container.logs or (),
            netns=posixpath.join(self.settings.netns_dir, container.network.namespace),
        )
        with self.lifecycle.starting(namespace, container_id) as waiter:
            with self.shields.shield():
                try:
                    await self.containerd.create_task(namespace, container_id, stdout=uri, stderr=uri)
                except (AlreadyExists, ContainerdError) as exc:
                    # What containerd left of a task of this name when it died
                    # while making it: a task without its container, or a
                    # bundle without its shim. Remove it, then try again once.
                    if not isinstance(exc, AlreadyExists) and not is_stale_bundle_error(str(exc)):
                        raise
                    logs.event(log, logging.WARNING, "removing a stale task", ns=namespace, id=container_id)
                    await self.kill_and_remove_task(namespace, container_id)
                    await self.containerd.create_task(namespace, container_id, stdout=uri, stderr=uri)
            async with self.containerd.watch_exit(namespace, container_id) as exit_watch:
                with self.shields.shield():
                    pid = await self.containerd.start(namespace, container_id)
                waiter.watch(pid)
                with trio.move_on_after(self.settings.start_event_wait):
                    await wait_any(waiter.started, exit_watch.done, waiter.exited)
                if not (waiter.started.is_set() or exit_watch.done.is_set() or waiter.exited.is_set()):
                    # The event is late (or lost): ask containerd itself.
                    state = await self.containerd.get_process(namespace, container_id)
                    logs.event(
                        log,
                        logging.WARNING,
                        "no TaskStart event in time",
                        ns=namespace,
                        id=container_id,
                        status=state.status,
                    )
                if self.settings.start_settle > 0:
                    # Only waiting: the request's worker slot serves others meanwhile.
                    async with slot_lent():
                        with trio.move_on_after(self.settings.start_settle):
                            await wait_any(exit_watch.done, waiter.exited)
        # Read once the start is over: an exit recorded up to then is this
        # start's to report, any later one the supervisor's to recover.
        if exit_watch.done.is_set() or waiter.exited.is_set():
            # result() raises when the wait itself failed.
            status = exit_watch.result().exit_status if exit_watch.done.is_set() else waiter.exit_status
            raise EntrypointExited(
                f"entrypoint of {container_id} exited with status {status}"
                + await self.output_tail(namespace, container_id),
                exit_status=status,
            )
        return pid

    async def output_tail(self, namespace: str, container_id: str) -> str:
        """What to add to an error about the container's process: its last
        lines of output (after deleting its task, when the log shim writes them)."""
        # The log shim writes the last lines when the task is deleted: do that first.
        with (
            self.shields.shield(),
            trio.move_on_after(CLEANUP_SECONDS),
            contextlib.suppress(NotFound),
        ):
            await self.containerd.delete_task(namespace, container_id)
        return await _quoted_output(self.paths.log_file(namespace, container_id))

    # -- removing a container ---------------------------------------------------------------

    async def remove_half_made(
        self, namespace: str, container_id: str, created_at_ns: int, *, confirm_unanswered: bool = False
    ) -> None:
        """Remove a container Run made but could not finish; shielded,
        bounded, never raising. When containerd refuses (it is away: the
        un-pending may even have happened), the janitor removes it once
        containerd is back, so a Run answered with an error never leaves a
        running container.

        ``confirm_unanswered``: the Run's confirm went out and containerd did
        not answer it. containerd may still carry it out (a frozen one, once
        it thaws), and the container is then no longer pending: no later
        daemon would take it for half-made. So a stopping daemon does not
        lift this shield (see :mod:`.shields`); its own bound still holds.
        """
        shield: contextlib.AbstractContextManager[trio.CancelScope] = (
            trio.CancelScope(shield=True) if confirm_unanswered else self.shields.shield()
        )
        with shield, trio.move_on_after(CLEANUP_SECONDS) as scope:
            try:
                await self.remove_container(namespace, container_id)
                return
            except ContdError as exc:
                logs.event(
                    log,
                    logging.WARNING,
                    "could not remove a half-made container yet",
                    ns=namespace,
                    id=container_id,
                    error=str(exc),
                )
        if scope.cancelled_caught:
            logs.event(
                log,
                logging.WARNING,
                "removing a half-made container takes long",
                ns=namespace,
                id=container_id,
            )
        self.janitor.soon(
            "remove what a failed Run made",
            (namespace, container_id),
            self._remove_failed_run,
            namespace,
            container_id,
            created_at_ns,
        )

    async def _remove_failed_run(self, namespace: str, container_id: str, created_at_ns: int) -> None:
        """The janitor's half of :meth:`_remove_half_made`: the container
        that Run created, not one of the same name made since."""
        async with self.locks.hold((namespace, container_id)):
            try:
                record = await self.containerd.get_container(namespace, container_id)
            except NotFound:
                return
            if record.created_at_ns == created_at_ns:
                await self.remove_container(namespace, container_id)

    async def remove_if_pending(
        self, namespace: str, container_id: str, *, within: float = CLEANUP_SECONDS
    ) -> None:
        """Remove the container if it is a pending one (never somebody's
        finished container); shielded, never raising. What cannot be looked
        at ``within`` seconds (containerd away or frozen), the janitor looks
        at once containerd answers."""
        with self.shields.shield(), trio.move_on_after(within):
            try:
                record = await self.containerd.get_container(namespace, container_id)
            except NotFound:
                return
            except ContdError:
                pass
            else:
                if labels.pending(record.labels):
                    await self.remove_half_made(namespace, container_id, record.created_at_ns)
                return
        self._remove_pending_later((namespace, container_id))

    def _remove_pending_later(self, key: tuple[str, str]) -> None:
        """The janitor's: :meth:`remove_pending` under the lock, once containerd answers."""
        self.janitor.soon("look for what a failed Run made", key, self.locked, key, self.remove_pending, *key)

    async def remove_pending(self, namespace: str, container_id: str) -> bool:
        """Remove the container if it is still pending (a Run that failed or
        died before answering); the caller holds its lock, so a Run still
        working on it has finished (and unmarked it when it succeeded).
        Returns whether the name is free now (a container that is not
        pending stays).

        Raises:
            ContdError: containerd failed (the caller retries).
        """
        try:
            record = await self.containerd.get_container(namespace, container_id)
        except NotFound:
            return True
        if not labels.pending(record.labels):
            return False
        logs.event(log, logging.INFO, "removing what a failed Run left", ns=namespace, id=container_id)
        await self.remove_container(namespace, container_id)
        return True

    async def remove_container(self, namespace: str, container_id: str) -> list[OSError]:
        """Kill and remove the task, then the container's files, then the
        container: its record goes last, so a removal cut short is found
        (and finished) again. Files the disk refuses to remove (read-only,
        gone) do not keep the container: they are logged and returned.

        Raises:
            FailedPrecondition: the task did not die of SIGKILL in time.
            ContdError: containerd failed.
        """
        await self.kill_and_remove_task(namespace, container_id)
        refused = await trio.to_thread.run_sync(self.remove_files, namespace, container_id)
        for exc in refused:
            logs.event(
                log,
                logging.WARNING,
                "could not remove a file of a container",
                ns=namespace,
                id=container_id,
                path=exc.filename,
                error=exc.strerror,
            )
        with contextlib.suppress(NotFound):
            await self.containerd.delete_container(namespace, container_id)
        return refused

    async def remove_orphan_task(self, namespace: str, container_id: str) -> None:
        """Remove a task whose container record is gone.

        containerd deletes a task only through its container, so a
        placeholder container (pending, so reconciliation never starts it)
        is made for it first.
        """
        try:
            await self.containerd.get_container(namespace, container_id)
            return  # it has a container (again): not an orphan
        except NotFound:
            pass
        placeholder = oci.default_spec(namespace, container_id)
        with contextlib.suppress(AlreadyExists):
            await self.containerd.create_container(
                namespace,
                container_id,
                placeholder,
                labels={labels.MANAGED: "true", labels.PENDING: "true"},
            )
        await self.remove_container(namespace, container_id)

    async def kill_and_remove_task(self, namespace: str, container_id: str) -> Exit | None:
        """SIGKILL every process of the task, wait for it, delete it.

        A task containerd half-made (it died while creating it: the shim is
        up, runc never ran) answers NotFound to Kill and Wait, yet Delete is
        what removes its shim, so Delete is always asked.

        Raises:
            FailedPrecondition: the task did not die of SIGKILL in time.
        """
        with contextlib.suppress(NotFound):  # not running, or no task at all
            await self.containerd.kill(namespace, container_id, signal.SIGKILL, all_processes=True)
        try:
            with trio.fail_after(KILL_GRACE_SECONDS), contextlib.suppress(NotFound):
                await self.containerd.wait(namespace, container_id)
        except trio.TooSlowError:
            # Un-killable (a process in D state): say so, and leave it to be
            # finished off later rather than block this caller forever.
            raise FailedPrecondition(
                f"container {container_id} in namespace {namespace} did not exit "
                f"within {KILL_GRACE_SECONDS:g} seconds of SIGKILL"
            ) from None
        try:
            return await self.containerd.delete_task(namespace, container_id)
        except NotFound:
            pass  # no task (or a half-made one: deleting it removed its shim all the same)
        if self.settings.containerd_state is not None:
            await trio.to_thread.run_sync(
                remove_stale_bundle, self.settings.containerd_state, namespace, container_id
            )
        return None

    # -- Update -------------------------------------------------------------------------------

    async def update_resources(
        self, namespace: str, container_id: str, spec: Mapping[str, Any], memory: int, cpu: int
    ) -> None:
        """Set the container's memory and CPU limits (0 keeps one): on its
        task when it runs (runc updates its cgroup, the process stays), and
        in its stored spec, which Inspect reads and every restart starts
        from. The caller holds the container's lock.

        The task goes first (the kernel may refuse, e.g. memory below what
        the container uses), the spec second; when the spec cannot be
        stored, the task gets its old limits back, so the two never differ.

        Raises:
            FailedPrecondition: runc could not apply the limits (its words).
            ContdError: containerd failed.
        """
        try:
            state: ProcessState | None = await self.containerd.get_process(namespace, container_id)
        except NotFound:
            state = None
        live = state is not None and state.status in ("running", "paused", "pausing")
        # Not cut half-way by the caller's deadline: the task and the spec must agree.
        with self.shields.shield():
            await self._update_task_then_spec(namespace, container_id, spec, memory, cpu, live)
        logs.event(
            log,
            logging.INFO,
            "container limits updated",
            ns=namespace,
            id=container_id,
            memory=memory,
            cpu=cpu,
            live=live,
        )

    async def _update_task_then_spec(
        self, namespace: str, container_id: str, spec: Mapping[str, Any], memory: int, cpu: int, live: bool
    ) -> None:
        if live:
            try:
                await self.containerd.update_task(namespace, container_id, oci.linux_resources(memory, cpu))
            except NotFound:
                live = False  # it exited just now: the spec is all there is to change
            except ContainerdError as exc:
                raise FailedPrecondition(
                    f"container {container_id} in namespace {namespace} cannot take the new limits: {exc}"
                ) from None
            except ContdError:
                # containerd went away: runc may have applied them all the same.
                self._reapply_recorded_limits_soon(namespace, container_id)
                raise
        try:
            await self.containerd.update_spec(namespace, container_id, oci.with_resources(spec, memory, cpu))
        except BaseException:
            if live:
                before = oci.read_spec(spec)
                put_back = False
                with (
                    self.shields.shield(),
                    trio.move_on_after(CLEANUP_SECONDS),
                    contextlib.suppress(ContdError),
                ):
                    await self.containerd.update_task(
                        namespace, container_id, oci.linux_resources(before.memory, before.cpu)
                    )
                    put_back = True
                if not put_back:
                    self._reapply_recorded_limits_soon(namespace, container_id)
            raise

    def _reapply_recorded_limits_soon(self, namespace: str, container_id: str) -> None:
        """Once containerd is back, make the task's limits what its stored
        spec says (whatever Updates came since: it reads the spec then)."""
        key = (namespace, container_id)
        self.janitor.soon(
            "apply the recorded limits", key, self.locked, key, self._apply_recorded_limits, *key
        )

    async def _apply_recorded_limits(self, namespace: str, container_id: str) -> None:
        try:
            record = await self.containerd.get_container(namespace, container_id)
            recorded = oci.read_spec(record.spec or {})
            resources = oci.linux_resources(recorded.memory, recorded.cpu)
            if resources:
                await self.containerd.update_task(namespace, container_id, resources)
        except NotFound:
            return  # gone, or no task: its next one starts from the spec

    def remove_files(self, namespace: str, container_id: str) -> list[OSError]:
        """Remove the container's logs and any exec output left behind, as
        far as the disk lets; returns what it refused (blocking)."""
        base = self.paths.log_file(namespace, container_id)
        try:
            exec_outputs = self.paths.exec_outputs(namespace, container_id)
        except OSError as exc:
            return [exc, *remove_files(log_files(base))]
        refused = remove_files((*log_files(base), *exec_outputs))
        return refused + remove_directory_if_empty(self.paths.exec_dir(namespace, container_id))


async def _quoted_output(path: Path) -> str:
    text = await trio.to_thread.run_sync(last_lines, path, ERROR_OUTPUT_LINES, ERROR_OUTPUT_CHARS)
    text = shorten_front(text.strip(), ERROR_OUTPUT_CHARS)
    return f"; output: {text}" if text else ""
