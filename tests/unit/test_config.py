"""Command-line and value parsing: durations, sizes and contd's flags."""

from __future__ import annotations

from pathlib import Path

import pytest

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


@pytest.mark.parametrize("text", ["", "5x", "m", "-3", "1m-3s", "s30", "nan"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [("268435456", 268435456), ("256M", 256 << 20), ("256MiB", 256 << 20), ("1G", 1 << 30), ("4k", 4096)],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


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


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["-nope"], "unrecognized arguments: -nope"),
        (["-timeout", "soon"], "invalid duration 'soon'"),
        (["-timeout", "0"], "must be positive"),
        (["-workers", "0"], "must be at least 1"),
        (["-broker", "http://x"], "unknown scheme 'http'"),
        (["-log-level", "loud"], "invalid choice: 'loud'"),
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
