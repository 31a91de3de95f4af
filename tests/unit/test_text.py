"""How callers' values are written into errors and log lines."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contd_trio.text import QUOTE_LIMIT, format_duration, printable, quote, shorten, shorten_front


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (1e-9, "1ns"),
        (0.0, "0s"),
        (1.5e-6, "1.5µs"),
        (0.25, "250ms"),
        (0.5, "500ms"),
        (2.0, "2s"),
        (59.5, "59.5s"),
        (90.0, "1m30s"),
        (300.0, "5m0s"),
        (7200.0, "2h0m0s"),
        (-2.0, "-2s"),
    ],
)
def test_durations_read_as_go_prints_them(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_a_huge_value_is_quoted_short() -> None:
    quoted = quote("x" * 1_000_000)
    assert len(quoted) == QUOTE_LIMIT + 2  # the quotes
    assert quoted.endswith("…'")


def test_invalid_utf8_is_escaped_not_passed_on() -> None:
    value = b"a\xff\xfeb".decode("utf-8", "surrogateescape")
    assert printable(value) == "a\\xff\\xfeb"
    assert quote(value).encode("utf-8")  # encodable: can travel in an answer


@given(st.text(), st.integers(min_value=1, max_value=300))
def test_shorten_never_exceeds_its_limit(text: str, limit: int) -> None:
    short = shorten(text, limit)
    assert len(short) <= limit
    assert short == text or short.endswith("…")


@given(text=st.text(), limit=st.integers(1, 50))
def test_shorten_front_keeps_the_end_within_its_limit(text: str, limit: int) -> None:
    cut = shorten_front(text, limit)
    assert len(cut) <= limit
    assert cut == text or (cut.startswith("…") and text.endswith(cut[1:]))
