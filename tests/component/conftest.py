"""Fixtures of the component tests: the daemon in-process, its containerd
calls going through a fault-injecting proxy (``faults.py``) in front of the
session's real containerd, its bus the session's real Redis.

These test our error handling with faults injected at the gRPC channel;
they complement the real-process fault tests, which kill and stop the real
containerd and daemon.

Timing: Trio's autojump clock is not used. Under trio-asyncio it also drives
asyncio's timers, and every wait for containerd's socket looks idle to it,
so it jumps to the next deadline while containerd is working (50 Version
calls through the proxy moved it by 9.99 virtual seconds), which fires the
daemon's start, settle and kill timeouts early. The tests use real time
with short settings (``daemon_config``) and wait on conditions, bounded.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from contd_trio import errors
from contd_trio.app import Daemon, open_daemon
from contd_trio.config import Config
from contd_trio.containerd.channel import open_channel
from contd_trio.containerd.client import Containerd
from contd_trio.module.client import ContainerClient
from contd_trio.zbus.client import open_client
from tests.component.faults import FaultProxy, open_fault_proxy
from tests.component.support import Leftovers, label_requests
from tests.integration.conftest import corex, netns_name, ns, rootfs  # noqa: F401  (shared fixtures)
from tools import services


@pytest.fixture
async def proxy(containerd: services.ContainerdService) -> AsyncIterator[FaultProxy]:
    async with open_fault_proxy(containerd.address) as running:
        yield running


@pytest.fixture
async def real(containerd: services.ContainerdService) -> AsyncIterator[Containerd]:
    """containerd itself, past the proxy: what the tests check against."""
    async with open_channel(containerd.address) as channel:
        yield Containerd(channel)


@pytest.fixture
def daemon_config(
    broker: str,
    containerd: services.ContainerdService,
    tmp_path: Path,
    corex: Path,  # noqa: F811
) -> Config:
    return Config(
        broker=broker,
        root=tmp_path / "contd-root",
        containerd_socket=containerd.address,
        containerd_root=containerd.root,
        containerd_state=containerd.state,
        corex=corex,
        workers=64,
        request_timeout=60.0,
        shutdown_grace=1.0,
        restart_delay=0.1,
        start_settle=0.1,
    )


@pytest.fixture
async def daemon(daemon_config: Config, proxy: FaultProxy, emptied: None) -> AsyncIterator[Daemon]:
    async with open_daemon(daemon_config, grpc_channel=proxy.channel) as running:
        label_requests(running)
        yield running


@pytest.fixture
async def contd(daemon: Daemon, broker: str) -> AsyncIterator[ContainerClient]:
    async with open_client(broker) as bus:
        yield ContainerClient(bus, timeout=90)


@pytest.fixture
def leftovers(
    real: Containerd, containerd: services.ContainerdService, daemon_config: Config, emptied: None
) -> Leftovers:
    return Leftovers(real, containerd.address, daemon_config.root)


@pytest.fixture
async def emptied(ns: str, real: Containerd) -> AsyncIterator[None]:  # noqa: F811
    """Remove what a test left in its namespace, through containerd's API.

    Not autouse: pytest-trio only runs the async fixtures a test reaches
    through its arguments. ``daemon`` and ``leftovers`` use it, so a test
    that makes containers has it, and pytest-trio (which tears a fixture
    down once the fixtures using it are) stops the daemon first: a running
    daemon would restart what is being removed."""
    yield
    for record in await real.list_containers(ns):
        with contextlib.suppress(errors.NotFound):
            await real.kill(ns, record.id, signal.SIGKILL, all_processes=True)
        with contextlib.suppress(errors.NotFound), trio.move_on_after(10):
            await real.wait(ns, record.id)
        with contextlib.suppress(errors.NotFound):
            await real.delete_task(ns, record.id)
        with contextlib.suppress(errors.NotFound):
            await real.delete_container(ns, record.id)
