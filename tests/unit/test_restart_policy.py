"""The restart policy: restart, then give up at the limit within the window."""

from __future__ import annotations

from contd_trio.module.restart_policy import Decision, RestartPolicy, format_history, parse_history

POLICY = RestartPolicy(delay=2.0, limit=3, window=60.0)


def test_the_third_crash_within_the_window_gives_up() -> None:
    decision, history = POLICY.on_crash([], 100.0)
    assert decision is Decision.RESTART and history == [100.0]
    decision, history = POLICY.on_crash(history, 110.0)
    assert decision is Decision.RESTART and history == [100.0, 110.0]
    decision, history = POLICY.on_crash(history, 120.0)
    assert decision is Decision.GIVE_UP


def test_crashes_outside_the_window_are_forgotten() -> None:
    # 0-OS restarted a container crashing every 61 s forever; so do we, by design:
    # only crashes within the window count.
    history: list[float] = []
    for i in range(10):
        decision, history = POLICY.on_crash(history, i * 61.0)
        assert decision is Decision.RESTART
        assert history == [i * 61.0]


def test_a_clock_that_went_backwards_does_not_count_future_crashes() -> None:
    decision, history = POLICY.on_crash([500.0, 510.0], 100.0)
    assert decision is Decision.RESTART and history == [100.0]


def test_history_round_trips_through_a_label() -> None:
    assert parse_history(format_history([1.5, 2.25])) == [1.5, 2.25]
    assert parse_history(None) == [] and parse_history("x,,3") == [3.0]
