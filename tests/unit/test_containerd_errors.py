"""The one mapping from containerd's gRPC statuses to the daemon's errors, and event decoding."""

from __future__ import annotations

import pytest
from google.protobuf import any_pb2
from grpclib.const import Status

from contd_trio import errors
from contd_trio._proto.containerd.services.events.v1 import events_pb2
from contd_trio.containerd.channel import error_from_status
from contd_trio.containerd.events import TaskExit, decode_envelope


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (Status.NOT_FOUND, errors.NotFound),
        (Status.ALREADY_EXISTS, errors.AlreadyExists),
        (Status.INVALID_ARGUMENT, errors.InvalidArgument),
        (Status.FAILED_PRECONDITION, errors.FailedPrecondition),
        (Status.UNAVAILABLE, errors.Unavailable),
        (Status.UNIMPLEMENTED, errors.Unimplemented),
        (Status.DEADLINE_EXCEEDED, errors.DeadlineExceeded),
        (Status.UNKNOWN, errors.ContainerdError),
        (Status.INTERNAL, errors.ContainerdError),
    ],
)
def test_status_classes(status: Status, cls: type[errors.ContdError]) -> None:
    assert type(error_from_status(status, "x")) is cls


def test_every_status_maps_to_a_contd_error() -> None:
    for status in Status:
        if status is not Status.OK:
            assert isinstance(error_from_status(status, None), errors.ContdError)


def test_containerd_messages_keep_their_meaning() -> None:
    # Stripped of ": not found", containerd's message would read 'task "b3"'.
    error = error_from_status(Status.NOT_FOUND, 'task "b3": not found')
    assert str(error) == 'task "b3": not found'
    # ": unknown" says nothing: dropped.
    error = error_from_status(Status.UNKNOWN, "OCI runtime exec failed: exec failed: boom: unknown")
    assert str(error) == "OCI runtime exec failed: exec failed: boom"
    assert (
        str(error_from_status(Status.UNKNOWN, "context deadline exceeded: unknown"))
        == "context deadline exceeded"
    )
    assert isinstance(
        error_from_status(Status.UNKNOWN, "context deadline exceeded: unknown"), errors.DeadlineExceeded
    )


def test_events_dispatch_on_bare_type_urls() -> None:
    payload = TaskExit(container_id="c", id="c", pid=7, exit_status=3)
    envelope = events_pb2.Envelope(
        namespace="n",
        topic="/tasks/exit",
        event=any_pb2.Any(type_url="containerd.events.TaskExit", value=payload.SerializeToString()),
    )
    event = decode_envelope(envelope)
    assert event.payload == payload and event.container_id == "c" and event.namespace == "n"
    unknown = decode_envelope(events_pb2.Envelope(event=any_pb2.Any(type_url="containerd.events.TaskPaused")))
    assert unknown.payload is None and unknown.container_id == ""


def test_a_message_quoting_a_huge_value_is_cut() -> None:
    argv = "x" * 100_000
    error = error_from_status(
        Status.UNKNOWN, f'exec failed: exec: "{argv}": executable file not found: unknown'
    )
    assert len(str(error)) <= 1000 and str(error).endswith("executable file not found")
