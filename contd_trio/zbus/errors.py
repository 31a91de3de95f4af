"""The errors of the zbus layer, each knowing which wire channel it travels on."""

from __future__ import annotations


class ZbusError(Exception):
    """Base of every error raised by the zbus package."""


class CallError(ZbusError):
    """A method's own failure, carried in ``Output.Error.Message``.

    A served method raises it (or a subclass) to answer with an error; the
    client raises it when the remote method answered with one.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ProtocolError(ZbusError):
    """The call could not be made (unknown object, no such method, bad
    arguments): carried in ``Response.Error``. Go stubs panic on it, so the
    server uses it only where Go's server does."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class BusUnavailable(ZbusError):
    """The broker (Redis) cannot be reached or broke the connection."""


class RequestTimedOut(ZbusError, TimeoutError):
    """A client call got no answer before its deadline."""
