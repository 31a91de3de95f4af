"""The installed log shim, run as containerd's runc shim runs it: the
container's stdout on fd 3, its stderr on fd 4, a pipe on fd 5 to say it is
ready, and no site-packages."""

from __future__ import annotations

import os
import select
import socket
import sys
from pathlib import Path

from contd_trio.module.output import install_logshim
from tests.helpers import start_log_shim


def test_the_installed_shim_runs_without_site_packages(tmp_path: Path) -> None:
    shim = install_logshim(tmp_path / "bin", python=sys.executable)
    # Python imports sitecustomize through the site module only: with -S it never runs.
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    marker = tmp_path / "site-was-imported"
    (hooks / "sitecustomize.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    log = tmp_path / "c.log"
    process, out_write, err_write, ready_read = start_log_shim(
        shim, ["--log", str(log), "--max-bytes", "4096"], env={**os.environ, "PYTHONPATH": str(hooks)}
    )
    try:
        # Ready (the pipe closed before Python starts): the container may start.
        assert os.read(ready_read, 1) == b""
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


def test_a_shim_that_cannot_join_the_containers_network_forwards_nothing(tmp_path: Path) -> None:
    """Never from the host's network instead: a backend on the host's
    loopback is not connected to, the lines stay in the log file, and the
    shim says why."""
    shim = install_logshim(tmp_path / "bin", python=sys.executable)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    url = f"redis://127.0.0.1:{listener.getsockname()[1]}/out"
    not_a_netns = tmp_path / "not-a-netns"
    not_a_netns.write_text("")
    log = tmp_path / "c.log"
    arguments = ["--log", str(log), "--stdout.0", url, "--netns", str(not_a_netns)]
    process, out_write, err_write, ready_read = start_log_shim(shim, arguments)
    try:
        assert os.read(ready_read, 1) == b""  # ready: closed by the executable
        os.write(out_write, b"hello\n")
        os.close(out_write)
        os.close(err_write)
        _, stderr = process.communicate(timeout=30)  # it has given its lines every chance by now
        reached, _, _ = select.select([listener], [], [], 0)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(ready_read)
        listener.close()
    assert process.returncode == 0, stderr.decode()
    assert not reached, "the shim connected from the host's network"
    assert log.read_text().endswith(" stdout F hello\n")
    assert "cannot join the container's network" in stderr.decode()
