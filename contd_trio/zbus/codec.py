"""The zbus wire format, sans I/O: bytes in, values out, and back.

zbus v1.0.1 (Go) encodes with vmihailenco/msgpack v4: a struct is a map keyed
by its Go field names, ``[]byte`` is bin, ``string`` is str, nil slices and
pointers are nil, ``time.Time`` is the timestamp extension (-1) and
``time.Duration`` an int64 of nanoseconds. This module writes exactly those
shapes and reads them as liberally as Go does: any integer width, unknown keys
ignored, missing keys left at their zero value.

Nothing here knows about Redis or Trio.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

#: How long a reply list lives in Redis after the server pushed to it (Go: 5 min).
REPLY_TTL_SECONDS = 300

STATUS_OBJECT_NAME = "zbus"
STATUS_OBJECT_VERSION = "1.0"

# Go's zero time.Time, which a Go struct carries when a time was never set.
GO_ZERO_TIME = msgpack.Timestamp(seconds=-62135596800, nanoseconds=0)


class MalformedPayload(ValueError):
    """A payload that is not a zbus message.

    Attributes:
        reply_to: where the sender waits for an answer, when that much could
            be read; ``None`` means nobody can be told and the payload is dropped.
        request_id: the request's ID, when it could be read.
    """

    def __init__(self, reason: str, *, reply_to: str | None = None, request_id: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.reply_to = reply_to
        self.request_id = request_id


@dataclass(frozen=True, order=True)
class ObjectID:
    """``name@version``: one object served by a module."""

    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"

    @classmethod
    def parse(cls, text: str) -> ObjectID:
        name, sep, version = text.partition("@")
        if not sep or not name or not version:
            raise ValueError(f"object id must look like name@version, not {text!r}")
        return cls(name, version)

    def to_go(self) -> dict[str, str]:
        return {"Name": self.name, "Version": self.version}


STATUS_OBJECT = ObjectID(STATUS_OBJECT_NAME, STATUS_OBJECT_VERSION)


def queue_name(module: str, object_id: ObjectID) -> str:
    """The Redis list a module's object takes its requests from."""
    return f"{module}.{object_id}"


def event_channel(module: str, object_id: ObjectID, event: str) -> str:
    """The Redis pub/sub channel an object's event stream is published on."""
    return f"{module}.{object_id}.{event}"


@dataclass
class Request:
    id: str
    inputs: list[bytes]
    object: ObjectID
    reply_to: str
    method: str


@dataclass
class Output:
    """A method's result: ``data`` holds the encoded return values, ``error``
    the message of the error it returned (Go ``Output.Error.Message``)."""

    data: bytes | None = None
    error: str | None = None


@dataclass
class Response:
    id: str
    output: Output = field(default_factory=Output)
    #: A protocol error: the call could not be made at all. Go stubs panic on it.
    error: str | None = None


@dataclass
class WorkerStatus:
    state: str  # "free" or "busy", as Go's WorkerState
    start_time: msgpack.Timestamp
    action: str = ""

    def to_go(self) -> dict[str, Any]:
        return {"State": self.state, "StartTime": self.start_time, "Action": self.action}


@dataclass
class Status:
    objects: list[ObjectID]
    workers: list[WorkerStatus]

    def to_go(self) -> dict[str, Any]:
        return {
            "Objects": [o.to_go() for o in self.objects],
            "Workers": [w.to_go() for w in self.workers],
        }


# --- values ---------------------------------------------------------------


def _default(value: Any) -> Any:
    if isinstance(value, _dt.datetime):
        return timestamp_from_datetime(value)
    if isinstance(value, tuple):
        return list(value)
    to_go = getattr(value, "to_go", None)
    if to_go is not None:
        return to_go()
    raise TypeError(f"cannot encode {type(value).__name__} for zbus")


def pack(value: Any) -> bytes:
    """Encode one value the way Go zbus does.

    ``str`` becomes msgpack str, ``bytes`` bin, ``None`` nil, a datetime or a
    :class:`msgpack.Timestamp` the timestamp extension, and any object with a
    ``to_go()`` method whatever that returns (a map keyed by Go field names).
    """
    # Strings decoded from invalid UTF-8 (Go strings carry any bytes) hold
    # their bytes as surrogate escapes: write those bytes back unchanged.
    packed: bytes = msgpack.packb(
        value, use_bin_type=True, default=_default, datetime=False, unicode_errors="surrogateescape"
    )
    return packed


def wire_key(text: str) -> bytes:
    """A Redis key or channel named by a caller, as the bytes it sent.

    Redis keys are binary; a Go client may name a ``ReplyTo`` that is not
    valid UTF-8, and its answer must reach exactly that key.
    """
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def unpack(data: bytes) -> Any:
    """Decode one msgpack value; timestamps stay :class:`msgpack.Timestamp`
    (Go times carry nanoseconds, which a datetime cannot hold)."""
    return msgpack.unpackb(
        data, raw=False, timestamp=0, strict_map_key=False, unicode_errors="surrogateescape"
    )


def timestamp_from_datetime(value: _dt.datetime) -> msgpack.Timestamp:
    if value.tzinfo is None:
        raise ValueError("naive datetimes are ambiguous; give a timezone")
    return msgpack.Timestamp.from_datetime(value)


def timestamp_now() -> msgpack.Timestamp:
    return msgpack.Timestamp.from_unix_nano(time.time_ns())


# --- liberal readers for Go-shaped maps -------------------------------------


def as_str(value: Any, what: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    raise TypeError(f"{what} must be a string, not {type_name(value)}")


def type_name(value: Any) -> str:
    """A msgpack-ish name for a decoded value, for error messages."""
    names = {
        type(None): "nil",
        bool: "bool",
        int: "int",
        float: "float",
        str: "string",
        bytes: "bin",
        list: "array",
        dict: "map",
        msgpack.Timestamp: "timestamp",
    }
    return names.get(type(value), type(value).__name__)


# --- messages ---------------------------------------------------------------


def decode_request(payload: bytes) -> Request:
    """Read a request pushed by a zbus client.

    Raises:
        MalformedPayload: the payload is not a request. Its ``reply_to`` says
            whether the sender can be told.
    """
    try:
        message = unpack(payload)
    except Exception as exc:  # msgpack raises several unrelated types
        raise MalformedPayload(f"not msgpack: {exc}") from exc
    if not isinstance(message, Mapping):
        raise MalformedPayload(f"a request must be a map, not {type_name(message)}")

    reply_to = message.get("ReplyTo")
    if not isinstance(reply_to, str | bytes) or not reply_to:
        raise MalformedPayload("request has no ReplyTo")
    reply_to = as_str(reply_to, "ReplyTo")
    raw_id = message.get("ID")
    request_id = raw_id if isinstance(raw_id, str) else ""

    def malformed(reason: str) -> MalformedPayload:
        return MalformedPayload(reason, reply_to=reply_to, request_id=request_id)

    try:
        request_id = as_str(raw_id, "ID")
        method = as_str(message.get("Method"), "Method")
        obj = message.get("Object")
        if obj is None:
            obj = {}
        if not isinstance(obj, Mapping):
            raise malformed(f"Object must be a map, not {type_name(obj)}")
        object_id = ObjectID(
            as_str(obj.get("Name"), "Object.Name"), as_str(obj.get("Version"), "Object.Version")
        )
    except TypeError as exc:
        raise malformed(str(exc)) from exc

    raw_inputs = message.get("Inputs")
    if raw_inputs is None:
        raw_inputs = []
    if not isinstance(raw_inputs, list):
        raise malformed(f"Inputs must be an array, not {type_name(raw_inputs)}")
    inputs: list[bytes] = []
    for index, item in enumerate(raw_inputs):
        if isinstance(item, bytes):
            inputs.append(item)
        elif isinstance(item, str):
            # Go's decoder accepts str where bin is expected; so do we.
            inputs.append(item.encode("utf-8", "surrogateescape"))
        else:
            raise malformed(f"Inputs[{index}] must be bin, not {type_name(item)}")
    return Request(id=request_id, inputs=inputs, object=object_id, reply_to=reply_to, method=method)


def encode_request(request: Request) -> bytes:
    return pack(
        {
            "ID": request.id,
            "Inputs": request.inputs,
            "Object": request.object.to_go(),
            "ReplyTo": request.reply_to,
            "Method": request.method,
        }
    )


def encode_response(response: Response) -> bytes:
    error = None if response.output.error is None else {"Message": response.output.error}
    return pack(
        {
            "ID": response.id,
            "Output": {"Data": response.output.data, "Error": error},
            "Error": response.error,
        }
    )


def decode_response(payload: bytes) -> Response:
    """Read a response pushed by a zbus server.

    Raises:
        MalformedPayload: the payload is not a response.
    """
    try:
        message = unpack(payload)
    except Exception as exc:
        raise MalformedPayload(f"not msgpack: {exc}") from exc
    if not isinstance(message, Mapping):
        raise MalformedPayload(f"a response must be a map, not {type_name(message)}")
    try:
        output = message.get("Output") or {}
        if not isinstance(output, Mapping):
            raise MalformedPayload(f"Output must be a map, not {type_name(output)}")
        data = output.get("Data")
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        if data is not None and not isinstance(data, bytes):
            raise MalformedPayload(f"Output.Data must be bin, not {type_name(data)}")
        call_error = output.get("Error")
        error_message: str | None = None
        if call_error is not None:
            if not isinstance(call_error, Mapping):
                raise MalformedPayload(f"Output.Error must be a map, not {type_name(call_error)}")
            error_message = as_str(call_error.get("Message"), "Output.Error.Message")
        protocol_error = message.get("Error")
        return Response(
            id=as_str(message.get("ID"), "ID"),
            output=Output(data=data, error=error_message),
            error=None if protocol_error is None else as_str(protocol_error, "Error"),
        )
    except TypeError as exc:
        raise MalformedPayload(str(exc)) from exc


def encode_results(values: Sequence[Any]) -> bytes | None:
    """``Output.Data`` for a method's non-error return values: nothing gives
    nil, one value is encoded on its own, more become one array (as Go's
    ``returnFromObjects``)."""
    if not values:
        return None
    if len(values) == 1:
        return pack(values[0])
    return pack(list(values))


def decode_status(data: bytes) -> Status:
    value = unpack(data)
    if not isinstance(value, Mapping):
        raise MalformedPayload(f"a status must be a map, not {type_name(value)}")
    objects = [
        ObjectID(as_str(o.get("Name"), "Name"), as_str(o.get("Version"), "Version"))
        for o in value.get("Objects") or []
    ]
    workers = [
        WorkerStatus(
            state=as_str(w.get("State"), "State"),
            start_time=w.get("StartTime") or GO_ZERO_TIME,
            action=as_str(w.get("Action"), "Action"),
        )
        for w in value.get("Workers") or []
    ]
    return Status(objects=objects, workers=workers)
