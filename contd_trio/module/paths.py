"""Where the daemon keeps its files under ``-root``.

* ``logs/<ns>/<id>.log`` (and ``.log.1``): a container's output.
* ``exec/<ns>/<id>/<exec id>.stdout`` and ``.stderr`` (and their ``.1``):
  the output of an exec process while it runs, in a directory of the
  container's own, so that no container's name matches another's files
  (``a`` and ``a.exec-b``).
* ``exec/<ns>/<id>.<exec id>.<stream>``: where earlier versions kept exec
  output; still removed with their container.
* ``bin/contd-logshim``: the log shim.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .validate import log_path, validate_identifier

#: The streams of an exec process, each a file of its own.
EXEC_STREAMS = ("stdout", "stderr")


@dataclass(frozen=True)
class Paths:
    root: Path

    def log_file(self, namespace: str, container_id: str) -> Path:
        return log_path(self.root, namespace, container_id)

    @property
    def exec_root(self) -> Path:
        """Where every exec output directory is, one per namespace."""
        return self.root / "exec"

    def exec_dir(self, namespace: str, container_id: str) -> Path:
        """The directory of a container's exec output files."""
        validate_identifier("namespace", namespace)
        validate_identifier("container name", container_id)
        return self.exec_root / namespace / container_id

    def exec_output(self, namespace: str, container_id: str, exec_id: str, stream: str) -> Path:
        """Where an exec process's ``stream`` ("stdout" or "stderr") is written."""
        return self.exec_dir(namespace, container_id) / f"{exec_id}.{stream}"

    def exec_outputs(self, namespace: str, container_id: str) -> list[Path]:
        """Output files of a container's exec processes still on disk, in
        its directory and in the earlier layout (blocking)."""
        directory = self.exec_dir(namespace, container_id)
        found = [p for p in directory.iterdir() if not p.is_dir()] if directory.is_dir() else []
        # Earlier layout: exactly "<id>.exec-<12 hex>.<stream>[.1]", so that
        # the files of "a.exec-b" are never taken for those of "a".
        legacy = re.compile(re.escape(container_id) + r"\.exec-[0-9a-f]{12}\.[a-z]+(\.1)?")
        flat = directory.parent
        if flat.is_dir():
            found += [p for p in flat.iterdir() if legacy.fullmatch(p.name) and not p.is_dir()]
        return sorted(found)
