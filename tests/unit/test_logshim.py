"""The log shim's pure parts, and its stdio URI."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from contd_trio import logshim
from contd_trio.module.output import install_logshim, task_output_uri
from contd_trio.module.types import Logs, LogsRedis


def test_arguments_come_in_any_order() -> None:
    assert logshim.parse_args(["--max-bytes", "10", "--log", "/x.log"]) == {
        "max-bytes": "10",
        "log": "/x.log",
    }
    with pytest.raises(SystemExit, match="--log PATH is required"):
        logshim.parse_args(["--max-bytes", "10"])


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("redis://127.0.0.1:6380/out", ("127.0.0.1", 6380, b"out")),
        ("redis://host/ch", ("host", 6379, b"ch")),
        ("redis://[::1]:7000/a/b", ("::1", 7000, b"a/b")),
    ],
)
def test_redis_urls(url: str, parsed: tuple[str, int, bytes]) -> None:
    assert logshim.parse_redis_url(url) == parsed


@pytest.mark.parametrize("url", ["tcp://h:1/c", "redis://h:1", "redis://:1/c", "redis://h:x/c"])
def test_bad_redis_urls(url: str) -> None:
    with pytest.raises(ValueError):
        logshim.parse_redis_url(url)


def test_rotation_happens_between_lines_and_keeps_one_old_file(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    logfile = logshim.LogFile(str(path), max_bytes=150)
    stream = logshim.Stream(3, [])
    for i in range(10):
        stream.feed(f"line {i}\n".encode()[:4], logfile)  # pieces of lines...
        stream.feed(f"line {i}\n".encode()[4:], logfile)
    stream.finish(logfile)
    logfile.close()
    old, new = (tmp_path / "c.log.1").read_text(), path.read_text()
    assert len(new) <= 150 and len(old) <= 150
    lines = [line.split(" F ", 1)[1] for line in (old + new).splitlines()]
    assert lines == [f"line {i}" for i in range(10 - len(lines), 10)]  # whole, in order, the newest kept


def test_a_partial_last_line_is_written_at_the_end(tmp_path: Path) -> None:
    logfile = logshim.LogFile(str(tmp_path / "c.log"), max_bytes=1000)
    channel = logshim.RedisChannel("redis://127.0.0.1:1/x")
    stream = logshim.Stream(3, [channel])
    stream.feed(b"a\nb", logfile)
    stream.finish(logfile)
    assert [line[-4:] for line in (tmp_path / "c.log").read_text().splitlines()] == [" F a", " F b"]
    assert channel.pending == [b"a", b"b"]  # forwarded without the time and stream


def test_lines_wait_for_redis_but_not_forever() -> None:
    channel = logshim.RedisChannel("redis://127.0.0.1:1/x")
    for i in range(logshim.MAX_PENDING_LINES + 5):
        channel.add(str(i).encode())
    assert len(channel.pending) == logshim.MAX_PENDING_LINES and channel.dropped == 5
    assert channel.pending[0] == b"5"


def test_lines_kept_for_redis_are_bounded_in_bytes_too() -> None:
    channel = logshim.RedisChannel("redis://127.0.0.1:1/x")
    line = b"x" * 60_000
    for _ in range(1000):
        channel.add(line)
    assert channel.pending_bytes == sum(map(len, channel.pending)) <= logshim.MAX_PENDING_BYTES
    assert len(channel.pending) == logshim.MAX_PENDING_BYTES // len(line)
    assert channel.dropped == 1000 - len(channel.pending)
    # A single line over the cap is still kept (the newest always is).
    channel.add(b"y" * (logshim.MAX_PENDING_BYTES + 1))
    assert channel.pending == [b"y" * (logshim.MAX_PENDING_BYTES + 1)]


@contextlib.contextmanager
def answering(reply: bytes) -> Iterator[logshim.RedisChannel]:
    """A channel whose connection is a socket pair, the other end having sent ``reply``."""
    channel = logshim.RedisChannel("redis://127.0.0.1:1/x")
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(reply)
        channel.sock = ours
        yield channel


def test_answers_from_redis_are_read_bounded_in_bytes_and_time() -> None:
    deadline = time.monotonic() + 5
    with answering(b":1\r\n:0\r\n") as channel:
        channel._read_replies(2, deadline)
    with answering(b"+" + b"x" * 100_000) as channel, pytest.raises(OSError, match="more than 64 bytes"):
        channel._read_replies(2, deadline)
    # One answer of two, then silence: given up at the deadline.
    with answering(b":1\r\n") as channel, pytest.raises(OSError, match=r"did not answer in time|timed out"):
        channel._read_replies(2, time.monotonic() + 0.2)
    with answering(b"-ERR no\r\n") as channel, pytest.raises(OSError, match="refused PUBLISH: -ERR no"):
        channel._read_replies(1, deadline)


def test_a_full_disk_drops_lines_counted_and_the_log_resumes_with_a_note(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    logfile = logshim.LogFile(str(path), max_bytes=1 << 20, indexed=True)
    stream = logshim.Stream(3, [])
    stream.feed(b"before\n", logfile)
    room = logfile.fd
    logfile.fd = os.open("/dev/full", os.O_WRONLY)  # every write: ENOSPC
    stream.feed(b"lost 1\nlost 2\n", logfile)
    stream.feed(b"lost 3\n", logfile)
    assert logfile.lost == 3
    os.close(logfile.fd)
    logfile.fd = room  # space again
    stream.feed(b"after\n", logfile)
    logfile.close()
    texts = [line.split(b" ", 3)[3] for line in path.read_bytes().splitlines()]
    assert texts[0] == b"before" and texts[2] == b"after"
    assert texts[1].startswith(b"contd-logshim: 3 lines of output were lost: ")
    assert logfile.lost == 0


def test_a_line_cut_by_a_full_disk_is_ended_before_the_next(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    logfile = logshim.LogFile(str(path), max_bytes=1 << 20, indexed=True)
    logfile._append(b"half a li")  # as if the disk filled up in the middle of a line
    assert not logfile.at_line_start
    logfile.lost, logfile.lost_reason = 1, "No space left on device"
    logfile.write(b"next\n")
    logfile.close()
    first, note, last = path.read_bytes().splitlines()
    assert first == b"half a li" and last == b"next"
    assert note.endswith(b" stderr F contd-logshim: 1 lines of output were lost: No space left on device")


def test_the_shim_is_installed_executable_says_ready_then_runs_python_without_site_once(
    tmp_path: Path,
) -> None:
    # That it really runs so: tests/integration/test_logshim_process.py.
    shim = install_logshim(tmp_path / "bin", python="/usr/bin/python3")
    shebang, _comment, ready, run = shim.read_text().splitlines()
    assert shebang == "#!/bin/sh" and shim.stat().st_mode & 0o111
    assert ready == "exec 5>&-"
    main = tmp_path / "bin" / "python" / "contd-logshim"
    assert run == f'CONTD_LOGSHIM_READY_SENT=1 exec /usr/bin/python3 -S {main} "$@"'
    assert "import contd_logshim" in main.read_text()
    assert install_logshim(tmp_path / "bin", python="/usr/bin/python3") == shim  # idempotent


def test_the_stdio_uri_carries_every_argument() -> None:
    backends = [
        Logs("redis", LogsRedis("redis://h:1/out", "redis://h:1/err")),
        Logs("redis", LogsRedis("redis://h:2/o2", "")),
    ]
    uri = task_output_uri(
        Path("/r/bin/contd-logshim"), Path("/r/logs/n/c 1.log"), 4096, backends, netns="/var/run/netns/n1"
    )
    parts = urlsplit(uri)
    assert parts.scheme == "binary" and parts.path == "/r/bin/contd-logshim"
    args = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert args == {
        "--log": "/r/logs/n/c 1.log",
        "--max-bytes": "4096",
        "--stdout.0": "redis://h:1/out",
        "--stderr.0": "redis://h:1/err",
        "--stdout.1": "redis://h:2/o2",
        "--netns": "/var/run/netns/n1",
    }
    # Without backends the shim has no network to join.
    plain = task_output_uri(Path("/s"), Path("/l"), 1, [], netns="/var/run/netns/n1")
    assert "netns" not in plain


def test_a_big_chunk_is_split_between_lines_to_respect_the_cap(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    logfile = logshim.LogFile(str(path), max_bytes=100)
    logfile.write(b"".join(b"line %04d\n" % i for i in range(50)))  # 500 bytes at once
    logfile.close()
    old, new = (tmp_path / "c.log.1").read_bytes(), path.read_bytes()
    assert len(old) <= 100 and len(new) <= 100
    kept = (old + new).splitlines()
    assert kept == [b"line %04d" % i for i in range(50 - len(kept), 50)]


def test_a_line_longer_than_the_cap_goes_alone(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    logfile = logshim.LogFile(str(path), max_bytes=10)
    logfile.write(b"short\n" + b"x" * 30 + b"\nend\n")
    logfile.close()
    assert (tmp_path / "c.log.1").read_bytes() == b"x" * 30 + b"\n"
    assert path.read_bytes() == b"end\n"
