"""Nurseries whose failures come out as one exception, not a group.

Trio's nurseries are strict: whatever leaves an ``async with
trio.open_nursery()`` block, even a single error of its body, arrives as an
``ExceptionGroup``. A daemon method must raise exactly one error of the
daemon's tree (a caller must never read "ExceptionGroup"), so every nursery
inside a request or a supervision task is opened with :func:`open_nursery`
from here, which turns the group back into one exception at the nursery's
edge. This is the only place that unwraps groups; ``cli`` and ``ctl`` handle
the groups of their top-level runs with ``except*``.

How a group becomes one exception (:func:`single_error`):

* a ``KeyboardInterrupt`` or ``SystemExit`` inside wins: the process is stopping;
* otherwise the first error that is not a cancellation, since a task that
  failed explains more than the cancellations its failure caused;
* otherwise (only cancellations) the first ``trio.Cancelled``, which then
  unwinds to its own cancel scope as usual.

The other errors of a group are attached as a note on the one raised, so a
traceback still shows them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TypeVar

import trio

T = TypeVar("T")


def leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The exceptions of a (nested) group, in order."""
    found: list[BaseException] = []
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            found.extend(leaves(error))
        else:
            found.append(error)
    return found


def single_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception that stands for ``group`` (see the module docstring)."""
    errors = leaves(group)
    if not errors:
        return trio.TrioInternalError("an empty exception group")
    stopping = [e for e in errors if isinstance(e, KeyboardInterrupt | SystemExit)]
    failures = [e for e in errors if not isinstance(e, trio.Cancelled)]
    chosen = (stopping or failures or errors)[0]
    others = [e for e in errors if e is not chosen and not isinstance(e, trio.Cancelled)]
    if others:
        chosen.add_note("raised together with: " + "; ".join(f"{type(e).__name__}: {e}" for e in others))
    return chosen


@contextmanager
def single_errors() -> Iterator[None]:
    """Re-raise an exception group leaving the block as its one exception."""
    try:
        yield
    except BaseExceptionGroup as group:
        error = single_error(group)
        # Raised from here, it would get the group as its context: keep its own.
        context = error.__context__
        try:
            raise error
        finally:
            error.__context__ = context


def run(main: Callable[..., Awaitable[T]], *args: object) -> T:
    """``trio.run(main, *args)``, whatever it raises as one exception: for
    the programs that only use the bus (contdctl, the REPL, the zbus demo),
    which need no asyncio loop (see ``runtime`` for the daemon's run)."""
    with single_errors():
        return trio.run(main, *args)


@asynccontextmanager
async def open_nursery() -> AsyncIterator[trio.Nursery]:
    """``trio.open_nursery()`` whose failure is one exception, not a group."""
    with single_errors():
        async with trio.open_nursery() as nursery:
            yield nursery


async def wait_any(*events: trio.Event) -> None:
    """Return as soon as one of ``events`` is set."""
    if any(event.is_set() for event in events):
        await trio.lowlevel.checkpoint()
        return
    async with open_nursery() as nursery:

        async def wait_then_stop(event: trio.Event) -> None:
            await event.wait()
            nursery.cancel_scope.cancel()

        for event in events:
            nursery.start_soon(wait_then_stop, event)
