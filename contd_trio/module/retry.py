"""Work that must get done even when containerd is away right now.

Clean-up after a request (an exec process to remove, the container of a Run
that failed) and supervision (a restart, a finish-off) cannot give up when
containerd restarts under them: :func:`persist` retries such a call with
backoff for as long as containerd is unavailable, and :class:`Janitor` runs
clean-up in the background, after the request that needed it has answered.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

from .. import errors, logs
from ..backoff import Backoff
from ..taskgroups import open_nursery

log = logging.getLogger("contd.retry")

#: containerd errors that mean "not now": wait and try the same thing again.
TRANSIENT = (errors.Unavailable, errors.DeadlineExceeded)

T = TypeVar("T")


def retry_backoff() -> Backoff:
    return Backoff(first=0.5, maximum=30.0)


async def persist(what: str, key: tuple[str, str], call: Callable[..., Awaitable[T]], *args: object) -> T:
    """``call(*args)``, retried with backoff while containerd is away.

    Args:
        what: for the log, as in "will <what> again".
        key: the (namespace, id) the work is about, for the log.
    Raises:
        ContdError: any other failure of ``call``.
    """
    backoff = retry_backoff()
    while True:
        try:
            return await call(*args)
        except TRANSIENT as exc:
            delay = backoff.next()
            logs.event(
                log,
                logging.WARNING,
                f"containerd unavailable, will {what} again",
                ns=key[0],
                id=key[1],
                error=str(exc),
                retry_in=delay,
            )
            await trio.sleep(delay)


class Janitor:
    """Runs clean-up in the background until it is done. A task of the
    daemon's nursery; its work never raises into it."""

    def __init__(self) -> None:
        self._nursery: trio.Nursery | None = None
        #: Clean-up jobs not done yet (for tests and the log).
        self.pending = 0
        #: Whether :meth:`serve` has ended (the daemon is stopping).
        self.stopped = False

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            # A second signal stops the janitor while shielded roll-backs
            # still run and may hand it work: a closed nursery would raise.
            self._nursery = None
            self.stopped = True

    def soon(
        self, what: str, key: tuple[str, str], call: Callable[..., Awaitable[object]], *args: object
    ) -> None:
        """Do ``call(*args)`` in the background, retrying while containerd is away."""
        if self.stopped:
            # What is left pending, the next daemon's start-up removes.
            logs.event(log, logging.WARNING, f"cannot {what} later: stopping", ns=key[0], id=key[1])
            return
        if self._nursery is None:
            logs.event(log, logging.ERROR, f"cannot {what} later: no janitor", ns=key[0], id=key[1])
            return
        self.pending += 1
        self._nursery.start_soon(self._do, what, key, call, *args)

    async def _do(
        self, what: str, key: tuple[str, str], call: Callable[..., Awaitable[object]], *args: object
    ) -> None:
        try:
            await persist(what, key, call, *args)
        except errors.ContdError as exc:
            logs.event(log, logging.WARNING, f"could not {what}", ns=key[0], id=key[1], error=str(exc))
        except Exception:
            log.exception("bug while trying to %s (%s/%s)", what, *key)
        else:
            logs.event(log, logging.INFO, f"did {what} after all", ns=key[0], id=key[1])
        finally:
            self.pending -= 1
