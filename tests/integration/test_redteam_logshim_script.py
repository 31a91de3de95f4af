"""Red-team of the log shim's executable (a /bin/sh script that closes the
ready pipe, then execs Python): run as containerd's runc shim runs it, from
paths with every character the shell treats specially, for a container and
for an exec's raw output."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from contd_trio.module.output import LOGSHIM_NAME, install_logshim
from tests.helpers import wait_until

#: Spaces, both quotes, $, a backtick command, a glob, a semicolon, a newline.
HOSTILE_NAME = "a b'c\"d$HOME`touch pwned`*;e\nf"


def _start_as_the_runc_shim_does(
    shim: Path, arguments: list[str]
) -> tuple[subprocess.Popen[bytes], int, int, int]:
    """The shim with the container's stdout on fd 3, stderr on fd 4 and the
    ready pipe on fd 5; returns it and our ends of the three pipes."""
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    ready_read, ready_write = os.pipe()

    def fds_3_to_5() -> None:
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in (out_read, err_read, ready_write)]
        for source, target in zip(high, (3, 4, 5), strict=True):
            os.dup2(source, target)

    process = subprocess.Popen(
        [str(shim), *arguments],
        close_fds=True,
        pass_fds=(3, 4, 5),
        preexec_fn=fds_3_to_5,
        stderr=subprocess.PIPE,
        cwd=shim.parent,
    )
    for fd in (out_read, err_read, ready_write):
        os.close(fd)
    return process, out_write, err_write, ready_read


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
    process, out_write, err_write, ready_read = _start_as_the_runc_shim_does(shim, arguments)
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
