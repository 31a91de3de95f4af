"""containerd events, sans I/O: an Envelope in, a typed Event out.

containerd puts bare type names in ``Any.type_url`` (``containerd.events.TaskExit``)
which protobuf's ``Any.Unpack`` refuses, so events are dispatched on the
``type_url`` string and decoded with ``FromString``.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import DecodeError, Message
from google.protobuf.timestamp_pb2 import Timestamp

from .._proto.containerd.events import container_pb2, namespace_pb2, task_pb2
from .._proto.containerd.services.events.v1 import events_pb2

TaskCreate = task_pb2.TaskCreate
TaskStart = task_pb2.TaskStart
TaskExit = task_pb2.TaskExit
TaskDelete = task_pb2.TaskDelete
TaskOOM = task_pb2.TaskOOM
TaskExecAdded = task_pb2.TaskExecAdded
TaskExecStarted = task_pb2.TaskExecStarted
ContainerCreate = container_pb2.ContainerCreate
ContainerDelete = container_pb2.ContainerDelete
NamespaceCreate = namespace_pb2.NamespaceCreate

EVENT_TYPES: dict[str, type[Message]] = {
    cls.DESCRIPTOR.full_name: cls
    for cls in (
        TaskCreate,
        TaskStart,
        TaskExit,
        TaskDelete,
        TaskOOM,
        TaskExecAdded,
        TaskExecStarted,
        ContainerCreate,
        ContainerDelete,
        NamespaceCreate,
    )
}


def nanoseconds_from_proto(value: Timestamp) -> int:
    """A protobuf time as nanoseconds since the Unix epoch (Go's zero time,
    containerd's "never", is -62135596800 s)."""
    return int(value.seconds) * 1_000_000_000 + int(value.nanos)


@dataclass(frozen=True)
class Event:
    """One containerd event.

    Attributes:
        payload: the decoded message, or ``None`` for a type we do not decode.
    """

    namespace: str
    topic: str
    #: When containerd published it, in nanoseconds since the Unix epoch.
    timestamp_ns: int
    type_url: str
    payload: Message | None

    @property
    def container_id(self) -> str:
        """The container the event is about ("" for namespace events)."""
        if self.payload is None:
            return ""
        for field in ("container_id", "id"):
            if field in self.payload.DESCRIPTOR.fields_by_name:
                return str(getattr(self.payload, field))
        return ""


@dataclass(frozen=True)
class Gap:
    """The event stream broke and was subscribed again: events in between
    are lost (containerd does not replay them), so reconcile."""

    reason: str


def decode_envelope(envelope: events_pb2.Envelope) -> Event:
    """Decode an envelope; an unknown or undecodable payload becomes ``None``."""
    type_url = envelope.event.type_url
    # Tolerate a "type.googleapis.com/" style prefix, should a release send one.
    cls = EVENT_TYPES.get(type_url.rpartition("/")[2])
    payload: Message | None = None
    if cls is not None:
        try:
            payload = cls.FromString(envelope.event.value)
        except DecodeError:
            payload = None
    return Event(
        namespace=envelope.namespace,
        topic=envelope.topic,
        timestamp_ns=nanoseconds_from_proto(envelope.timestamp),
        type_url=type_url,
        payload=payload,
    )
