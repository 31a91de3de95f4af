"""``contd`` as zinit runs it: a real process on a real Redis."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import trio

from contd_trio.zbus.client import open_client
from tools import services


async def test_contd_serves_its_status_and_stops_on_sigterm(
    broker: str, containerd: services.ContainerdService, tmp_path: Path
) -> None:
    log_path = tmp_path / "contd.log"
    with (
        open(log_path, "w") as log,
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "contd_trio",
                "-broker",
                broker,
                "-root",
                str(tmp_path / "root"),
                "-containerd",
                str(containerd.address),
            ],
            stderr=log,
        ) as daemon,
    ):
        try:
            async with open_client(broker) as client:
                status = await client.status("container", timeout=30)
            assert len(status.workers) == 16
            assert {w.state for w in status.workers} == {"free"}
            daemon.send_signal(signal.SIGTERM)
            with trio.fail_after(30):
                while daemon.poll() is None:
                    await trio.sleep(0.05)
            assert daemon.returncode == 0
        finally:
            if daemon.poll() is None:
                daemon.kill()
    assert "stopping signal=SIGTERM" in log_path.read_text()
