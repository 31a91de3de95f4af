"""Exec processes: run one in a container's task, wait for it, and always
remove it and its output afterwards.

Go's ``task.Exec`` with ``WithProcessKill`` on timeout, done so that
nothing is left behind: the process is registered, started and waited for
inside the block whose end removes it (killed first when it still runs),
shielded and bounded; what containerd refuses meanwhile (it is away) the
janitor removes once it is back. Output goes through the daemon's log shim
(``binary://``), not containerd's ``file://``: stdout and stderr are kept
apart and bounded on disk however much a process writes, and are read only
once the process is deleted, when the runc shim has finished copying them.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from .. import logs
from ..containerd.client import Containerd
from ..errors import ContainerdError, ContdError, ExecFailed, FailedPrecondition, NotFound
from .deletion import KILL_GRACE_SECONDS
from .exec_outputs import ExecOutputs
from .logfiles import tail_bytes
from .operations import CLEANUP_SECONDS
from .output import exec_output_uri
from .retry import Janitor
from .shields import Shields

log = logging.getLogger("contd.exec")

#: The most of each of stdout and stderr an exec gives back (more is cut
#: from the front, and the result says so).
OUTPUT_LIMIT = 1024 * 1024
#: Exit codes of an exec that could not start, as docker and a shell give them.
EXEC_NOT_FOUND = 127
EXEC_CANNOT_RUN = 126
#: Exec processes one container runs at once; more wait their turn. A runc
#: shim given ~50 at once stalls them all until containerd's calls time out
#: ("context deadline exceeded"), so a caller must not be able to ask for that.
EXECS_PER_CONTAINER = 16


@dataclass(frozen=True)
class ExecResult:
    """How an exec process ended, and what it wrote.

    Attributes:
        exit_status: its exit status; None when it ran past its timeout
            (it was killed).
        stdout, stderr: the last bytes it wrote to each, at most the limit.
        stdout_truncated, stderr_truncated: more was written than kept.
    """

    exit_status: int | None
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool = False
    stderr_truncated: bool = False


class ExecRunner:
    def __init__(
        self, containerd: Containerd, outputs: ExecOutputs, logshim: Path, janitor: Janitor, shields: Shields
    ) -> None:
        self.containerd = containerd
        self.outputs = outputs
        self.logshim = logshim
        self.janitor = janitor
        self.shields = shields
        self._slots: dict[tuple[str, str], tuple[trio.Semaphore, int]] = {}

    async def run(
        self,
        namespace: str,
        container_id: str,
        process: Mapping[str, Any],
        timeout: float,
        *,
        command: str,
        output_limit: int = OUTPUT_LIMIT,
    ) -> ExecResult:
        """Run ``process`` (an OCI Process) in the container's task for up
        to ``timeout`` seconds.

        Args:
            command: how errors name it (already shortened).
        Raises:
            FailedPrecondition: the container has no running task.
            ExecFailed: it could not start (runc's reason; exit status 127
                for a missing binary, 126 otherwise).
            StorageError: the daemon's disk refused its output files.
            ContdError: containerd failed.
        """
        async with (
            self._slot((namespace, container_id)),
            self.outputs.reserve(namespace, container_id) as files,
        ):
            uri = exec_output_uri(self.logshim, files.stdout, files.stderr, output_limit)
            try:
                exit_status = await self._start_and_wait(
                    namespace, container_id, files.exec_id, process, uri, timeout, command
                )
            finally:
                await self._remove(namespace, container_id, files.exec_id)
            stdout, stdout_cut = await trio.to_thread.run_sync(tail_bytes, files.stdout, output_limit)
            stderr, stderr_cut = await trio.to_thread.run_sync(tail_bytes, files.stderr, output_limit)
            return ExecResult(exit_status, stdout, stderr, stdout_cut, stderr_cut)

    @contextlib.asynccontextmanager
    async def _slot(self, key: tuple[str, str]) -> AsyncIterator[None]:
        """One of the container's exec slots, for the whole exec."""
        semaphore, users = self._slots.get(key, (trio.Semaphore(EXECS_PER_CONTAINER), 0))
        self._slots[key] = (semaphore, users + 1)
        try:
            async with semaphore:
                yield
        finally:
            semaphore, users = self._slots[key]
            if users == 1:
                del self._slots[key]
            else:
                self._slots[key] = (semaphore, users - 1)

    async def _start_and_wait(
        self,
        namespace: str,
        container_id: str,
        exec_id: str,
        process: Mapping[str, Any],
        uri: str,
        timeout: float,
        command: str,
    ) -> int | None:
        try:
            await self.containerd.exec_process(
                namespace, container_id, exec_id, process, stdout=uri, stderr=uri
            )
        except (NotFound, FailedPrecondition):
            raise FailedPrecondition(
                f"container {container_id} in namespace {namespace} is not running"
            ) from None
        async with self.containerd.watch_exit(namespace, container_id, exec_id) as exit_watch:
            try:
                await self.containerd.start(namespace, container_id, exec_id)
            except ContainerdError as exc:
                # runc could not run it: say why, as a failed exec (not a containerd fault).
                raise ExecFailed(
                    f"exec {command} in {container_id}: could not start: {exc}",
                    exit_status=_start_status(str(exc)),
                ) from exc
            with trio.move_on_after(timeout):
                await exit_watch.done.wait()
        return exit_watch.result().exit_status if exit_watch.done.is_set() else None

    async def _remove(self, namespace: str, container_id: str, exec_id: str) -> None:
        """Kill the exec process if it runs, then delete it; shielded,
        bounded, never raising. What containerd refuses now (it is away) the
        janitor does once it is back."""
        key = (namespace, container_id)
        with self.shields.shield(), trio.move_on_after(CLEANUP_SECONDS) as scope:
            try:
                await self._kill_and_remove(namespace, container_id, exec_id)
                return
            except ContdError as exc:
                logs.event(
                    log,
                    logging.WARNING,
                    "could not remove an exec process yet",
                    ns=namespace,
                    id=container_id,
                    exec_id=exec_id,
                    error=str(exc),
                )
        if scope.cancelled_caught:
            logs.event(
                log, logging.WARNING, "removing an exec process takes long", ns=namespace, id=container_id
            )
        self.janitor.soon(
            "remove an exec process", key, self._kill_and_remove, namespace, container_id, exec_id
        )

    async def _kill_and_remove(self, namespace: str, container_id: str, exec_id: str) -> None:
        await kill_and_remove_exec(self.containerd, namespace, container_id, exec_id)


async def kill_and_remove_exec(
    containerd: Containerd, namespace: str, container_id: str, exec_id: str
) -> None:
    """SIGKILL an exec process if it runs, wait for it (bounded), delete it.

    Raises:
        ContdError: containerd failed.
    """
    try:
        state = await containerd.get_process(namespace, container_id, exec_id)
    except NotFound:
        return
    if state.status in ("running", "paused", "pausing"):
        with contextlib.suppress(NotFound, FailedPrecondition):
            await containerd.kill(namespace, container_id, signal.SIGKILL, exec_id)
        with contextlib.suppress(NotFound), trio.move_on_after(KILL_GRACE_SECONDS):
            await containerd.wait(namespace, container_id, exec_id)
    with contextlib.suppress(NotFound):
        await containerd.delete_process(namespace, container_id, exec_id)


def _start_status(reason: str) -> int:
    """The exit status docker gives an exec that could not start."""
    missing = ("executable file not found", "no such file or directory")
    return EXEC_NOT_FOUND if any(m in reason.lower() for m in missing) else EXEC_CANNOT_RUN
