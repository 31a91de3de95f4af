"""Supervision's background work: tasks of one nursery, each guarded, and
at most one piece of keyed work per container at a time.

A piece of work that fails with one of the daemon's errors is logged; one
that fails otherwise (a bug) is logged with its traceback. Neither is ever
raised into the nursery, which would end supervision, and the daemon.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from .. import errors, logs
from .lifecycle import Key

log = logging.getLogger("contd.supervisor")

Work = Callable[..., Awaitable[object]]


class KeyedWork:
    def __init__(self) -> None:
        self._nursery: trio.Nursery | None = None
        self._busy: set[Key] = set()

    def bind(self, nursery: trio.Nursery) -> None:
        """Run work in ``nursery`` from now on (the supervisor's)."""
        self._nursery = nursery

    def busy(self, key: Key) -> bool:
        """Whether a piece of keyed work for this container is under way."""
        return key in self._busy

    def spawn(self, work: Work, *args: object) -> None:
        """Run ``work(*args)`` in the background, guarded."""
        if self._nursery is not None:
            self._nursery.start_soon(self._guarded, work, args, None)

    def start(self, key: Key, work: Work, *args: object) -> bool:
        """Run ``work(*args)`` for one container, unless work for it is under
        way; returns whether it was started."""
        if key in self._busy or self._nursery is None:
            return False
        self._busy.add(key)
        self._nursery.start_soon(self._guarded, work, args, key)
        return True

    async def _guarded(self, work: Work, args: tuple[object, ...], key: Key | None) -> None:
        try:
            await work(*args)
        except errors.ContdError as exc:
            name = getattr(work, "__name__", "work")
            logs.event(log, logging.WARNING, "supervision step failed", step=name, error=str(exc))
        except Exception:
            log.exception("bug in supervision step %s", getattr(work, "__name__", work))
        finally:
            if key is not None:
                self._busy.discard(key)
