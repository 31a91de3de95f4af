"""Red team: supervision holds a container's lock for as long as a tenant says.

Each test fails on the code as it is (see the report of the red team pass).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from contd_trio.app import open_daemon
from contd_trio.config import Config
from contd_trio.module.client import ContainerClient
from contd_trio.module.types import Container, NetworkInfo
from contd_trio.zbus.client import open_client
from tests.integration.faultkit import STUBBORN, Answer, ask, within
from tools import services

REQUEST_DEADLINE = 25.0
#: The shielded end of a Delete (SIGKILL, then removal) may take this long.
KILL_BUDGET = 20.0


async def test_delete_after_signal_delete_ends_even_when_reconciliation_finishes_it_off(
    daemon_config: Config,
    broker: str,
    containerd: services.ContainerdService,
    ns: str,
    netns_name: str,
    rootfs: Path,
) -> None:
    """0-OS decommissions with SignalDelete, then Delete. A container marked
    going away is finished off by reconciliation, which calls Delete without
    a request deadline: its SIGTERM grace is then the container's whole
    ShutdownTimeout (any value is accepted; an hour here), and it holds the
    container's lock all that time. The caller's own Delete waits for the
    lock until its deadline and fails; so does every Delete after it, for
    an hour, while the container ignores SIGTERM and runs on."""
    config = dataclasses.replace(daemon_config, request_timeout=REQUEST_DEADLINE, reconcile_interval=0.5)
    spec = Container(
        name="c1",
        rootfs=str(rootfs),
        network=NetworkInfo(netns_name),
        entrypoint=STUBBORN,
        shutdown_timeout_ns=3600 * 10**9,
    )
    async with open_daemon(config) as daemon, open_client(broker) as bus:
        contd = ContainerClient(bus, timeout=60)
        await contd.run(ns, spec)
        await contd.signal_delete(ns, "c1")
        # A reconciliation after the SignalDelete has taken the container on.
        seen = daemon.supervisor.reconciliations
        assert await within(lambda: daemon.supervisor.reconciliations >= seen + 2, 10)
        answer: Answer = await ask(bus, "Delete", ns, "c1", timeout=REQUEST_DEADLINE + KILL_BUDGET + 10)
        left = services.ctr(containerd.address, "containers", "list", "-q", namespace=ns, check=False)
    assert answer.kind == "ok", f"Delete after SignalDelete: {answer}"
    assert left.split() == [], f"still in containerd after Delete: {left.split()}"
