"""Fixtures for tests of the daemon on the real services: a daemon served
in-process, its client, network namespaces and root filesystems."""

from __future__ import annotations

import os
import shutil
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from contd_trio.app import Daemon, open_daemon
from contd_trio.config import Config
from contd_trio.module.client import ContainerClient
from contd_trio.zbus.client import open_client
from tools import services


@pytest.fixture
def netns_name() -> Iterator[str]:
    with services.network_namespace() as name:
        yield name


@pytest.fixture
def netns_redis(netns_name: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.RedisService]:
    """A Redis in the test's network namespace, as a tenant's log backend
    is (the log shim reaches it from the container's network): its
    ``channel_url`` is 127.0.0.1 there; the test subscribes through its
    unix socket."""
    service = services.start_redis(tmp_path_factory.mktemp("nr"), name="redis", port=6379, netns=netns_name)
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def rootfs(busybox_rootfs: Path, tmp_path: Path) -> Path:
    """A busybox rootfs of this test's own, which it may change."""
    target = tmp_path / "rootfs"
    shutil.copytree(busybox_rootfs, target, symlinks=True)
    return target


@pytest.fixture
def corex(tmp_path: Path) -> Path:
    """A stand-in for corex: it says how it was started, then waits (and
    leaves on SIGTERM, so that Delete need not wait out its timeout)."""
    path = tmp_path / "corex"
    path.write_text('#!/bin/sh\necho "corex $*"\ntrap "exit 0" TERM\nsleep 1000 &\nwait\n')
    path.chmod(0o755)
    return path


@pytest.fixture
def daemon_config(broker: str, containerd: services.ContainerdService, tmp_path: Path, corex: Path) -> Config:
    return Config(
        broker=broker,
        root=tmp_path / "contd-root",
        containerd_socket=containerd.address,
        containerd_root=containerd.root,
        containerd_state=containerd.state,
        corex=corex,
        workers=64,
    )


@pytest.fixture
async def daemon(daemon_config: Config) -> AsyncIterator[Daemon]:
    async with open_daemon(daemon_config) as running:
        yield running


@pytest.fixture
async def contd(daemon: Daemon, broker: str) -> AsyncIterator[ContainerClient]:
    async with open_client(broker) as bus:
        yield ContainerClient(bus, timeout=120)


@pytest.fixture
def ns(containerd: services.ContainerdService) -> Iterator[str]:
    """A containerd namespace of this test's own, emptied and removed afterwards
    (every daemon's start-up reconciliation scans every namespace)."""
    name = f"t{uuid.uuid4().hex[:10]}"
    yield name
    leftovers = services.ctr(
        containerd.address, "containers", "list", "-q", namespace=name, check=False
    ).split()
    for container in leftovers:
        services.ctr(
            containerd.address, "tasks", "kill", "-s", "SIGKILL", container, namespace=name, check=False
        )
    for container in leftovers:
        for _ in range(50):
            services.ctr(containerd.address, "tasks", "delete", container, namespace=name, check=False)
            if not services.ctr(
                containerd.address, "tasks", "list", "-q", namespace=name, check=False
            ).split():
                break
        services.ctr(containerd.address, "containers", "delete", container, namespace=name, check=False)
    # A shim still running once its containers are gone is a task the daemon leaked.
    deadline = time.monotonic() + 5
    while (leaked := services.shim_pids(containerd.address, name)) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in leaked:
        os.kill(pid, signal.SIGKILL)
    services.remove_cgroups(name)
    assert not leaked, f"runc shims left running in namespace {name}: {leaked}"
    # containerd removes only an empty namespace: anything else left in it is a leak too.
    if name in services.ctr(containerd.address, "namespaces", "list", "-q").split():
        services.ctr(containerd.address, "namespaces", "remove", name)
