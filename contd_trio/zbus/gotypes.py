"""Go types as a method table declares them: how an argument decodes from
what Go's msgpack wrote, and how a result encodes so Go can read it.

Decoding is as liberal as vmihailenco/msgpack v4: any integer width, nil for
a zero value, bin where a string is expected. A value Go could not decode
either is refused with :class:`ArgumentTypeError`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgpack

from .codec import GO_ZERO_TIME, type_name

T = TypeVar("T")


class ArgumentTypeError(TypeError):
    """A decoded msgpack value does not fit the declared Go type."""


@dataclass(frozen=True)
class GoType(Generic[T]):
    """One Go type: its name (as Go prints it in errors), its zero value and
    the two conversions between Python and msgpack-ready values."""

    go_name: str
    zero: Any
    decode: Callable[[Any], T]
    encode: Callable[[T], Any]


def _refuse(go_name: str, value: Any) -> ArgumentTypeError:
    return ArgumentTypeError(f"expecting {go_name} got {type_name(value)}")


def _decode_string(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    raise _refuse("string", value)


def _decode_float(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, float):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    raise _refuse("float64", value)


def _integer_decoder(go_name: str, low: int, high: int) -> Callable[[Any], int]:
    def decode(value: Any) -> int:
        if value is None:
            return 0
        if isinstance(value, float) and value.is_integer() and not math.isinf(value):
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise _refuse(go_name, value)
        if not low <= value <= high:
            raise ArgumentTypeError(f"expecting {go_name} got {value} (out of range)")
        return value

    return decode


def _decode_bool(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    raise _refuse("bool", value)


def _decode_bytes(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    raise _refuse("[]uint8", value)


def _decode_time(value: Any) -> msgpack.Timestamp:
    if value is None:
        return GO_ZERO_TIME
    if isinstance(value, msgpack.Timestamp):
        return value
    raise _refuse("time.Time", value)


def _encode_float(value: float) -> float:
    return float(value)


def _identity(value: Any) -> Any:
    return value


STRING: GoType[str] = GoType("string", "", _decode_string, str)
FLOAT64: GoType[float] = GoType("float64", 0.0, _decode_float, _encode_float)
INT: GoType[int] = GoType("int", 0, _integer_decoder("int", -(2**63), 2**63 - 1), int)
UINT: GoType[int] = GoType("uint", 0, _integer_decoder("uint", 0, 2**64 - 1), int)
UINT64: GoType[int] = GoType("uint64", 0, _integer_decoder("uint64", 0, 2**64 - 1), int)
BOOL: GoType[bool] = GoType("bool", False, _decode_bool, bool)
#: ``[]byte`` travels as bin (Go also reads a str there).
BYTES: GoType[bytes] = GoType("[]uint8", b"", _decode_bytes, bytes)
#: time.Duration travels as int64 nanoseconds; Python sees an int of nanoseconds.
DURATION: GoType[int] = GoType(
    "time.Duration", 0, _integer_decoder("time.Duration", -(2**63), 2**63 - 1), int
)
TIME: GoType[msgpack.Timestamp] = GoType("time.Time", GO_ZERO_TIME, _decode_time, _identity)
ANY: GoType[Any] = GoType("interface {}", None, _identity, _identity)


def named(go_name: str, base: GoType[T]) -> GoType[T]:
    """A Go named type (``type ContainerID string``): same wire form, own name."""
    return GoType(go_name, base.zero, base.decode, base.encode)


def slice_of(element: GoType[T]) -> GoType[list[T] | None]:
    """``[]T``: an array, or nil for a nil slice (kept apart from an empty one)."""
    go_name = f"[]{element.go_name}"

    def decode(value: Any) -> list[T] | None:
        if value is None:
            return None
        if not isinstance(value, list):
            raise _refuse(go_name, value)
        try:
            return [element.decode(item) for item in value]
        except ArgumentTypeError as exc:
            raise ArgumentTypeError(f"expecting {go_name}: element {exc}") from exc

    def encode(value: list[T] | None) -> list[Any] | None:
        if value is None:
            return None
        return [element.encode(item) for item in value]

    return GoType(go_name, None, decode, encode)
