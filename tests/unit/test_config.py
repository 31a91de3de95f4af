"""Command-line and value parsing: durations, sizes and contd's flags."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contd_trio import cli
from contd_trio.config import DEFAULT_BROKER, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("300", 300.0),
        ("0.5", 0.5),
        ("5m", 300.0),
        ("30s", 30.0),
        ("1m30s", 90.0),
        ("250ms", 0.25),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        ("0", 0.0),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "5x",
        "m",
        "-3",
        "1m-3s",
        "s30",
        "nan",
        "inf",
        "1e3",
        "1_000",
        "\u0661\u0662",
        "5S",
        "1m30",
        "9" * 400,
    ],
)
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("268435456", 268435456),
        ("256M", 256 << 20),
        ("256MiB", 256 << 20),
        ("256MB", 256 << 20),
        ("1G", 1 << 30),
        ("4k", 4096),
        ("512B", 512),
    ],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "text", ["", "256iB", "256i", "1.5G", "-1M", "M", "256X", "\u0661\u0662", "256 MiBs"]
)
def test_bad_sizes(text: str) -> None:
    with pytest.raises(ValueError, match="invalid size"):
        parse_size(text)


# -- properties ---------------------------------------------------------------------------

GO_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


@given(st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(sorted(GO_UNITS))), min_size=1, max_size=4))
def test_a_go_duration_is_the_sum_of_its_parts(parts: list[tuple[int, str]]) -> None:
    text = "".join(f"{value}{unit}" for value, unit in parts)
    assert parse_duration(text) == pytest.approx(sum(value * GO_UNITS[unit] for value, unit in parts))


@given(st.integers(0, 10**9), st.integers(0, 999))
def test_plain_seconds_with_or_without_a_fraction(whole: int, millis: int) -> None:
    assert parse_duration(str(whole)) == whole
    assert parse_duration(f"{whole}.{millis:03d}") == pytest.approx(whole + millis / 1000)


@given(st.text(max_size=12))
def test_any_text_is_a_finite_duration_or_a_value_error(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        assert "invalid duration" in str(exc)
    else:
        assert 0 <= seconds < float("inf")


SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


@given(
    st.integers(0, 10**6),
    st.sampled_from(sorted(SIZE_UNITS)),
    st.sampled_from(["", "B", "iB"]),
    st.booleans(),
)
def test_a_size_is_its_number_times_its_binary_unit(number: int, unit: str, suffix: str, lower: bool) -> None:
    if not unit and suffix == "iB":
        suffix = "B"  # "iB" only follows a unit letter
    text = f"{number}{unit.lower() if lower else unit}{suffix}"
    assert parse_size(text) == number * SIZE_UNITS[unit]


@given(st.text(max_size=10))
def test_any_text_is_a_size_or_a_value_error(text: str) -> None:
    try:
        size = parse_size(text)
    except ValueError as exc:
        assert "invalid size" in str(exc)
    else:
        assert size >= 0
        digits = text.strip().rstrip("BbIiKkMmGgTt ")
        assert digits.isascii() and digits.isdigit()


# -- contd's flags ------------------------------------------------------------------------


def test_the_zinit_command_line_of_the_seed() -> None:
    config = cli.parse_args(
        ["-broker", "unix:///var/run/redis.sock", "-root", "/var/cache/modules/containerd"]
    )
    assert config.broker == DEFAULT_BROKER
    assert config.root == Path("/var/cache/modules/containerd")
    assert config.containerd_socket == Path("/run/containerd/containerd.sock")
    assert config.workers == 16 and config.request_timeout == 300.0


def test_double_dash_flags_and_go_durations() -> None:
    config = cli.parse_args(
        ["--broker", "tcp://127.0.0.1:6379", "--timeout", "5m", "-workers", "4", "-restart-delay", "500ms"]
    )
    assert config.broker == "tcp://127.0.0.1:6379"
    assert config.request_timeout == 300.0 and config.workers == 4 and config.restart_delay == 0.5


def test_the_restart_flags() -> None:
    defaults = cli.parse_args([])
    assert (defaults.restart_delay, defaults.restart_limit, defaults.restart_window) == (2.0, 3, 60.0)
    config = cli.parse_args(["-restart-delay", "0", "-restart-limit", "5", "--restart-window", "2m30s"])
    assert (config.restart_delay, config.restart_limit, config.restart_window) == (0.0, 5, 150.0)


def test_the_log_size_flag() -> None:
    assert cli.parse_args(["-log-max-size", "64K"]).log_max_bytes == 64 << 10
    assert cli.parse_args(["-log-max-size", "10MiB"]).log_max_bytes == 10 << 20


def test_the_pids_limit_flag() -> None:
    assert cli.parse_args([]).pids_limit == 4096
    assert cli.parse_args(["-pids-limit", "100"]).pids_limit == 100
    assert cli.parse_args(["--pids-limit", "0"]).pids_limit == 0  # no limit


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["-nope"], "unrecognized arguments: -nope"),
        (["-timeout", "soon"], "invalid duration 'soon'"),
        (["-timeout", "0"], "must be positive"),
        (["-timeout", "inf"], "invalid duration 'inf'"),
        (["-workers", "0"], "must be at least 1"),
        (["-broker", "http://x"], "unknown scheme 'http'"),
        (["-log-level", "loud"], "invalid choice: 'loud'"),
        (["-restart-delay=-1s"], "invalid duration '-1s'"),
        (["-restart-delay", "soon"], "invalid duration 'soon'"),
        (["-restart-limit", "0"], "invalid number '0': must be at least 1"),
        (["-restart-limit", "three"], "invalid number 'three'"),
        (["-restart-window", "0s"], "invalid duration '0s': must be positive"),
        (["-log-max-size", "256iB"], "invalid size '256iB'"),
        (["-log-max-size", "1K"], "at least 4096 bytes"),
        (["-pids-limit", "-1"], "invalid number '-1': from 0 (no limit) to 4194304"),
        (["-pids-limit", "4194305"], "invalid number '4194305': from 0 (no limit) to 4194304"),
        (["-pids-limit", "many"], "invalid number 'many'"),
    ],
)
def test_bad_flags_give_one_line_and_exit_2(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.parse_args(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert complaint in err
    assert err.count("\n") == 1
