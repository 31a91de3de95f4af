"""containerd's services as Trio methods taking and giving plain values.

A thin facade over :mod:`.channel`, one method per RPC we use, converting
protobuf messages to small frozen dataclasses so nothing above this module
handles protobuf. Errors are already the daemon's (:mod:`contd_trio.errors`).

Every call is bounded: by its ``timeout`` (default :data:`CALL_TIMEOUT`) and
by the caller's Trio deadline, whichever is nearer. ``wait`` alone waits as
long as the caller allows.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio
from google.protobuf import any_pb2, empty_pb2, field_mask_pb2
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass

from .. import errors, logs
from .._proto.containerd.runc.options import oci_pb2 as runc_options_pb2
from .._proto.containerd.services.containers.v1 import containers_pb2
from .._proto.containerd.services.events.v1 import events_pb2
from .._proto.containerd.services.namespaces.v1 import namespace_pb2
from .._proto.containerd.services.tasks.v1 import tasks_pb2
from .._proto.containerd.services.version.v1 import version_pb2
from .._proto.containerd.types.task import task_pb2
from ..backoff import Backoff
from ..taskgroups import open_nursery
from . import spec as oci
from .channel import ContainerdChannel, ReplyStream, Rpc
from .events import Event, Gap, decode_envelope, nanoseconds_from_proto

log = logging.getLogger("contd.containerd")

#: The default bound of one call into containerd, in seconds.
CALL_TIMEOUT = 30.0
RUNTIME = "io.containerd.runc.v2"


def _rpc(module: Any, service: str, method: str) -> Rpc[Any, Any]:
    descriptor = module.DESCRIPTOR.services_by_name[service].methods_by_name[method]
    return Rpc(
        f"/{descriptor.containing_service.full_name}/{method}",
        GetMessageClass(descriptor.input_type),
        GetMessageClass(descriptor.output_type),
    )


VERSION = _rpc(version_pb2, "Version", "Version")
NAMESPACES_LIST = _rpc(namespace_pb2, "Namespaces", "List")
NAMESPACES_CREATE = _rpc(namespace_pb2, "Namespaces", "Create")
CONTAINERS_CREATE = _rpc(containers_pb2, "Containers", "Create")
CONTAINERS_GET = _rpc(containers_pb2, "Containers", "Get")
CONTAINERS_LIST = _rpc(containers_pb2, "Containers", "List")
CONTAINERS_UPDATE = _rpc(containers_pb2, "Containers", "Update")
CONTAINERS_DELETE = _rpc(containers_pb2, "Containers", "Delete")
TASKS_CREATE = _rpc(tasks_pb2, "Tasks", "Create")
TASKS_START = _rpc(tasks_pb2, "Tasks", "Start")
TASKS_GET = _rpc(tasks_pb2, "Tasks", "Get")
TASKS_LIST = _rpc(tasks_pb2, "Tasks", "List")
TASKS_KILL = _rpc(tasks_pb2, "Tasks", "Kill")
TASKS_DELETE = _rpc(tasks_pb2, "Tasks", "Delete")
TASKS_DELETE_PROCESS = _rpc(tasks_pb2, "Tasks", "DeleteProcess")
TASKS_EXEC = _rpc(tasks_pb2, "Tasks", "Exec")
TASKS_WAIT = _rpc(tasks_pb2, "Tasks", "Wait")
TASKS_PIDS = _rpc(tasks_pb2, "Tasks", "ListPids")
TASKS_UPDATE = _rpc(tasks_pb2, "Tasks", "Update")
EVENTS_SUBSCRIBE = _rpc(events_pb2, "Events", "Subscribe")
EVENTS_PUBLISH = _rpc(events_pb2, "Events", "Publish")

#: A new subscription publishes a probe to itself, on this topic and in this
#: namespace, to learn when containerd delivers to it (see EventWatch).
PROBE_TOPIC = "/contd/probe"
PROBE_NAMESPACE = "contd"
PROBE_TYPE_URL = "contd.probe"
#: How long a new subscription waits for its probe before it is taken as live.
PROBE_WAIT = 5.0

_STATUS_NAMES = {
    task_pb2.UNKNOWN: "unknown",
    task_pb2.CREATED: "created",
    task_pb2.RUNNING: "running",
    task_pb2.STOPPED: "stopped",
    task_pb2.PAUSED: "paused",
    task_pb2.PAUSING: "pausing",
}


@dataclass(frozen=True)
class ContainerRecord:
    """A container as containerd stores it."""

    id: str
    labels: Mapping[str, str]
    spec: Mapping[str, Any] | None  # the OCI spec, decoded from its JSON
    runtime: str
    created_at_ns: int  # nanoseconds since the Unix epoch
    updated_at_ns: int


@dataclass(frozen=True)
class ProcessState:
    """A task (``exec_id == ""``) or an exec process."""

    container_id: str
    exec_id: str
    pid: int
    status: str  # unknown, created, running, stopped, paused, pausing
    exit_status: int
    exited_at_ns: int  # nanoseconds since the Unix epoch; Go's zero time when it runs


@dataclass(frozen=True)
class TaskProcess:
    """A live process of a task, as ListPids gives it."""

    pid: int
    #: The exec process it is the main process of, as the runtime says (the
    #: runc shim does); empty for the task's init and every other process.
    exec_id: str


@dataclass(frozen=True)
class Exit:
    pid: int
    exit_status: int
    exited_at_ns: int


class ExitWatch:
    """A pending ``Tasks.Wait``, as Go's ``task.Wait()`` channel: made
    before a process is started or signalled, read afterwards.

    ``done`` is set once the process exited (``exit``) or the wait itself
    failed (``error``: containerd went away, say). Nothing ever raises out of
    the background wait; :meth:`result` raises its error for the reader.
    """

    def __init__(self) -> None:
        self.done = trio.Event()
        self.exit: Exit | None = None
        self.error: errors.ContdError | None = None

    @property
    def exited(self) -> bool:
        return self.exit is not None

    def result(self) -> Exit:
        """The exit, once ``done``.

        Raises:
            ContdError: the wait failed.
        """
        if self.error is not None:
            raise self.error
        assert self.exit is not None, "read an ExitWatch before it is done"
        return self.exit


def _container_record(message: containers_pb2.Container) -> ContainerRecord:
    spec = None
    if message.HasField("spec") and message.spec.value:
        try:
            spec = json.loads(message.spec.value)
        except ValueError:
            spec = None  # not JSON: not a container made by an OCI client
    return ContainerRecord(
        id=message.id,
        labels=dict(message.labels),
        spec=spec,
        runtime=message.runtime.name,
        created_at_ns=nanoseconds_from_proto(message.created_at),
        updated_at_ns=nanoseconds_from_proto(message.updated_at),
    )


def _process_state(message: task_pb2.Process) -> ProcessState:
    # Tasks.List leaves container_id empty (and puts the container's id in id).
    container_id = message.container_id or message.id
    return ProcessState(
        container_id=container_id,
        exec_id=message.id if message.id != container_id else "",
        pid=message.pid,
        status=_STATUS_NAMES.get(message.status, "unknown"),
        exit_status=message.exit_status,
        exited_at_ns=nanoseconds_from_proto(message.exited_at),
    )


def _json_any(type_url: str, value: Mapping[str, Any]) -> any_pb2.Any:
    # containerd 1.x wants the bare type URL, not Any.Pack()'s type.googleapis.com/ form.
    return any_pb2.Any(type_url=type_url, value=oci.spec_json(dict(value)))


class Containerd:
    """containerd's API, the part the daemon uses."""

    def __init__(self, channel: ContainerdChannel) -> None:
        self.channel = channel

    async def _call(
        self, rpc: Rpc[Any, Any], request: Message, namespace: str | None, timeout: float | None
    ) -> Any:
        return await self.channel.call(rpc, request, namespace=namespace, timeout=timeout)

    # -- version and namespaces ---------------------------------------------------------

    async def version(self, *, timeout: float | None = CALL_TIMEOUT) -> tuple[str, str]:
        """containerd's version and revision."""
        reply = await self._call(VERSION, empty_pb2.Empty(), None, timeout)
        return reply.version, reply.revision

    async def list_namespaces(self, *, timeout: float | None = CALL_TIMEOUT) -> list[str]:
        reply = await self._call(NAMESPACES_LIST, namespace_pb2.ListNamespacesRequest(), None, timeout)
        return sorted(ns.name for ns in reply.namespaces)

    async def ensure_namespace(self, name: str, *, timeout: float | None = CALL_TIMEOUT) -> None:
        """Create a namespace unless it exists (a concurrent creation is fine)."""
        request = namespace_pb2.CreateNamespaceRequest(namespace=namespace_pb2.Namespace(name=name))
        # The header is needed even here: containerd publishes an event.
        with contextlib.suppress(errors.AlreadyExists):
            await self._call(NAMESPACES_CREATE, request, name, timeout)

    # -- containers -----------------------------------------------------------------------

    async def create_container(
        self,
        namespace: str,
        container_id: str,
        spec: Mapping[str, Any],
        *,
        labels: Mapping[str, str] | None = None,
        timeout: float | None = CALL_TIMEOUT,
    ) -> ContainerRecord:
        """Create a container with a host-directory rootfs (no snapshot, no image).

        Raises:
            AlreadyExists: a container of that id exists in the namespace.
        """
        request = containers_pb2.CreateContainerRequest(
            container=containers_pb2.Container(
                id=container_id,
                labels=dict(labels or {}),
                runtime=containers_pb2.Container.Runtime(name=RUNTIME),
                spec=_json_any(oci.SPEC_TYPE_URL, spec),
            )
        )
        reply = await self._call(CONTAINERS_CREATE, request, namespace, timeout)
        return _container_record(reply.container)

    async def get_container(
        self, namespace: str, container_id: str, *, timeout: float | None = CALL_TIMEOUT
    ) -> ContainerRecord:
        """Raises: NotFound."""
        request = containers_pb2.GetContainerRequest(id=container_id)
        reply = await self._call(CONTAINERS_GET, request, namespace, timeout)
        return _container_record(reply.container)

    async def list_containers(
        self, namespace: str, *, filters: Iterable[str] = (), timeout: float | None = CALL_TIMEOUT
    ) -> list[ContainerRecord]:
        """Containers of a namespace, optionally filtered (``labels."k"==v``; filters are OR'ed)."""
        request = containers_pb2.ListContainersRequest(filters=list(filters))
        reply = await self._call(CONTAINERS_LIST, request, namespace, timeout)
        return [_container_record(c) for c in reply.containers]

    async def container_ids(self, namespace: str, *, timeout: float | None = CALL_TIMEOUT) -> list[str]:
        """The ids of a namespace's containers (their specs are not decoded)."""
        reply = await self._call(CONTAINERS_LIST, containers_pb2.ListContainersRequest(), namespace, timeout)
        return [c.id for c in reply.containers]

    async def update_labels(
        self,
        namespace: str,
        container_id: str,
        labels: Mapping[str, str],
        *,
        timeout: float | None = CALL_TIMEOUT,
    ) -> ContainerRecord:
        """Set labels (an empty value removes the label); others are kept.

        Raises:
            NotFound: no such container.
        """
        request = containers_pb2.UpdateContainerRequest(
            container=containers_pb2.Container(id=container_id, labels=dict(labels)),
            update_mask=field_mask_pb2.FieldMask(paths=[f"labels.{key}" for key in labels]),
        )
        reply = await self._call(CONTAINERS_UPDATE, request, namespace, timeout)
        return _container_record(reply.container)

    async def update_spec(
        self,
        namespace: str,
        container_id: str,
        spec: Mapping[str, Any],
        *,
        timeout: float | None = CALL_TIMEOUT,
    ) -> ContainerRecord:
        """Replace the container's spec (what its next task is made from).

        Raises:
            NotFound: no such container.
        """
        request = containers_pb2.UpdateContainerRequest(
            container=containers_pb2.Container(id=container_id, spec=_json_any(oci.SPEC_TYPE_URL, spec)),
            update_mask=field_mask_pb2.FieldMask(paths=["spec"]),
        )
        reply = await self._call(CONTAINERS_UPDATE, request, namespace, timeout)
        return _container_record(reply.container)

    async def delete_container(
        self, namespace: str, container_id: str, *, timeout: float | None = CALL_TIMEOUT
    ) -> None:
        """Raises: NotFound."""
        request = containers_pb2.DeleteContainerRequest(id=container_id)
        await self._call(CONTAINERS_DELETE, request, namespace, timeout)

    # -- tasks and processes ------------------------------------------------------------------

    async def create_task(
        self,
        namespace: str,
        container_id: str,
        *,
        stdout: str = "",
        stderr: str = "",
        timeout: float | None = CALL_TIMEOUT,
    ) -> int:
        """Create the container's task (not started); returns its pid.

        ``stdout`` and ``stderr`` are shim URIs (``file:///path``, ``binary:///path?k=v``).
        """
        request = tasks_pb2.CreateTaskRequest(container_id=container_id, stdout=stdout, stderr=stderr)
        reply = await self._call(TASKS_CREATE, request, namespace, timeout)
        return int(reply.pid)

    async def start(
        self, namespace: str, container_id: str, exec_id: str = "", *, timeout: float | None = CALL_TIMEOUT
    ) -> int:
        """Start the task (or an exec process); returns its pid."""
        request = tasks_pb2.StartRequest(container_id=container_id, exec_id=exec_id)
        reply = await self._call(TASKS_START, request, namespace, timeout)
        return int(reply.pid)

    async def get_process(
        self, namespace: str, container_id: str, exec_id: str = "", *, timeout: float | None = CALL_TIMEOUT
    ) -> ProcessState:
        """Raises: NotFound (no task, or no such process)."""
        request = tasks_pb2.GetRequest(container_id=container_id, exec_id=exec_id)
        reply = await self._call(TASKS_GET, request, namespace, timeout)
        return _process_state(reply.process)

    async def list_tasks(self, namespace: str, *, timeout: float | None = CALL_TIMEOUT) -> list[ProcessState]:
        reply = await self._call(TASKS_LIST, tasks_pb2.ListTasksRequest(), namespace, timeout)
        return [_process_state(t) for t in reply.tasks]

    async def kill(
        self,
        namespace: str,
        container_id: str,
        signal: int,
        exec_id: str = "",
        *,
        all_processes: bool = False,
        timeout: float | None = CALL_TIMEOUT,
    ) -> None:
        """Signal the task's init process (or an exec process, or all of them).

        Raises:
            NotFound: no such task or process, or it has already exited.
        """
        request = tasks_pb2.KillRequest(
            container_id=container_id, exec_id=exec_id, signal=signal, all=all_processes
        )
        await self._call(TASKS_KILL, request, namespace, timeout)

    async def wait(
        self, namespace: str, container_id: str, exec_id: str = "", *, timeout: float | None = None
    ) -> Exit:
        """Wait for the task (or exec process) to exit; at once if it has."""
        request = tasks_pb2.WaitRequest(container_id=container_id, exec_id=exec_id)
        reply = await self._call(TASKS_WAIT, request, namespace, timeout)
        return Exit(
            pid=0, exit_status=reply.exit_status, exited_at_ns=nanoseconds_from_proto(reply.exited_at)
        )

    @asynccontextmanager
    async def watch_exit(
        self, namespace: str, container_id: str, exec_id: str = ""
    ) -> AsyncIterator[ExitWatch]:
        """Wait for the task (or exec process) in the background while the
        block runs; the wait is sent before the block starts (containerd's
        rule: Wait before Start or Kill) and ends with the block."""
        watch = ExitWatch()

        async def wait() -> None:
            try:
                watch.exit = await self.wait(namespace, container_id, exec_id)
            except errors.ContdError as exc:
                watch.error = exc
            watch.done.set()

        async with open_nursery() as nursery:
            nursery.start_soon(wait)
            await trio.lowlevel.checkpoint()  # let the Wait go out first
            try:
                yield watch
            finally:
                nursery.cancel_scope.cancel()

    async def delete_task(
        self, namespace: str, container_id: str, *, timeout: float | None = CALL_TIMEOUT
    ) -> Exit:
        """Delete a stopped (or created) task.

        Raises:
            NotFound: no task. FailedPrecondition (or another error): it still runs.
        """
        request = tasks_pb2.DeleteTaskRequest(container_id=container_id)
        reply = await self._call(TASKS_DELETE, request, namespace, timeout)
        return Exit(reply.pid, reply.exit_status, nanoseconds_from_proto(reply.exited_at))

    async def delete_process(
        self, namespace: str, container_id: str, exec_id: str, *, timeout: float | None = CALL_TIMEOUT
    ) -> Exit:
        request = tasks_pb2.DeleteProcessRequest(container_id=container_id, exec_id=exec_id)
        reply = await self._call(TASKS_DELETE_PROCESS, request, namespace, timeout)
        return Exit(reply.pid, reply.exit_status, nanoseconds_from_proto(reply.exited_at))

    async def exec_process(
        self,
        namespace: str,
        container_id: str,
        exec_id: str,
        process: Mapping[str, Any],
        *,
        stdout: str = "",
        stderr: str = "",
        timeout: float | None = CALL_TIMEOUT,
    ) -> None:
        """Add an exec process (an OCI Process) to the task; start it with :meth:`start`."""
        request = tasks_pb2.ExecProcessRequest(
            container_id=container_id,
            exec_id=exec_id,
            spec=_json_any(oci.PROCESS_TYPE_URL, process),
            stdout=stdout,
            stderr=stderr,
        )
        await self._call(TASKS_EXEC, request, namespace, timeout)

    async def update_task(
        self,
        namespace: str,
        container_id: str,
        resources: Mapping[str, Any],
        *,
        timeout: float | None = CALL_TIMEOUT,
    ) -> None:
        """Change the limits of the running task (an OCI LinuxResources:
        what it leaves out is not changed).

        Raises:
            NotFound: no such task. ContainerdError: runc could not apply them.
        """
        request = tasks_pb2.UpdateTaskRequest(
            container_id=container_id, resources=_json_any(oci.RESOURCES_TYPE_URL, resources)
        )
        await self._call(TASKS_UPDATE, request, namespace, timeout)

    async def pids(
        self, namespace: str, container_id: str, *, timeout: float | None = CALL_TIMEOUT
    ) -> list[int]:
        request = tasks_pb2.ListPidsRequest(container_id=container_id)
        reply = await self._call(TASKS_PIDS, request, namespace, timeout)
        return [int(p.pid) for p in reply.processes]

    async def processes(
        self, namespace: str, container_id: str, *, timeout: float | None = CALL_TIMEOUT
    ) -> list[TaskProcess]:
        """Every live process of the task (ListPids), each with the exec
        process it runs, when it is one."""
        request = tasks_pb2.ListPidsRequest(container_id=container_id)
        reply = await self._call(TASKS_PIDS, request, namespace, timeout)
        return [TaskProcess(int(p.pid), _exec_id_of(p.info)) for p in reply.processes]

    # -- events -----------------------------------------------------------------------------------

    async def publish(
        self, namespace: str, topic: str, type_url: str, value: bytes, *, timeout: float | None = CALL_TIMEOUT
    ) -> None:
        """Publish an event to every subscriber (containerd passes it on as it is)."""
        request = events_pb2.PublishRequest(topic=topic, event=any_pb2.Any(type_url=type_url, value=value))
        await self._call(EVENTS_PUBLISH, request, namespace, timeout)

    @asynccontextmanager
    async def watch_events(
        self, filters: Iterable[str] = (), *, backoff: Backoff | None = None
    ) -> AsyncIterator[EventWatch]:
        """Subscribe to events (all namespaces unless filtered; filters are OR'ed).

        Entering waits, retrying with backoff, until the subscription is made
        and live: containerd delivers every event published from then on.
        The iterator then yields :class:`Event` values, and a :class:`Gap`
        each time the stream broke (containerd restarted) and was made (and
        live) again, so a reconciliation started on a Gap misses nothing.
        It only ends when cancelled: containerd's errors end a stream, never
        the watch.
        """
        watch = EventWatch(self, list(filters), backoff or Backoff(first=0.2, maximum=5.0))
        try:
            await watch._subscribe()
            yield watch
        finally:
            with trio.CancelScope(shield=True):
                await watch._drop_stream()


class EventWatch:
    """Events from containerd, surviving its restarts. Make one with
    :meth:`Containerd.watch_events`.

    containerd sends nothing when it registers a subscription, and events
    published before that are not delivered to it: a stream that is merely
    open may still miss an exit. So each new subscription publishes a probe
    of its own (``Events.Publish``) and reads until the probe comes back;
    events that arrive meanwhile are kept and yielded first.
    """

    def __init__(self, containerd: Containerd, filters: list[str], backoff: Backoff) -> None:
        self._containerd = containerd
        self._filters = [*filters, f'topic=="{PROBE_TOPIC}"'] if filters else []
        self._backoff = backoff
        self._stream: ReplyStream[events_pb2.Envelope] | None = None
        self._stream_stack: AsyncExitStack | None = None
        self._early: collections.deque[Event] = collections.deque()
        self._gap: str | None = None
        #: How many times the stream was subscribed again.
        self.resubscriptions = 0

    def __aiter__(self) -> EventWatch:
        return self

    async def __anext__(self) -> Event | Gap:
        while True:
            if self._early:
                return self._early.popleft()
            if self._stream is None:
                await self._subscribe()
                self.resubscriptions += 1
                return Gap(self._gap or "the event stream was lost")
            try:
                envelope = await self._stream.__anext__()
            except StopAsyncIteration:
                reason = "containerd ended the event stream"
            except errors.ContdError as exc:
                reason = str(exc)
            else:
                if envelope.topic != PROBE_TOPIC:  # a late probe, this watch's or another's
                    return decode_envelope(envelope)
                continue
            logs.event(log, logging.WARNING, "containerd event stream lost", reason=reason)
            self._gap = reason
            await self._drop_stream()

    async def _subscribe(self) -> None:
        request = events_pb2.SubscribeRequest(filters=self._filters)
        while True:
            stack = AsyncExitStack()
            try:
                stream = await stack.enter_async_context(
                    self._containerd.channel.server_stream(EVENTS_SUBSCRIBE, request)
                )
                await self._wait_until_live(stream)
            except BaseException as exc:
                with trio.CancelScope(shield=True):
                    await stack.aclose()
                if not isinstance(exc, errors.ContdError):
                    raise
                delay = self._backoff.next()
                logs.event(
                    log, logging.WARNING, "waiting for containerd events", error=str(exc), retry_in=delay
                )
                await trio.sleep(delay)
                continue
            self._stream, self._stream_stack = stream, stack
            self._backoff.reset()
            return

    async def _wait_until_live(self, stream: ReplyStream[events_pb2.Envelope]) -> None:
        """Publish probes, more and more slowly, while reading ``stream``
        until one comes back (a probe published before containerd
        registered the subscription is never delivered to it).

        Raises:
            ContdError: containerd is away, or ended the stream.
        """
        token = uuid.uuid4().hex.encode()
        async with open_nursery() as nursery:

            async def publish_probes() -> None:
                interval = 0.02
                while True:
                    try:
                        await self._containerd.publish(PROBE_NAMESPACE, PROBE_TOPIC, PROBE_TYPE_URL, token)
                    except (errors.Unavailable, errors.DeadlineExceeded):
                        raise
                    except errors.ContdError as exc:  # cannot probe here: take the stream as it is
                        logs.event(
                            log, logging.WARNING, "cannot confirm the event subscription", error=str(exc)
                        )
                        nursery.cancel_scope.cancel()
                        return
                    await trio.sleep(interval)
                    interval = min(interval * 2, 1.0)

            nursery.start_soon(publish_probes)
            with trio.move_on_after(PROBE_WAIT) as waiting:
                async for envelope in stream:
                    if envelope.topic != PROBE_TOPIC:
                        self._early.append(decode_envelope(envelope))
                    elif envelope.event.value == token:
                        nursery.cancel_scope.cancel()
                        return
                raise errors.Unavailable("containerd ended the event stream")
            if waiting.cancelled_caught:
                logs.event(
                    log, logging.WARNING, "event subscription not confirmed in time", waited=PROBE_WAIT
                )
            nursery.cancel_scope.cancel()

    async def _drop_stream(self) -> None:
        stack, self._stream_stack, self._stream = self._stream_stack, None, None
        if stack is not None:
            await stack.aclose()


def _exec_id_of(info: any_pb2.Any) -> str:
    """The exec id in a ListPids entry's runtime info (the runc shim's
    ProcessDetails, under its bare type name); empty for any other."""
    if info.type_url.rsplit("/", 1)[-1] != runc_options_pb2.ProcessDetails.DESCRIPTOR.full_name:
        return ""
    try:
        return str(runc_options_pb2.ProcessDetails.FromString(info.value).exec_id)
    except DecodeError:
        return ""


__all__ = [
    "CALL_TIMEOUT",
    "ContainerRecord",
    "Containerd",
    "Event",
    "EventWatch",
    "Exit",
    "ExitWatch",
    "Gap",
    "ProcessState",
    "TaskProcess",
]
