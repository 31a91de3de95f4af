"""Container log files: the log shim's rotation and index, and reading its
output as one stream (cursors, tails) across rotations and restarts."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contd_trio import logshim
from contd_trio.module.logfiles import log_files, rotated
from contd_trio.module.logstream import (
    NO_STREAM,
    Cursor,
    CursorError,
    LogStream,
    last_lines,
    parse_record,
    read_after,
    read_tail,
)

NOW = logshim.stamp(1_700_000_000_123_456_789)
#: The length of the prefix the shim writes before a stdout line.
HEAD = len(NOW + b" stdout F ")


def shim_log(path: Path, max_bytes: int = 10_000) -> tuple[logshim.LogFile, logshim.Stream]:
    return logshim.LogFile(str(path), max_bytes, indexed=True), logshim.Stream(3, [])


def write_lines(logfile: logshim.LogFile, stream: logshim.Stream, lines: list[str]) -> None:
    stream.feed("".join(f"{line}\n" for line in lines).encode(), logfile, NOW)


def texts(chunk_records: list[object]) -> list[str]:
    return [r.text.decode() for r in chunk_records]  # type: ignore[attr-defined]


def test_the_shim_writes_cri_lines_with_time_and_stream(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    logfile = logshim.LogFile(str(path), 10_000, indexed=True)
    out, err = logshim.Stream(3, []), logshim.Stream(4, [], name=b"stderr")
    out.feed(b"to out\nand", logfile, NOW)
    err.feed(b"to err\n", logfile, NOW)
    out.feed(b" more\n", logfile, NOW)
    logfile.close()
    assert NOW == b"2023-11-14T22:13:20.123456789Z"
    assert path.read_bytes().splitlines() == [
        NOW + b" stdout F to out",
        NOW + b" stderr F to err",
        NOW + b" stdout F and more",
    ]
    record = parse_record(NOW + b" stderr F to err")
    assert (record.text, record.time_ns, record.stream, record.partial) == (
        b"to err",
        1_700_000_000_123_456_789,
        "stderr",
        False,
    )
    # A line without the prefix (an older shim's) is taken as it is.
    assert parse_record(b"plain line") == parse_record(b"plain line").__class__(b"plain line")


def test_a_line_longer_than_64_kib_comes_in_pieces(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    logfile, stream = shim_log(path, max_bytes=10 * 1024 * 1024)
    long_line = b"x" * (logshim.MAX_LINE + 10)
    stream.feed(long_line[: logshim.MAX_LINE], logfile, NOW)  # no line end yet: one piece
    stream.feed(long_line[logshim.MAX_LINE :] + b"\nshort\n", logfile, NOW)
    logfile.close()
    chunk = read_after(path, "", 100)
    assert [(r.text, r.partial) for r in chunk.records] == [
        (long_line[: logshim.MAX_LINE], True),
        (long_line[logshim.MAX_LINE :], False),
        (b"short", False),
    ]
    assert last_lines(path, 3, 1 << 20) == long_line.decode() + "\nshort\n"
    # At most so many bytes of text: the oldest line given is cut at its front.
    assert last_lines(path, 3, 100) == "x" * 93 + "\nshort\n"


def test_the_last_lines_of_output_without_newlines_are_bounded_in_bytes(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    logfile, stream = shim_log(path, max_bytes=10 * 1024 * 1024)
    for _ in range(60):  # about 4 MB, not one line break
        stream.feed(b"y" * logshim.MAX_LINE, logfile, NOW)
    logfile.close()
    text = last_lines(path, 100, 48 * 1024)
    assert text == "y" * (48 * 1024)


def test_rotation_keeps_whole_lines_and_indexes_where_each_file_starts(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    logfile, stream = shim_log(path, max_bytes=HEAD * 4 + 40)
    for i in range(10):
        write_lines(logfile, stream, [f"line {i}"])
    logfile.close()
    stream_id, starts = logshim.read_index(str(path) + logshim.INDEX_SUFFIX) or ("", {})
    old, new = rotated(path).stat(), path.stat()
    assert starts == {new.st_ino: starts[old.st_ino] + old.st_size, old.st_ino: starts[old.st_ino]}
    assert starts[new.st_ino] + new.st_size == 10 * (HEAD + len("line 0") + 1)  # the whole stream
    with LogStream(path) as reader:
        assert reader.stream_id == stream_id
        kept = texts(reader.read(None).records)
    assert kept == [f"line {i}" for i in range(10 - len(kept), 10)] and len(kept) >= 4


# Text without line breaks of any kind.
LINE = st.text(st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp")), max_size=30)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    count=st.integers(0, 80),
    max_bytes=st.integers(16, 600),
    cuts=st.lists(st.integers(0, 4000), max_size=40),
    reads=st.lists(st.tuples(st.integers(0, 4000), st.integers(1, 7)), max_size=40),
    words=st.lists(LINE, min_size=1, max_size=5),
)
def test_a_reader_gets_every_line_once_and_counts_what_it_missed(
    tmp_path_factory: pytest.TempPathFactory,
    count: int,
    max_bytes: int,
    cuts: list[int],
    reads: list[tuple[int, int]],
    words: list[str],
) -> None:
    """However the output is cut into reads and however rarely the reader
    reads, it gets lines in order, never one twice, and ``lost`` counts
    exactly the bytes of the lines rotated away before it read them.

    The index is not synced to disk here (it rotates at nearly every line):
    durability is not what this checks, and syncs made it slow."""
    with mock.patch.object(logshim.os, "fsync", lambda fd: None):
        follow_while_writing(tmp_path_factory.mktemp("rot") / "c.log", count, max_bytes, cuts, reads, words)


def follow_while_writing(
    path: Path, count: int, max_bytes: int, cuts: list[int], reads: list[tuple[int, int]], words: list[str]
) -> None:
    lines = [f"{i} {words[i % len(words)]}" for i in range(count)]
    output = b"".join(f"{line}\n".encode() for line in lines)
    record_size = {line: HEAD + len(line.encode()) + 1 for line in lines}
    bounds = sorted({0, len(output), *(c for c in cuts if c < len(output))})
    read_at = {position: max_lines for position, max_lines in reads}
    logfile, stream = shim_log(path, max_bytes=max_bytes)
    got: list[str] = []
    lost = 0
    cursor = Cursor(logfile.stream_id, 0)  # the beginning of the stream

    def read(max_lines: int) -> bool:
        nonlocal cursor, lost
        with LogStream(path) as reader:
            chunk = reader.read(cursor, max_lines)
        assert not chunk.reset
        got.extend(texts(chunk.records))
        lost += chunk.lost
        cursor = chunk.cursor
        return chunk.more

    for start, end in itertools.pairwise(bounds):
        stream.feed(output[start:end], logfile, NOW)
        if start in read_at:
            read(read_at[start])
    stream.finish(logfile)
    logfile.close()
    while read(7):
        pass
    assert len(got) == len(set(got)), "a line was given twice"
    indexes = [int(line.split()[0]) for line in got]
    assert indexes == sorted(indexes)
    missed = [line for line in lines if line not in set(got)]
    assert lost == sum(record_size[line] for line in missed)
    assert not lines or got[-1] == lines[-1], "the newest line is always kept"


def test_a_new_shim_continues_the_stream_of_the_one_before(tmp_path: Path) -> None:
    """A container restarted (or its task made again): its new log shim
    appends to the same stream, so a cursor taken before goes on."""
    path = tmp_path / "c.log"
    logfile, stream = shim_log(path, max_bytes=HEAD * 3 + 30)
    write_lines(logfile, stream, ["a", "b", "c", "d"])
    logfile.close()
    first = read_after(path, "", 100)
    logfile, stream = shim_log(path, max_bytes=HEAD * 3 + 30)
    write_lines(logfile, stream, ["e", "f", "g", "h"])
    logfile.close()
    after = read_after(path, str(first.cursor), 100)
    assert texts(first.records) + texts(after.records) == list("abcdefgh")
    assert after.lost == 0 and not after.reset


def test_without_its_index_a_log_is_a_new_stream(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    logfile, stream = shim_log(path)
    write_lines(logfile, stream, ["a", "b"])
    logfile.close()
    before = read_after(path, "", 100)
    Path(str(path) + logshim.INDEX_SUFFIX).unlink()
    logfile, stream = shim_log(path)  # the index is gone: a new stream
    write_lines(logfile, stream, ["c"])
    logfile.close()
    after = read_after(path, str(before.cursor), 100)
    assert after.reset and texts(after.records) == ["a", "b", "c"]
    assert after.cursor.stream_id != before.cursor.stream_id


def test_a_rotation_cut_short_is_finished_by_the_next_shim(tmp_path: Path) -> None:
    """The shim killed between its renames: the new file is indexed under
    ``.new`` and the log has no current file; the next shim names it."""
    path = tmp_path / "c.log"
    logfile, stream = shim_log(path, max_bytes=HEAD + 10)
    write_lines(logfile, stream, ["a"])
    cursor = read_after(path, "", 100).cursor
    # What rotate() leaves when killed right after its first rename.
    pending = str(path) + ".new"
    fd = os.open(pending, os.O_WRONLY | os.O_CREAT, 0o640)
    logshim.write_index(
        logfile.index,
        logfile.stream_id,
        [(os.fstat(fd).st_ino, logfile.start + logfile.size), (logfile.inode, 0)],
    )
    os.close(fd)
    logfile.close()
    os.replace(path, rotated(path))
    logfile, stream = shim_log(path, max_bytes=HEAD + 10)
    write_lines(logfile, stream, ["b"])
    logfile.close()
    chunk = read_after(path, str(cursor), 100)
    assert texts(chunk.records) == ["b"] and chunk.lost == 0 and not chunk.reset
    assert not Path(pending).exists()


def test_logs_written_before_the_index_are_read_as_plain_lines(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    rotated(path).write_text("old 1\nold 2\n")
    path.write_text("new 1\n")
    chunk = read_after(path, "", 100)
    assert texts(chunk.records) == ["old 1", "old 2", "new 1"]
    assert chunk.cursor == Cursor(NO_STREAM, len("old 1\nold 2\nnew 1\n"))
    assert all(r.time_ns is None and r.stream == "" for r in chunk.records)
    assert last_lines(path, 2, 1 << 20) == "old 2\nnew 1\n"
    # Its next shim starts a stream of its own, where both files are kept.
    logfile, stream = shim_log(path)
    write_lines(logfile, stream, ["newer"])
    logfile.close()
    after = read_after(path, str(chunk.cursor), 100)
    assert after.reset and texts(after.records) == ["old 1", "old 2", "new 1", "newer"]


def test_the_newest_line_is_given_only_once_it_is_whole(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    logfile, stream = shim_log(path)
    write_lines(logfile, stream, ["whole"])
    os.write(logfile.fd, NOW + b" stdout F half of a li")  # a write still under way
    chunk = read_after(path, "", 100)
    assert texts(chunk.records) == ["whole"]
    os.write(logfile.fd, b"ne\n")
    chunk = read_after(path, str(chunk.cursor), 100)
    assert texts(chunk.records) == ["half of a line"]
    logfile.close()


def test_files_removed_by_hand(tmp_path: Path) -> None:
    """The log removed while the shim writes: it goes on (into the removed
    file, then a new one at its next rotation), and readers see what is there."""
    path = tmp_path / "c.log"
    logfile, stream = shim_log(path, max_bytes=HEAD * 2 + 20)
    write_lines(logfile, stream, ["a", "b"])
    read_a = read_after(path, "", 1).cursor
    read_all = read_after(path, "", 100).cursor
    for each in log_files(path):
        each.unlink(missing_ok=True)
    chunk = read_after(path, str(read_all), 100)
    assert chunk.records == [] and chunk.cursor == Cursor(NO_STREAM, 0) and chunk.reset
    write_lines(logfile, stream, ["c", "d", "e"])  # rotates: the removed file is not there to rename
    logfile.close()
    chunk = read_after(path, str(read_all), 100)
    assert texts(chunk.records) == ["c", "d", "e"] and chunk.lost == 0 and not chunk.reset
    chunk = read_after(path, str(read_a), 100)  # "b" went with the removed file
    assert texts(chunk.records) == ["c", "d", "e"] and chunk.lost == HEAD + 2
    assert last_lines(tmp_path / "other.log", 10, 1 << 20) == ""  # no log at all


@pytest.mark.parametrize(
    "text", ["x", "abc", ":1", "0:", "0:-1", "0:99999999999999999999", "a:1:2", "A:1", "0 :1"]
)
def test_a_cursor_no_read_gave_is_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(CursorError, match="not a cursor"):
        read_after(tmp_path / "c.log", text, 10)


def test_a_cursor_past_the_end_is_refused_once_the_end_is_known(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    logfile, stream = shim_log(path)
    write_lines(logfile, stream, ["a"])
    logfile.close()
    end = read_after(path, "", 10).cursor
    assert read_after(path, str(end), 10).records == []
    with pytest.raises(CursorError, match="past the end of the output"):
        read_after(path, f"{end.stream_id}:{end.offset + 1}", 10)
    # Another stream's cursor, however far: a reset, from the oldest kept.
    chunk = read_after(path, f"abc:{2**63 - 1}", 10)
    assert chunk.reset and texts(chunk.records) == ["a"]


def test_tails_by_count_and_by_time(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    logfile, stream = shim_log(path, max_bytes=HEAD * 5 + 50)
    times = [logshim.stamp(1_700_000_000_000_000_000 + i * 10**9) for i in range(12)]
    for i, at in enumerate(times):
        stream.feed(f"line {i}\n".encode(), logfile, at)
    os.write(logfile.fd, times[-1] + b" stdout F unfinish")
    kept = texts(read_after(path, "", 100).records)
    assert kept[-1] == "line 11" and len(kept) < 12  # some were rotated away
    assert texts(read_tail(path, 3, 0).records) == ["line 9", "line 10", "line 11"]
    assert texts(read_tail(path, -1, 0).records) == kept
    assert texts(read_tail(path, 1000, 0).records) == kept
    none = read_tail(path, 0, 0)
    assert none.records == [] and read_after(path, str(none.cursor), 10).records == []
    since = 1_700_000_000_000_000_000 + 10 * 10**9
    assert texts(read_tail(path, -1, since).records) == ["line 10", "line 11"]
    assert texts(read_tail(path, 1, since).records) == ["line 11"]
    assert read_tail(path, -1, since + 3600 * 10**9).records == []  # the future: nothing yet
    logfile.close()


def test_tails_read_backwards_past_their_block(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    logfile, stream = shim_log(path, max_bytes=10 * 1024 * 1024)
    lines = [f"{i:06d} {'x' * 1000}" for i in range(300)]  # 300 kB: several 64 kB blocks
    write_lines(logfile, stream, lines)
    logfile.close()
    assert texts(read_tail(path, 100, 0).records) == lines[-100:]
    assert last_lines(path, 2, 1 << 20) == "".join(f"{line}\n" for line in lines[-2:])
    chunk = read_after(path, "", 250)
    assert texts(chunk.records) == lines[:250] and chunk.more


def test_every_cursor_a_read_gave_is_taken_and_no_other_offset(tmp_path: Path) -> None:
    """A forged cursor into the middle of a line is refused; every cursor
    a read gives is taken: after a line break, at a rotated file's end
    without one, and after a piece of a line written without one."""
    path = tmp_path / "c.log"
    rotated(path).write_bytes(b"old 1\nh\xc3\xa9 2")  # a rotated file ending without a break
    endless = b"x" * (300 * 1024)
    path.write_bytes(b"new 1\n" + endless)
    given, cursor = set(), ""
    while True:
        chunk = read_after(path, cursor, 1)
        if not chunk.records:
            break
        cursor = str(chunk.cursor)
        given.add(chunk.cursor.offset)
    end = len(b"old 1\nh\xc3\xa9 2new 1\n") + len(endless)
    assert max(given) == end
    for offset in range(1, len(b"old 1\nh\xc3\xa9 2new 1\n") + 2):
        if offset in given:
            read_after(path, f"{NO_STREAM}:{offset}", 1)
        else:
            with pytest.raises(CursorError, match="middle of a line"):
                read_after(path, f"{NO_STREAM}:{offset}", 1)
