"""Where a container's output goes: the log shim and its stdio URI.

Design (measured, see README "Logs"): the runc shim starts our log shim
(``contd_trio/logshim.py``) per task through a ``binary://`` URI rather than
writing a ``file://`` the daemon would rotate and forward from saved
offsets. The log shim is the file's only writer, so it rotates between
lines without losing any, and it outlives the daemon, so neither logging
nor forwarding depends on the daemon being up.
"""

from __future__ import annotations

import contextlib
import os
import py_compile
import shlex
import sys
from collections.abc import Sequence
from importlib.util import cache_from_source
from pathlib import Path
from urllib.parse import quote, urlencode

from ..logshim import READY_SENT_ENV
from .backends import LOG_BACKENDS
from .types import Logs

LOGSHIM_NAME = "contd-logshim"
_SOURCE = Path(__file__).resolve().parent.parent / "logshim.py"
#: The shim's code as installed beside its executable (see install_logshim).
_MODULE = "contd_logshim"


def install_logshim(bin_dir: Path, python: str = sys.executable) -> Path:
    """Install the log shim under ``bin_dir`` (files replaced atomically when
    they changed); returns the path of its executable.

    The shim starts on the critical path of every Run: containerd's runc
    shim waits until fd 5 is written or closed before runc creates the
    container. The executable is a shell script that closes fd 5 first, then
    starts Python: the pipes on fds 3 and 4 hold the container's output until
    the shim reads them, and a shim that fails to start would have ended the
    wait just the same. That takes Python's start-up (7 ms unloaded, 14 ms
    of each Run under load) off the Run.

    Python runs with ``-S``: the standard library only, no site-packages, so
    each shim stays small. Under ``bin_dir/python`` it runs a two-line script
    named like the executable (what ``ps`` shows) that imports the shim's
    code, installed beside it as a module with its bytecode compiled here (a
    script is compiled from source at every start).
    """
    code_dir = bin_dir / "python"
    code_dir.mkdir(parents=True, exist_ok=True)
    module = code_dir / f"{_MODULE}.py"
    if _replace(module, _SOURCE.read_bytes(), 0o644) or not Path(cache_from_source(str(module))).exists():
        with contextlib.suppress(OSError, py_compile.PyCompileError):
            # Only a cache: without it the shim compiles the module itself.
            py_compile.compile(str(module), doraise=True)
    main = code_dir / LOGSHIM_NAME
    _replace(main, f"import sys\n\nimport {_MODULE}\n\nsys.exit({_MODULE}.main())\n".encode(), 0o644)
    target = bin_dir / LOGSHIM_NAME
    script = (
        "#!/bin/sh\n"
        "# Ready: containerd may create the container while Python starts.\n"
        "exec 5>&-\n"
        f'{READY_SENT_ENV}=1 exec {shlex.quote(python)} -S {shlex.quote(str(main))} "$@"\n'
    )
    _replace(target, script.encode(), 0o755)
    return target


def _replace(target: Path, content: bytes, mode: int) -> bool:
    """Write ``content`` to ``target`` atomically unless it holds it already;
    returns whether it wrote."""
    if target.exists() and target.read_bytes() == content:
        return False
    staging = target.with_name(f".{target.name}.{os.getpid()}")
    staging.write_bytes(content)
    staging.chmod(mode)
    os.replace(staging, target)
    return True


def task_output_uri(
    shim: Path, log_file: Path, max_bytes: int, backends: Sequence[Logs], *, netns: str = ""
) -> str:
    """The stdio URI (for both stdout and stderr) of a container's task.

    ``netns``: the container's network namespace (a path); with backends,
    the log shim joins it before it connects to any, so a tenant reaches
    from its log backends only what its own network reaches."""
    args: dict[str, str] = {"--log": str(log_file), "--max-bytes": str(max_bytes)}
    for index, backend in enumerate(backends):
        kind = LOG_BACKENDS.get(backend.type)
        if kind is not None:  # validation refused unknown types; an old spec may hold one
            args.update(kind.shim_args(index, backend))
    if len(args) > 2:
        args["--netns"] = netns
    return f"binary://{quote(str(shim))}?{urlencode(args)}"


def exec_output_uri(shim: Path, stdout_file: Path, stderr_file: Path, max_bytes: int) -> str:
    """The stdio URI of an exec process: the log shim writes its stdout and
    stderr apart, as they come, each bounded to about twice ``max_bytes``
    on disk (it rotates, keeping one old file)."""
    args = {
        "--log": str(stdout_file),
        "--stderr-log": str(stderr_file),
        "--max-bytes": str(max_bytes),
        "--raw": "1",
    }
    return f"binary://{quote(str(shim))}?{urlencode(args)}"
