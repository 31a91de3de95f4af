"""Supervision's keyed work: one piece per container at a time, and work
that must follow rather than be dropped (pure Trio, no service)."""

from __future__ import annotations

import trio
import trio.testing

from contd_trio.module.keyed_work import KeyedWork

KEY = ("ns", "c1")


async def test_work_for_a_busy_container_is_skipped_by_start_but_run_after_by_follow() -> None:
    work = KeyedWork()
    release = trio.Event()
    ran: list[str] = []

    async def restart() -> None:
        ran.append("restart")
        await release.wait()

    async def recover(why: str) -> None:
        ran.append(why)

    async with trio.open_nursery() as nursery:
        work.bind(nursery)
        assert work.start(KEY, restart)
        await trio.testing.wait_all_tasks_blocked()
        assert not work.start(KEY, recover, "skipped")
        work.follow(KEY, recover, "exit during the restart")
        work.follow(KEY, recover, "another exit")
        await trio.testing.wait_all_tasks_blocked()
        assert ran == ["restart"] and work.busy(KEY)
        release.set()
    # Each after the other, in no promised order: each re-checks what it is for.
    assert ran[0] == "restart" and sorted(ran[1:]) == ["another exit", "exit during the restart"]
    assert not work.busy(KEY)


async def test_follow_starts_at_once_when_nothing_is_under_way() -> None:
    work = KeyedWork()
    ran: list[tuple[str, str]] = []

    async def recover(key: tuple[str, str]) -> None:
        ran.append(key)

    async with trio.open_nursery() as nursery:
        work.bind(nursery)
        work.follow(KEY, recover, KEY)
        assert work.busy(KEY)
    assert ran == [KEY]
