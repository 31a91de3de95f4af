"""The restart policy: restart, then give up at the limit within the window."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

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


# -- properties ---------------------------------------------------------------------------

POLICIES = st.builds(
    RestartPolicy,
    delay=st.just(2.0),
    limit=st.integers(1, 6),
    window=st.floats(1.0, 600.0),
)
TIMES = st.floats(0.0, 1e9, allow_nan=False)


@given(POLICIES, st.lists(st.floats(0.0, 120.0), max_size=30), TIMES)
def test_the_first_give_up_is_at_the_limit_th_crash_within_the_window(
    policy: RestartPolicy, gaps: list[float], start: float
) -> None:
    crashes = list(itertools.accumulate(gaps, initial=start))
    history: list[float] = []
    for i, now in enumerate(crashes):
        decision, history = policy.on_crash(history, now)
        within_window = [t for t in crashes[: i + 1] if now - t < policy.window]
        expected = Decision.GIVE_UP if len(within_window) >= policy.limit else Decision.RESTART
        assert decision is expected, (i, crashes)
        if decision is Decision.GIVE_UP:
            break  # a given-up container crashes no more


@given(POLICIES, st.lists(st.floats(-1e9, 2e9, allow_nan=False), max_size=10), TIMES)
def test_the_kept_history_is_short_recent_and_ends_now(
    policy: RestartPolicy, history: list[float], now: float
) -> None:
    _, kept = policy.on_crash(history, now)
    assert kept[-1] == now and kept == sorted(kept)
    assert len(kept) <= policy.limit
    assert all(0 <= now - t < policy.window for t in kept[:-1])


@given(st.lists(st.floats(0, 1e10, allow_nan=False), max_size=10))
def test_history_round_trips_to_the_millisecond(history: list[float]) -> None:
    parsed = parse_history(format_history(history))
    assert parsed == pytest.approx(history, abs=1e-3)


@given(
    st.text(max_size=40)
    | st.lists(st.sampled_from(["nan", "inf", "-inf", "1e400", "x", "", "5"])).map(",".join)
)
def test_any_label_text_gives_a_history_the_policy_can_use(text: str) -> None:
    # A label can be edited by hand (ctr): garbage in it must not stop restarts.
    decision, kept = POLICY.on_crash(parse_history(text), 1000.0)
    assert kept[-1] == 1000.0 and all(0 <= 1000.0 - t < POLICY.window for t in kept[:-1])
    assert decision is Decision.RESTART or len(kept) >= POLICY.limit
