"""The daemon's errors: one tree, each class a call error a caller can act on.

Every ``ContdError`` travels to the caller as a zbus call error
(``Output.Error.Message`` = its message). Errors from containerd are mapped
to these classes in exactly one place (``containerd.channel``), keeping
containerd's message (minus a meaningless ``": unknown"``).
"""

from __future__ import annotations

from .zbus.errors import CallError


class ContdError(CallError):
    """Base of every error the daemon reports to a caller."""


class InvalidArgument(ContdError):
    """The request is wrong; nothing was created or changed."""


class NotFound(ContdError):
    """No such container, task, process or namespace."""


class AlreadyExists(ContdError):
    """A container (or namespace) of that name already exists."""


class FailedPrecondition(ContdError):
    """The thing exists but is not in a state that allows the operation."""


class Unavailable(ContdError):
    """containerd cannot be reached (not running, or restarting)."""


class DeadlineExceeded(ContdError):
    """containerd did not answer in time."""


class Unimplemented(ContdError):
    """containerd does not implement the call (an older or newer API)."""


class ContainerdError(ContdError):
    """Any other failure containerd reported."""


class StorageError(ContdError):
    """The daemon's own files (under its ``-root``) could not be written or
    removed: the disk is read-only, full or gone. The message names the path
    and the reason."""


class ExecFailed(ContdError):
    """A process run by Exec exited with a non-zero status."""

    def __init__(self, message: str, exit_status: int) -> None:
        super().__init__(message)
        self.exit_status = exit_status


class EntrypointExited(ContdError):
    """Run started the container, but its entrypoint exited right away."""

    def __init__(self, message: str, exit_status: int) -> None:
        super().__init__(message)
        self.exit_status = exit_status
