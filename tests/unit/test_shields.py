"""Shields a stopping daemon lifts (pure Trio, no service involved)."""

from __future__ import annotations

import trio
import trio.testing

from contd_trio.module.shields import Shields


async def test_a_shield_holds_off_cancellation_until_lifted() -> None:
    shields = Shields()
    request = trio.CancelScope()
    reached: list[str] = []

    async def settle() -> None:
        with request:
            with shields.shield():
                await trio.sleep_forever()
            reached.append("after the shielded part")  # must not run: the cancellation goes on

    async with trio.open_nursery() as nursery:
        nursery.start_soon(settle)
        await trio.testing.wait_all_tasks_blocked()
        request.cancel()
        await trio.testing.wait_all_tasks_blocked()
        assert nursery.child_tasks, "the shield did not hold"
        shields.lift()
    assert request.cancelled_caught
    assert reached == []
    assert not shields._open


async def test_a_shield_taken_after_the_lift_does_not_shield() -> None:
    shields = Shields()
    shields.lift()
    with trio.CancelScope() as outer:
        outer.cancel()
        with shields.shield():
            await trio.sleep(10)
    assert outer.cancelled_caught


async def test_a_shield_keeps_its_own_deadline() -> None:
    shields = Shields()
    with shields.shield(deadline=trio.current_time() + 0.01) as scope:
        await trio.sleep(10)
    assert scope.cancelled_caught
