"""A container's output as one stream of bytes over its log files:
cursors, chunks of lines and tails (blocking: call from a thread).

The log shim (:mod:`contd_trio.logshim`) is the only writer of
``<id>.log``; it rotates it to ``<id>.log.1`` and records, in the index
``<id>.log.idx``, where each file (by inode) starts in the container's
output stream, and the stream's random id. A cursor is ``<stream id>:<offset>``:
an absolute byte offset in that stream, which names the same line
whatever was rotated, and whether the daemon or the container restarted
meanwhile. So a reader continues exactly where it stopped: no line is given
twice, and lines rotated away before they were read are counted as lost,
never skipped silently.

Files are opened first and the index read afterwards: the shim indexes a
file before it takes the log's name, and a file's start never changes, so
every file held is in the index read after it (a file that is not is
ignored). Only whole lines are given: the end of the newest file may be a
line still being written.

Lines are CRI log lines (``<time> <stream> <F|P> <text>``); a line without
that prefix (written before the shim kept times) is taken as it is.
"""

from __future__ import annotations

import calendar
import os
import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ..logshim import INDEX_SUFFIX, read_index, stamp
from .logfiles import rotated

#: Lines a chunk holds unless the caller asks for fewer; the most it may ask.
CHUNK_LINES = 1000
MAX_CHUNK_LINES = 10_000
#: Bytes of log a chunk holds at most (what an answer carries stays bounded).
CHUNK_BYTES = 1024 * 1024
#: The id of a stream without an index: a log written before the shim kept
#: one, or no log at all yet.
NO_STREAM = "0"
_BLOCK = 64 * 1024
#: The newest file may end with a line still being written; past this size
#: such an end is a piece of a line written without an end (an old shim's).
_UNFINISHED_LINE = 256 * 1024
_MAX_OFFSET = 2**63 - 1
_STAMP_WIDTH = len(stamp(0))
_CURSOR = re.compile(r"([0-9a-z]{1,32}):([0-9]{1,19})")
_CRI = re.compile(rb"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?Z (stdout|stderr) ([PF]) ")


class CursorError(ValueError):
    """A cursor that no read of this log gave (its words say why)."""


@dataclass(frozen=True)
class Cursor:
    stream_id: str
    offset: int

    def __str__(self) -> str:
        return f"{self.stream_id}:{self.offset}"

    @classmethod
    def parse(cls, text: str) -> Cursor:
        """Raises: CursorError."""
        match = _CURSOR.fullmatch(text)
        if match is None or int(match[2]) > _MAX_OFFSET:
            raise CursorError("it is not a cursor a read of this log gave")
        return cls(match[1], int(match[2]))


@dataclass(frozen=True)
class Record:
    """One line of output: its text (no line break), when the shim read it
    (ns since the epoch; None if unknown), its stream ("" if unknown), and
    whether it is a piece of a longer line."""

    text: bytes
    time_ns: int | None = None
    stream: str = ""
    partial: bool = False


@dataclass
class Chunk:
    records: list[Record] = field(default_factory=list)
    cursor: Cursor = Cursor(NO_STREAM, 0)
    more: bool = False
    lost: int = 0
    reset: bool = False


def parse_record(line: bytes) -> Record:
    """A line of the log file (without its line break)."""
    match = _CRI.match(line)
    if match is None:
        return Record(line)
    year, month, day, hour, minute, second = (int(match[i]) for i in range(1, 7))
    try:
        seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    except (ValueError, OverflowError):
        return Record(line)
    fraction = (match[7] or b"").ljust(9, b"0")
    return Record(
        line[match.end() :],
        seconds * 1_000_000_000 + int(fraction),
        match[8].decode(),
        match[9] == b"P",
    )


@dataclass
class _Segment:
    """One log file: where it starts in the stream, its size when opened."""

    start: int
    size: int
    file: BinaryIO
    newest: bool = False

    @property
    def end(self) -> int:
        return self.start + self.size


class LogStream:
    """The kept output of one container, as it was when opened (the files
    keep growing; a later read sees more)."""

    def __init__(self, log_path: Path) -> None:
        self.stream_id = NO_STREAM
        self.segments: list[_Segment] = []
        #: Whether the end is known for sure: the newest file is open.
        self.end_known = False
        opened: dict[int, tuple[BinaryIO, int]] = {}
        names: dict[int, Path] = {}
        for path in (log_path, rotated(log_path)):
            try:
                file: BinaryIO = open(path, "rb")  # noqa: SIM115 (closed by close())
            except (FileNotFoundError, NotADirectoryError):
                continue
            stat = _fstat(file)
            if stat[0] in opened:  # rotated between the two opens: the same file
                file.close()
                continue
            opened[stat[0]] = (file, stat[1])
            names[stat[0]] = path
        index = read_index(str(log_path) + INDEX_SUFFIX)
        if index is None:
            # No index: a log from before the shim kept one (or none at all).
            starts = {}
            old = next((i for i, p in names.items() if p != log_path), None)
            current = next((i for i, p in names.items() if p == log_path), None)
            if old is not None:
                starts[old] = 0
            if current is not None:
                starts[current] = opened[old][1] if old is not None else 0
            newest = current
        else:
            self.stream_id, starts = index
            newest = max(starts, key=starts.__getitem__) if starts else None
        for inode, (file, size) in opened.items():
            if inode in starts:
                self.segments.append(_Segment(starts[inode], size, file, inode == newest))
            else:
                file.close()  # not in the index: not part of this stream
        self.segments.sort(key=lambda s: s.start)
        self.end_known = any(s.newest for s in self.segments)

    def __enter__(self) -> LogStream:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        for segment in self.segments:
            segment.file.close()

    @property
    def oldest(self) -> int:
        """Where the oldest kept byte is in the stream."""
        return self.segments[0].start if self.segments else 0

    @property
    def end(self) -> int:
        return max((s.end for s in self.segments), default=0)

    def cursor(self, offset: int) -> Cursor:
        return Cursor(self.stream_id, offset)

    # -- reading forwards ------------------------------------------------------------------

    def read(
        self, cursor: Cursor | None, max_lines: int = CHUNK_LINES, max_bytes: int = CHUNK_BYTES
    ) -> Chunk:
        """The lines after ``cursor`` (None: from the oldest kept), at most
        ``max_lines`` of them and about ``max_bytes`` of log (always at
        least one line when there is one).

        Raises:
            CursorError: a cursor of this stream past its end.
        """
        chunk = Chunk()
        if cursor is None or (cursor.stream_id == NO_STREAM and cursor.offset == 0):
            position = self.oldest
        elif cursor.stream_id != self.stream_id:
            chunk.reset = True
            position = self.oldest
        else:
            if self.end_known and cursor.offset > self.end:
                raise CursorError(f"it is past the end of the output ({self.end} bytes so far)")
            if not self._starts_line(cursor.offset):
                raise CursorError("it points into the middle of a line: no read of this log gave it")
            position = cursor.offset
        if position < self.oldest:
            chunk.lost, position = self.oldest - position, self.oldest
        used = 0
        lines = self._lines_from(position)
        for start, raw, end in lines:
            if len(chunk.records) >= max_lines or (chunk.records and used + end - start > max_bytes):
                chunk.more = True
                break
            if start > position:  # a gap: a file between that is no longer there
                chunk.lost += start - position
            chunk.records.append(parse_record(raw))
            used += end - start
            position = end
        lines.close()
        chunk.cursor = self.cursor(position)
        return chunk

    def _starts_line(self, offset: int) -> bool:
        """Whether a chunk could have ended at ``offset``: a file's start or
        end, right after a line break, or after a piece of a line written
        without one (what is no longer kept cannot be checked: it is lost)."""
        for segment in self.segments:
            if offset == segment.start or (offset == segment.end and not segment.newest):
                return True
        for segment in self.segments:
            if segment.start < offset <= segment.end:
                before = offset - segment.start
                segment.file.seek(before - 1)
                if segment.file.read(1) == b"\n":
                    return True
                window = min(before, _UNFINISHED_LINE + 1)
                segment.file.seek(before - window)
                return window > _UNFINISHED_LINE and b"\n" not in segment.file.read(window)
        return True

    def _lines_from(self, position: int) -> Generator[tuple[int, bytes, int], None, None]:
        """(start, line, end) of every whole line from ``position`` on."""
        for segment in self.segments:
            if position >= segment.end:
                continue
            position = max(position, segment.start)
            segment.file.seek(position - segment.start)
            left = segment.end - position
            buffer = b""
            while left > 0:
                block = segment.file.read(min(_BLOCK, left))
                if not block:
                    break
                left -= len(block)
                buffer += block
                taken = 0
                while (newline := buffer.find(b"\n", taken)) >= 0:
                    yield position, buffer[taken:newline], position + newline - taken + 1
                    position += newline - taken + 1
                    taken = newline + 1
                buffer = buffer[taken:]
                if len(buffer) > _UNFINISHED_LINE:  # a piece an old shim wrote without an end
                    yield position, buffer, position + len(buffer)
                    position += len(buffer)
                    buffer = b""
            if buffer:
                if segment.newest:
                    return  # its last line, still being written
                # A rotated file that ends without a line break: that piece is a line.
                yield position, buffer, position + len(buffer)
                position += len(buffer)

    # -- reading backwards ----------------------------------------------------------------------

    def tail_start(self, lines: int, since_ns: int = 0) -> int:
        """Where the last ``lines`` lines start (< 0: every line kept), or
        the first line read at or after ``since_ns`` (0: any), whichever
        comes later."""
        start = self._whole_end()
        if lines == 0:
            return start
        # The shim's times have one width, so as bytes they sort as times do.
        since = stamp(since_ns) if since_ns else b""
        for count, (offset, raw) in enumerate(self._lines_backwards()):
            if 0 < lines <= count:
                break
            if since and not (raw[_STAMP_WIDTH : _STAMP_WIDTH + 1] == b" " and raw[:_STAMP_WIDTH] >= since):
                break  # older (or without a time: older still)
            start = offset
        return start

    def _whole_end(self) -> int:
        """The end of the last whole line."""
        for segment in reversed(self.segments):
            if not segment.newest:
                return segment.end
            end = _last_line_end(segment)
            if end is not None:
                return segment.start + end
            if segment is self.segments[0]:
                return segment.start
        return self.oldest

    def _lines_backwards(self) -> Iterator[tuple[int, bytes]]:
        """(start, line) of every whole line, the newest first."""
        for segment in reversed(self.segments):
            end = _last_line_end(segment) if segment.newest else segment.size
            if end is None:
                continue
            file = segment.file
            position = end
            carry = b""  # a line whose beginning is not read yet
            while position > 0:
                begin = max(0, position - _BLOCK)
                file.seek(begin)
                data = file.read(position - begin) + carry
                position = begin
                if begin > 0:
                    first = data.find(b"\n")
                    if first < 0 and len(data) <= _UNFINISHED_LINE:
                        carry = data
                        continue
                    head, body = (data[: first + 1], data[first + 1 :]) if first >= 0 else (b"", data)
                else:
                    head, body = b"", data
                body_start = segment.start + begin + len(head)
                yield from _reversed_lines(body, body_start)
                carry = head


def _reversed_lines(body: bytes, body_start: int) -> Iterator[tuple[int, bytes]]:
    """The lines of ``body`` (whole lines; the last may lack its break), last first."""
    end = len(body)
    if body.endswith(b"\n"):
        end -= 1
    while end >= 0 and body:
        newline = body.rfind(b"\n", 0, end)
        yield body_start + newline + 1, body[newline + 1 : end]
        if newline < 0:
            return
        end = newline


def _last_line_end(segment: _Segment) -> int | None:
    """Where the last line break of the newest file ends (None: none yet);
    a line still being written comes after it."""
    file = segment.file
    position = segment.size
    while position > 0:
        begin = max(0, position - _BLOCK)
        file.seek(begin)
        block = file.read(position - begin)
        newline = block.rfind(b"\n")
        if newline >= 0:
            return begin + newline + 1
        if segment.size - begin > _UNFINISHED_LINE:
            return segment.size  # no break for that long: a piece written without one
        position = begin
    return None


def _fstat(file: BinaryIO) -> tuple[int, int]:
    stat = os.fstat(file.fileno())
    return stat.st_ino, stat.st_size


# -- what the module calls --------------------------------------------------------------------


def read_after(log_path: Path, cursor: str, max_lines: int) -> Chunk:
    """LogsFrom: the lines after ``cursor`` ("" from the oldest kept).

    Raises:
        CursorError: the cursor is not one a read gave, or past the end.
    """
    parsed = Cursor.parse(cursor) if cursor else None
    with LogStream(log_path) as stream:
        return stream.read(parsed, max_lines)


def read_tail(log_path: Path, lines: int, since_ns: int) -> Chunk:
    """LogsTail: the last ``lines`` lines (< 0: all kept), or those read
    at or after ``since_ns``, whichever are fewer; one chunk of them."""
    with LogStream(log_path) as stream:
        start = stream.tail_start(lines, since_ns)
        return stream.read(stream.cursor(start))


def last_lines(log_path: Path, count: int, max_bytes: int) -> str:
    """The last ``count`` lines as text, as 0-OS's Logs gives them (a long
    line's pieces joined again), and at most ``max_bytes`` of it: the oldest
    line there is cut at its front. Only that much of the log is read."""
    texts: list[bytes] = []
    used = 0
    with LogStream(log_path) as stream:
        for number, (_, raw) in enumerate(stream._lines_backwards()):
            if number >= count or used >= max_bytes:
                break
            record = parse_record(raw)
            text = record.text if record.partial else record.text + b"\n"
            text = text[max(0, len(text) - (max_bytes - used)) :]
            texts.append(text)
            used += len(text)
    return b"".join(reversed(texts)).decode("utf-8", "replace")
