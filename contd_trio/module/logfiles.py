"""Container log files and exec output files: their names, and the end of
an exec's output (blocking: call from a thread). Reading a container's log
as a stream is :mod:`.logstream`'s."""

from __future__ import annotations

from pathlib import Path


def rotated(path: Path) -> Path:
    """The one older file kept when a log is rotated."""
    return path.with_name(path.name + ".1")


def log_files(path: Path) -> list[Path]:
    """Every file of a container's log: the log, its rotated file, the log
    shim's index, and what a rotation or an index update cut short leaves."""
    names = [".1", ".new", ".idx", ".idx.tmp"]
    return [path, *(path.with_name(path.name + suffix) for suffix in names)]


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
