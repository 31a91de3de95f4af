"""The installed log shim, run as containerd's runc shim runs it: the
container's stdout on fd 3, its stderr on fd 4, a pipe on fd 5 to say it is
ready, and no site-packages."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

from contd_trio.module.output import install_logshim


def test_the_installed_shim_runs_without_site_packages(tmp_path: Path) -> None:
    shim = install_logshim(tmp_path / "bin", python=sys.executable)
    # Python imports sitecustomize through the site module only: with -S it never runs.
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    marker = tmp_path / "site-was-imported"
    (hooks / "sitecustomize.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    log = tmp_path / "c.log"
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    ready_read, ready_write = os.pipe()

    def as_the_runc_shim_does() -> None:
        # Out of the way first: the pipes may themselves be fds 3 to 5.
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in (out_read, err_read, ready_write)]
        for source, target in zip(high, (3, 4, 5), strict=True):
            os.dup2(source, target)  # inheritable

    process = subprocess.Popen(
        [str(shim), "--log", str(log), "--max-bytes", "4096"],
        close_fds=False,
        preexec_fn=as_the_runc_shim_does,
        env={**os.environ, "PYTHONPATH": str(hooks)},
        stderr=subprocess.PIPE,
    )
    try:
        for fd in (out_read, err_read, ready_write):
            os.close(fd)
        assert os.read(ready_read, 1) == b"1"  # ready: the container may start
        os.write(out_write, b"to stdout\n")
        os.write(err_write, b"to stderr\npartial")
        os.close(out_write)
        os.close(err_write)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(ready_read)
    assert process.returncode == 0, stderr.decode()
    assert sorted(line.split(" ", 1)[1] for line in log.read_text().splitlines()) == [
        "stderr F partial",
        "stderr F to stderr",
        "stdout F to stdout",
    ]
    assert Path(f"{log}.idx").read_text().startswith("v1 ")
    assert not marker.exists(), "the shim ran the site module (and so site-packages)"
