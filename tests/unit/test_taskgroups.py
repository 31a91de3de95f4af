"""Nurseries whose failures come out as one exception (component tests of
our own error-group handling; no service involved)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from contd_trio import errors
from contd_trio.taskgroups import open_nursery, single_error, wait_any


async def test_a_failing_task_gives_its_own_error() -> None:
    async def fail() -> None:
        raise errors.Unavailable("containerd went away")

    with pytest.raises(errors.Unavailable, match="containerd went away") as caught:
        async with open_nursery() as nursery:
            nursery.start_soon(fail)
            await trio.sleep_forever()
    assert not isinstance(caught.value, BaseExceptionGroup)


async def test_an_error_of_the_body_is_not_wrapped() -> None:
    with pytest.raises(errors.NotFound):
        async with open_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            raise errors.NotFound("no such thing")


async def test_cancellation_still_reaches_its_scope() -> None:
    with trio.move_on_after(0.01) as scope:
        async with open_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            await trio.sleep_forever()
    assert scope.cancelled_caught


def test_an_error_beats_the_cancellations_it_caused_and_names_the_others() -> None:
    cancelled = trio.Cancelled._create()
    group = BaseExceptionGroup(
        "x", [cancelled, ExceptionGroup("y", [errors.Unavailable("a"), errors.NotFound("b")])]
    )
    chosen = single_error(group)
    assert isinstance(chosen, errors.Unavailable)
    assert "NotFound: b" in "".join(chosen.__notes__)


def test_keyboard_interrupt_wins() -> None:
    group = BaseExceptionGroup("x", [errors.Unavailable("a"), KeyboardInterrupt()])
    assert isinstance(single_error(group), KeyboardInterrupt)


async def test_wait_any_returns_on_the_first_event() -> None:
    first, second = trio.Event(), trio.Event()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_any, first, second)
            await trio.testing.wait_all_tasks_blocked()
            second.set()
    assert not first.is_set()
