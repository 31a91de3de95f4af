"""Red-team of the log shim's executable (a /bin/sh script that closes the
ready pipe, then execs Python): run as containerd's runc shim runs it, from
paths with every character the shell treats specially, for a container and
for an exec's raw output."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from contd_trio.module.output import LOGSHIM_NAME, install_logshim
from tests.helpers import start_log_shim, wait_until

#: Spaces, both quotes, $, a backtick command, a glob, a semicolon, a newline.
HOSTILE_NAME = "a b'c\"d$HOME`touch pwned`*;e\nf"


def _argv(pid: int) -> list[bytes]:
    """What ps shows of a process."""
    return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")


@pytest.mark.parametrize("raw", [False, True], ids=["container", "exec raw"])
async def test_the_shim_runs_from_hostile_paths_and_writes_nothing_stray(tmp_path: Path, raw: bool) -> None:
    """Installed under a directory and run by a Python whose paths hold
    shell metacharacters: it says ready, runs, shows as contd-logshim, writes
    exactly the output (nothing of the ready byte in a file that took fd 5),
    and the shell ran nothing of the names."""
    root = tmp_path / HOSTILE_NAME
    root.mkdir()
    python = root / "py"
    python.symlink_to(sys.executable)
    shim = install_logshim(root / "bin", python=str(python))
    log = root / "out.log"
    err_log = root / "err.log"
    arguments = ["--log", str(log), "--max-bytes", "65536"]
    if raw:
        arguments += ["--stderr-log", str(err_log), "--raw", "1"]
    process, out_write, err_write, ready_read = start_log_shim(shim, arguments, cwd=shim.parent)
    try:
        assert os.read(ready_read, 1) == b""  # closed by the script: ready
        os.write(out_write, b"out-1\n")
        if raw:
            # Python has started (it wrote the file): what ps shows is the shim's name.
            await wait_until(lambda: log.exists() and log.read_bytes() == b"out-1\n")
            argv = _argv(process.pid)
            assert any(arg.endswith(LOGSHIM_NAME.encode()) for arg in argv), argv
        os.write(err_write, b"err-1\n")
        os.close(out_write)
        os.close(err_write)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(ready_read)
    assert process.returncode == 0, stderr.decode()
    if raw:
        assert log.read_bytes() == b"out-1\n"
        assert err_log.read_bytes() == b"err-1\n"
    else:
        assert sorted(line.split(" ", 1)[1] for line in log.read_text().splitlines()) == [
            "stderr F err-1",
            "stdout F out-1",
        ]
    assert not (shim.parent / "pwned").exists() and not (tmp_path / "pwned").exists()
