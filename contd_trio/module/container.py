"""The container module: Run, Inspect, Delete and the rest of 0-OS's surface.

The RPC facade of ``container@0.0.1``: it validates what callers send,
words what they are answered, and leaves the work to the container
operations (:mod:`.operations`, shared with the supervisor) and the exec
runner (:mod:`.exec_runner`). Nothing is kept here between calls: every
answer is read back from containerd, and what a spec cannot say is kept as
container labels and spec annotations.
"""

from __future__ import annotations

import logging
import shlex
import signal
from dataclasses import replace
from pathlib import Path

import msgpack
import trio

from .. import logs
from ..containerd import spec as oci
from ..containerd.client import ContainerRecord, ProcessState
from ..errors import ExecFailed, FailedPrecondition, InvalidArgument, NotFound
from ..text import format_duration, quote, shorten, shorten_front
from ..zbus.codec import GO_ZERO_TIME
from . import labels, spec_mapping
from .exec_runner import OUTPUT_LIMIT, ExecResult, ExecRunner
from .logstream import CHUNK_LINES, MAX_CHUNK_LINES, Chunk, CursorError, last_lines, read_after, read_tail
from .operations import ERROR_OUTPUT_CHARS, ERROR_OUTPUT_LINES, ContainerOps
from .stats import CGROUP_ROOT, read_cgroup
from .types import Container, ContainerStats, ExecOutput, LogChunk, LogLine, TaskState, go_time
from .untrusted import check_args, check_text
from .validate import HostView, check_cpu, check_memory, prepare_run, validate_identifier

log = logging.getLogger("contd.module")

#: The largest OCI spec Run sends (containerd's own limit on a message is 16 MiB).
MAX_SPEC_BYTES = 1024 * 1024
#: Lines of output Logs gives back (0-OS: 100), and the most bytes of them
#: (a line is whatever came before a newline, so it may be any size).
LOG_LINES = 100
LOG_BYTES = 48 * 1024
#: The latest time a log line can carry (RFC 3339 has four digits of year).
LAST_LOG_TIME_NS = 253402300799_999999999
#: How much of an exec's output an error about it looks at.
EXEC_ERROR_OUTPUT_BYTES = 16 * 1024


class ContainerModule:
    """The ``container@0.0.1`` object.

    Args:
        ops: the container operations (containerd, files, locks, stats).
        host: what validation may look at (rootfs, netns, mount sources).
        execs: runs exec processes.
        cgroup_root: where the containers' cgroups are (Stats reads them).
    """

    def __init__(
        self, ops: ContainerOps, host: HostView, execs: ExecRunner, cgroup_root: Path = CGROUP_ROOT
    ) -> None:
        self.ops = ops
        self.host = host
        self.execs = execs
        self.cgroup_root = cgroup_root

    # -- Run -------------------------------------------------------------------------------

    async def run(self, namespace: str, container: Container) -> str:
        """Create and start a container; returns its id (its name) once
        containerd reported it started and it stayed up for the settle window.

        Atomic: the container carries the ``contd.pending`` label from its
        creation until right before the success answer. Whatever goes wrong
        before that (a failure, a cancellation, containerd or the daemon
        dying) removes it, here or, failing that, in reconciliation.

        Raises:
            InvalidArgument: the request is wrong (nothing was created).
            AlreadyExists: a container of that name exists in the namespace.
            EntrypointExited: the entrypoint exited at once (the container is removed).
            ContdError: containerd failed; whatever was made is removed first.
        """
        plan = await trio.to_thread.run_sync(prepare_run, namespace, container, self.host)
        container_id = plan.container.name
        ops = self.ops
        async with ops.locks.hold((namespace, container_id)):
            # No Namespaces.Create first: containerd makes the namespace with
            # the container's create, one round trip fewer per Run.
            spec = oci.build_spec(spec_mapping.spec_request(plan), self.host.facts)
            _check_spec_size(spec)
            created_at_ns = await ops.create(namespace, container_id, spec)
            confirm_sent = confirmed = False
            try:
                await ops.start_task(namespace, plan.container)
                confirm_sent = True
                await ops.confirm(namespace, container_id)
                confirmed = True
            finally:
                if not confirmed:
                    await ops.remove_half_made(
                        namespace, container_id, created_at_ns, confirm_unanswered=confirm_sent
                    )
            ops.monitor_stats(namespace, container_id, plan.container.stats or ())
        return container_id

    # -- Inspect, List, ListNS ------------------------------------------------------------------

    async def inspect(self, namespace: str, container_id: str) -> Container:
        """Everything about a container, read back from containerd.

        Raises:
            NotFound: no such container.
        """
        record = await self._get(namespace, container_id)
        container = spec_mapping.read_container(record.spec or {})
        container = replace(container, name=record.id, created_at=go_time(record.created_at_ns))
        try:
            state: ProcessState | None = await self.ops.containerd.get_process(namespace, container_id)
        except NotFound:
            state = None
        task = TaskState(restarts=labels.restarts(record.labels))
        if state is None:
            # No task: never started, given up, or being restarted. How the
            # last one ended is kept in labels when supervision removed it.
            task.status = "stopped"
            task.exit_status = labels.exit_status(record.labels)
            exited_ns = labels.exited_at_ns(record.labels)
            if exited_ns is not None:
                task.exited_at = go_time(exited_ns)
        else:
            task.status = "paused" if state.status == "pausing" else state.status
            task.pid = state.pid
            task.exit_status = state.exit_status
            task.exited_at = go_time(state.exited_at_ns)
        return replace(container, task=task)

    async def list_containers(self, namespace: str) -> list[str]:
        """The ids of the containers of a namespace."""
        if not namespace:
            raise InvalidArgument("namespace is required (ListNS lists the namespaces)")
        validate_identifier("namespace", namespace)
        return sorted(await self.ops.containerd.container_ids(namespace))

    async def list_ns(self) -> list[str]:
        return await self.ops.containerd.list_namespaces()

    async def _get(self, namespace: str, container_id: str) -> ContainerRecord:
        validate_identifier("namespace", namespace)
        validate_identifier("container id", container_id)
        try:
            return await self.ops.containerd.get_container(namespace, container_id)
        except NotFound:
            raise NotFound(f"container {container_id} not found in namespace {namespace}") from None

    # -- Delete, SignalDelete --------------------------------------------------------------------

    async def delete(self, namespace: str, container_id: str) -> None:
        """SIGTERM, up to the container's shutdown timeout (but never so long
        that the rest no longer fits in the request's deadline), SIGKILL, then
        remove its task, the container and its files.

        Raises:
            NotFound: no such container.
            FailedPrecondition: it did not die of SIGKILL in time (it stays
                marked as going away, and is removed once it dies).
        """
        validate_identifier("namespace", namespace)
        validate_identifier("container id", container_id)
        try:
            await self.ops.deletions.delete(namespace, container_id)
        except NotFound:
            raise NotFound(f"container {container_id} not found in namespace {namespace}") from None

    async def signal_delete(self, namespace: str, container_id: str) -> None:
        """Mark the container as going away (nothing will restart it), send
        SIGTERM and return. An unknown container is not an error."""
        ops = self.ops
        async with ops.locks.hold((namespace, container_id)):
            try:
                await self._get(namespace, container_id)
                await ops.deletions.mark_going_away(namespace, container_id)
                await ops.containerd.kill(namespace, container_id, signal.SIGTERM)
            except NotFound:
                return
        logs.event(log, logging.INFO, "container signalled to go away", ns=namespace, id=container_id)

    # -- Exec ----------------------------------------------------------------------------------------

    async def exec_process(self, namespace: str, container_id: str, timeout_ns: int, *args: str) -> None:
        """Run a process in a running container and wait for it. The process
        and its output are always removed afterwards.

        Raises:
            InvalidArgument: no command, an argument that is not UTF-8, or a
                timeout that is not positive.
            NotFound: no such container.
            FailedPrecondition: it has no running task.
            ExecFailed: the process could not start (runc's reason; exit
                status 127 for a missing binary, 126 otherwise), exited
                non-zero, or ran past the timeout (it is killed then); the
                message quotes its last output.
        """
        command = shorten(shlex.join(args))
        result = await self._exec(namespace, container_id, timeout_ns, args, EXEC_ERROR_OUTPUT_BYTES)
        if result.exit_status is None:
            raise ExecFailed(
                f"exec {command} in {container_id}: timed out after {format_duration(timeout_ns / 1e9)}"
                + _quoted(result),
                exit_status=-1,
            )
        if result.exit_status != 0:
            raise ExecFailed(
                f"exec {command} in {container_id}: non-zero exit code: {result.exit_status}"
                + _quoted(result),
                exit_status=result.exit_status,
            )

    async def exec_output(self, namespace: str, container_id: str, timeout_ns: int, *args: str) -> ExecOutput:
        """Run a process in a running container, wait for it, and give back
        its exit code and output (the last 1 MiB of each of stdout and
        stderr). Whatever the process does is an answer, not an error: a
        non-zero exit, a timeout (``exit_code`` -1, ``timed_out``; it is
        killed), a command that cannot start (127 for a missing binary, 126
        otherwise, runc's reason as ``stderr``), as a shell would report it.

        Raises:
            InvalidArgument: no command, an argument that is not UTF-8, or a
                timeout that is not positive.
            NotFound: no such container.
            FailedPrecondition: it has no running task.
        """
        try:
            result = await self._exec(namespace, container_id, timeout_ns, args, OUTPUT_LIMIT)
        except ExecFailed as exc:  # it could not start
            return ExecOutput(exit_code=exc.exit_status, stderr=f"{exc}\n".encode())
        return ExecOutput(
            exit_code=-1 if result.exit_status is None else result.exit_status,
            timed_out=result.exit_status is None,
            stdout=result.stdout,
            stderr=result.stderr,
            stdout_truncated=result.stdout_truncated,
            stderr_truncated=result.stderr_truncated,
        )

    async def _exec(
        self, namespace: str, container_id: str, timeout_ns: int, args: tuple[str, ...], output_limit: int
    ) -> ExecResult:
        if not args:
            raise InvalidArgument("exec needs a command")
        check_args("args", args)
        if timeout_ns <= 0:
            raise InvalidArgument(f"exec timeout must be positive, not {format_duration(timeout_ns / 1e9)}")
        record = await self._get(namespace, container_id)
        # containerd's own answer for a stopped task names neither the container nor the state.
        try:
            state: ProcessState | None = await self.ops.containerd.get_process(namespace, container_id)
        except NotFound:
            state = None
        if state is None or state.status != "running":
            raise FailedPrecondition(f"container {container_id} in namespace {namespace} is not running")
        process = oci.process_spec(list(args), [], "", dict(record.spec or {}))
        return await self.execs.run(
            namespace,
            container_id,
            process,
            timeout_ns / 1e9,
            command=shorten(shlex.join(args)),
            output_limit=output_limit,
        )

    # -- Logs ----------------------------------------------------------------------------------------

    async def logs(self, namespace: str, container_id: str) -> str:
        """The last 100 lines of the container's output.

        Raises:
            NotFound: no such container.
        """
        await self._get(namespace, container_id)
        path = self.ops.paths.log_file(namespace, container_id)
        return await trio.to_thread.run_sync(last_lines, path, LOG_LINES, LOG_BYTES)

    async def logs_from(self, namespace: str, container_id: str, cursor: str, max_lines: int) -> LogChunk:
        """The lines of the container's output after ``cursor`` (one a
        LogChunk gave; "" starts with the oldest line kept), at most
        ``max_lines`` (0: 1000; at most 10,000) and 1 MiB of them.

        Raises:
            InvalidArgument: a cursor no chunk gave (or past the end of the
                output), or a negative ``max_lines``.
            NotFound: no such container.
        """
        check_text("cursor", cursor)
        if max_lines < 0:
            raise InvalidArgument(f"max {max_lines} is negative (0 means {CHUNK_LINES} lines)")
        await self._get(namespace, container_id)
        path = self.ops.paths.log_file(namespace, container_id)
        limit = min(max_lines or CHUNK_LINES, MAX_CHUNK_LINES)
        try:
            chunk = await trio.to_thread.run_sync(read_after, path, cursor, limit)
        except CursorError as exc:
            raise InvalidArgument(f"cursor {quote(cursor)}: {exc}") from None
        return _log_chunk(chunk)

    async def logs_tail(
        self, namespace: str, container_id: str, lines: int, since: msgpack.Timestamp
    ) -> LogChunk:
        """The end of the container's output: its last ``lines`` lines (< 0:
        every line kept; 0: none), or the lines read at or after ``since``
        (the zero time: any), whichever are fewer; as one chunk (1000 lines,
        1 MiB: ``More`` says when LogsFrom must give the rest), with the
        cursor to follow from.

        Raises:
            NotFound: no such container.
        """
        await self._get(namespace, container_id)
        path = self.ops.paths.log_file(namespace, container_id)
        # Before 1970 is any line; past the year 9999 none (the log's times stop there).
        since_ns = 0 if since == GO_ZERO_TIME else min(max(1, since.to_unix_nano()), LAST_LOG_TIME_NS)
        chunk = await trio.to_thread.run_sync(read_tail, path, lines, since_ns)
        return _log_chunk(chunk)

    # -- Update ----------------------------------------------------------------------------------------

    async def update(self, namespace: str, container_id: str, cpu: int, memory: int) -> None:
        """Change the container's CPU and/or memory limit (0 leaves one as
        it is) without restarting it, and record them: Inspect shows them,
        a crash restart keeps them. A container without a task (stopped, or
        between a crash and its restart) gets them at its next start.

        Raises:
            InvalidArgument: nothing to change, or a value Run would refuse
                (cpu more than the node's CPUs, memory below 6 MiB...).
            NotFound: no such container.
            FailedPrecondition: it is going away or was never started, or
                runc could not apply the limits (memory below its usage).
        """
        validate_identifier("namespace", namespace)
        validate_identifier("container id", container_id)
        if cpu == 0 and memory == 0:
            raise InvalidArgument("update needs a new cpu or memory (0 leaves either as it is)")
        check_cpu(cpu, self.host.facts)
        check_memory(memory)
        async with self.ops.locks.hold((namespace, container_id)):
            record = await self._get(namespace, container_id)
            if labels.going_away(record.labels) or labels.pending(record.labels):
                raise FailedPrecondition(
                    f"container {container_id} in namespace {namespace} is "
                    + (
                        "going away"
                        if labels.going_away(record.labels)
                        else "not made yet (its Run did not finish)"
                    )
                )
            await self.ops.update_resources(namespace, container_id, record.spec or {}, memory, cpu)

    # -- Stats -----------------------------------------------------------------------------------------

    async def stats(self, namespace: str, container_id: str) -> ContainerStats:
        """The container's metrics now, read from its cgroup (v1 or v2).

        Raises:
            NotFound: no such container.
            FailedPrecondition: it has no task now (stopped, given up, or
                between a crash and its restart).
        """
        await self._get(namespace, container_id)
        not_running = FailedPrecondition(f"container {container_id} in namespace {namespace} is not running")
        try:
            state = await self.ops.containerd.get_process(namespace, container_id)
        except NotFound:
            raise not_running from None
        # A stopped task keeps its cgroup until it is deleted: its figures would say nothing.
        if state.status not in ("running", "paused", "pausing"):
            raise not_running
        metrics = await trio.to_thread.run_sync(read_cgroup, namespace, container_id, self.cgroup_root)
        if metrics is None:
            raise not_running
        return ContainerStats(
            time=go_time(metrics.time_ns),
            memory_usage=metrics.memory_usage,
            memory_limit=metrics.memory_limit,
            memory_cache=metrics.memory_cache,
            cpu_usage=metrics.cpu_usage_ns,
            pids=metrics.pids,
        )


def _log_chunk(chunk: Chunk) -> LogChunk:
    return LogChunk(
        lines=[
            LogLine(
                text=record.text.decode("utf-8", "surrogateescape"),
                time=GO_ZERO_TIME if record.time_ns is None else go_time(record.time_ns),
                stream=record.stream,
                partial=record.partial,
            )
            for record in chunk.records
        ],
        cursor=str(chunk.cursor),
        more=chunk.more,
        lost=chunk.lost,
        reset=chunk.reset,
    )


def _quoted(result: ExecResult) -> str:
    """The last lines an exec wrote (to stderr, or else stdout), for an error."""
    output = result.stderr if result.stderr.strip() else result.stdout
    lines = output.decode("utf-8", "replace").splitlines()[-ERROR_OUTPUT_LINES:]
    text = shorten_front("\n".join(lines).strip(), ERROR_OUTPUT_CHARS)
    return f"; output: {text}" if text else ""


def _check_spec_size(spec: dict[str, object]) -> None:
    size = len(oci.spec_json(spec))
    if size > MAX_SPEC_BYTES:
        raise InvalidArgument(
            f"the container's spec would be {size} bytes, more than {MAX_SPEC_BYTES} "
            "(env, mounts and entrypoint together are too large)"
        )
