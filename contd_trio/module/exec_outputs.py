"""The output files of exec processes, and which exec processes this
daemon runs right now.

An exec's files (``<root>/exec/<ns>/<id>/<exec id>.stdout`` and
``.stderr``, see :mod:`.paths`) are made before containerd hears of the
process and removed only after it is gone, so they are also the record of
the exec processes a daemon started: one whose files are on disk and that
this daemon is not running was started by a daemon before it, cut off
(killed) mid-Exec. Reconciliation removes those (:mod:`.stray_execs`).
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

from .. import logs
from .disk import prepare_files, remove_directory_if_empty, remove_files
from .locks import KeyedLocks
from .logfiles import rotated
from .paths import EXEC_STREAMS, Paths
from .validate import is_identifier

log = logging.getLogger("contd.exec")

#: What every exec id the daemon makes starts with: what tells its exec
#: processes from those somebody else started in a container (``ctr task exec``).
EXEC_ID_PREFIX = "contd-exec-"
_EXEC_ID = re.compile(re.escape(EXEC_ID_PREFIX) + r"[0-9a-f]{12}")
_OUTPUT_FILE = re.compile(rf"({_EXEC_ID.pattern})\.(?:{'|'.join(EXEC_STREAMS)})(?:\.1)?")

#: An exec process: (namespace, container id, exec id).
ExecKey = tuple[str, str, str]


def is_ours(exec_id: str) -> bool:
    """Whether ``exec_id`` is one the daemon makes."""
    return _EXEC_ID.fullmatch(exec_id) is not None


@dataclass(frozen=True)
class ExecFiles:
    exec_id: str
    stdout: Path
    stderr: Path


class ExecOutputs:
    """Args:
    paths: the daemon's files.
    """

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        #: The exec ids this daemon is running, from before their files are
        #: made until after they are removed.
        self.running: set[str] = set()
        # A container's directory is made for an exec and removed when the
        # last one is done: never in between for another.
        self._directories = KeyedLocks()

    @asynccontextmanager
    async def reserve(self, namespace: str, container_id: str) -> AsyncIterator[ExecFiles]:
        """A new exec id and its output files, made empty; the files are
        removed when the block ends, shielded (never raising).

        Raises:
            StorageError: the daemon's disk refused the files.
        """
        exec_id = f"{EXEC_ID_PREFIX}{uuid.uuid4().hex[:12]}"
        files = ExecFiles(
            exec_id,
            self.paths.exec_output(namespace, container_id, exec_id, "stdout"),
            self.paths.exec_output(namespace, container_id, exec_id, "stderr"),
        )
        self.running.add(exec_id)
        try:
            async with self._directories.hold((namespace, container_id)):
                await trio.to_thread.run_sync(
                    prepare_files, "write an exec's output", files.stdout, files.stderr
                )
            yield files
        finally:
            with trio.CancelScope(shield=True):
                await self.remove(namespace, container_id, exec_id)
            self.running.discard(exec_id)

    async def remove(self, namespace: str, container_id: str, exec_id: str) -> None:
        """Remove an exec's output files (and the container's directory once
        empty); what the disk refuses is logged, never raised."""
        directory = self.paths.exec_dir(namespace, container_id)
        files = [self.paths.exec_output(namespace, container_id, exec_id, s) for s in EXEC_STREAMS]

        def remove() -> list[OSError]:
            return remove_files([*files, *map(rotated, files)]) + remove_directory_if_empty(directory)

        async with self._directories.hold((namespace, container_id)):
            refused = await trio.to_thread.run_sync(remove)
        for exc in refused:
            logs.event(
                log,
                logging.WARNING,
                "could not remove an exec's output",
                ns=namespace,
                id=container_id,
                path=exc.filename,
                error=exc.strerror,
            )

    def on_disk(self) -> set[ExecKey]:
        """Every exec process with output files on disk, running or not
        (blocking). Directories that are not a namespace's and a
        container's are passed over."""
        found: set[ExecKey] = set()
        for namespace_dir in _directories(self.paths.exec_root):
            for container_dir in _directories(namespace_dir):
                for path in _entries(container_dir):
                    match = _OUTPUT_FILE.fullmatch(path.name)
                    if match:
                        found.add((namespace_dir.name, container_dir.name, match.group(1)))
        return found


def _entries(directory: Path) -> list[Path]:
    try:
        return list(directory.iterdir())
    except OSError:
        return []  # gone meanwhile, or unreadable: nothing to go by


def _directories(directory: Path) -> list[Path]:
    return [p for p in _entries(directory) if is_identifier(p.name) and p.is_dir()]
