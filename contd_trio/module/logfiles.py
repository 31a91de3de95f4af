"""Reading container log files (blocking: call from a thread)."""

from __future__ import annotations

import collections
from pathlib import Path

_CHUNK = 64 * 1024


def rotated(path: Path) -> Path:
    """The one older file kept when a log is rotated."""
    return path.with_name(path.name + ".1")


def tail_lines(path: Path, count: int) -> list[str]:
    """The last ``count`` lines of a log (reaching into its rotated file when
    the current one is short), each with its newline; missing files are empty."""
    lines = _tail(path, count)
    if len(lines) < count:
        lines = _tail(rotated(path), count - len(lines)) + lines
    return lines


def _tail(path: Path, count: int) -> list[str]:
    if count <= 0:
        return []
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            end = f.tell()
            data = b""
            # Read backwards in chunks until enough newlines are in hand.
            while end > 0 and data.count(b"\n") <= count:
                start = max(0, end - _CHUNK)
                f.seek(start)
                data = f.read(end - start) + data
                end = start
    except FileNotFoundError:
        return []
    text = data.decode("utf-8", "replace")
    kept = collections.deque(text.splitlines(keepends=True), maxlen=count)
    return list(kept)


def tail_bytes(path: Path, limit: int) -> tuple[bytes, bool]:
    """The last ``limit`` bytes written to a log (reaching into its rotated
    file), and whether anything before them is missing; missing files are
    empty."""
    data = b""
    lost = False
    for part in (rotated(path), path):
        try:
            with open(part, "rb") as f:
                f.seek(0, 2)
                size = f.tell()
                f.seek(max(0, size - limit))
                lost = lost or size > limit
                data += f.read()
        except FileNotFoundError:
            continue
    if len(data) > limit:
        data, lost = data[-limit:], True
    return data, lost
