"""Start confirmations: what a start learns of its process's exit, and when
the supervisor may judge an exit it saw meanwhile (pure Trio, no service)."""

from __future__ import annotations

from contd_trio.module.lifecycle import Lifecycle


async def test_an_exit_seen_before_start_answers_is_the_starts_once_it_knows_its_pid() -> None:
    lifecycle = Lifecycle()
    with lifecycle.starting("ns", "c1") as waiter:
        lifecycle.task_exited("ns", "c1", 4242, 3)
        assert not waiter.exited.is_set()
        waiter.watch(4242)
        assert waiter.exited.is_set()
        assert waiter.exit_status == 3


async def test_an_exit_of_another_process_is_not_the_starts() -> None:
    lifecycle = Lifecycle()
    with lifecycle.starting("ns", "c1") as waiter:
        waiter.watch(4242)
        lifecycle.task_exited("ns", "c1", 1000, 137)  # an earlier incarnation's, delivered late
        lifecycle.task_exited("ns", "c2", 4242, 1)  # another container's
        assert not waiter.exited.is_set()
        lifecycle.task_exited("ns", "c1", 4242, 0)
        assert waiter.exited.is_set()
        assert waiter.exit_status == 0


async def test_the_supervisor_judges_an_exit_once_the_start_is_over() -> None:
    lifecycle = Lifecycle()
    assert lifecycle.task_exited("ns", "c1", 1, 0) == []  # nothing starting: judged at once
    with lifecycle.starting("ns", "c1"):
        starts = lifecycle.task_exited("ns", "c1", 1, 0)
        assert len(starts) == 1 and not starts[0].is_set()
    assert starts[0].is_set()
    assert not lifecycle.is_starting("ns", "c1")
