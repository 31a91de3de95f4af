"""zbus, the local RPC bus of 0-OS nodes, wire-compatible with Go zbus v1.0.1."""

from .codec import ObjectID
from .dispatch import Method
from .errors import BusUnavailable, CallError, ProtocolError, RequestTimedOut, ZbusError

__all__ = [
    "BusUnavailable",
    "CallError",
    "Method",
    "ObjectID",
    "ProtocolError",
    "RequestTimedOut",
    "ZbusError",
]
