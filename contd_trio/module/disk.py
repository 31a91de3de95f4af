"""The daemon's own files under ``-root``: made and removed so that a disk
that fails (read-only, full, gone) is a caller's error naming the path and
the reason, never a bug.

Blocking: call these in a thread.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from pathlib import Path

from ..errors import StorageError


def storage_error(doing: str, exc: OSError) -> StorageError:
    """``exc`` as the caller's error: what the daemon was doing, the path
    the system refused, and why."""
    reason = exc.strerror or str(exc)
    where = f"{exc.filename}: " if exc.filename else ""
    return StorageError(f"cannot {doing}: {where}{reason}")


def prepare_files(doing: str, *files: Path) -> None:
    """Make the directories of ``files`` and the files themselves (empty if
    new, left as they are if not), so that what writes them later (the log
    shim, started by containerd) cannot fail on the daemon's disk.

    Raises:
        StorageError: the disk refused (``doing`` says for what).
    """
    try:
        for path in files:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o640))
    except OSError as exc:
        raise storage_error(doing, exc) from exc


def remove_files(paths: Iterable[Path]) -> list[OSError]:
    """Unlink every path (a missing one is fine); returns what the disk
    refused, having tried them all."""
    refused = []
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            refused.append(exc)
    return refused


def remove_directory_if_empty(directory: Path) -> list[OSError]:
    """Remove ``directory`` unless something is (again) in it, or it is
    gone; returns what the disk refused otherwise."""
    try:
        directory.rmdir()
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ENOTEMPTY, errno.EEXIST):
            return [exc]
    return []
