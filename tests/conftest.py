"""Test set-up: real services, started once per session.

Rules for the tests in this tree:

* ``tests/unit`` tests pure code (codecs, spec building, validation): no
  process, no socket.
* ``tests/integration`` tests talk to a real Redis and a real containerd +
  runc started here (or named by ``CONTD_TEST_BROKER`` and
  ``CONTD_TEST_CONTAINERD``), never to mocks.
* Every timeout in a test is a bound on a behaviour, not a performance
  claim: speed lives in ``tools/bench*``.
* Nothing a test starts outlives the session.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio_asyncio
from hypothesis import settings

from tools import services

# Hypothesis's per-example deadline (200 ms) is a timing assertion: on a
# loaded 2-core machine (the suite runs in three processes) building a spec
# with its seccomp profile 300 times could trip it. Speed is measured in
# tools/bench, not here.
settings.register_profile("contd", deadline=None)
settings.load_profile("contd")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run every async test under trio-asyncio (pytest-trio's own trio_mode
    only knows plain trio): the test, its fixtures and everything they start
    share one asyncio loop, as in the daemon."""
    for item in items:
        function = getattr(item, "obj", None)
        inner = getattr(getattr(function, "hypothesis", None), "inner_test", function)
        if inspect.iscoroutinefunction(inner):
            item.add_marker(pytest.mark.trio(run=trio_asyncio.run))


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Unix socket paths are limited to 107 bytes: keep this one short.
    return tmp_path_factory.mktemp("run")


@pytest.fixture(scope="session")
def broker(run_dir: Path) -> Iterator[str]:
    """The URL of a Redis for the session."""
    external = os.environ.get("CONTD_TEST_BROKER")
    if external:
        yield external
        return
    service = services.start_redis(run_dir)
    try:
        yield service.url
    finally:
        service.stop()


@pytest.fixture(scope="session")
def backend_redis(run_dir: Path) -> Iterator[services.RedisService]:
    """A Redis on 127.0.0.1, for log and stats backends (redis://host:port/channel)."""
    service = services.start_redis(run_dir, name="backend-redis", port=services.free_loopback_port())
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="session")
def containerd(run_dir: Path) -> Iterator[services.ContainerdService]:
    """A containerd + runc of the session's own (or ``CONTD_TEST_CONTAINERD``'s
    socket); every container the tests leave is killed and removed at the end."""
    external = os.environ.get("CONTD_TEST_CONTAINERD")
    if external:
        service = services.ContainerdService(
            "containerd", None, Path("/dev/null"), address=Path(external), config_path=Path()
        )
        yield service
        return
    service = services.start_containerd(run_dir)
    try:
        yield service
    finally:
        try:
            services.reap_containerd(service.address)
        finally:
            service.stop()


@pytest.fixture(scope="session")
def busybox_rootfs(run_dir: Path) -> Path:
    """A busybox root filesystem (read-only for tests: copy it to change it)."""
    return services.build_busybox_rootfs(run_dir / "rootfs-busybox")


@pytest.fixture
def private_containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.ContainerdService]:
    """A containerd of this test's own, which it may kill and start again."""
    service = services.start_containerd(tmp_path_factory.mktemp("ctd"))
    try:
        yield service
    finally:
        try:
            services.reap_containerd(service.address)
        finally:
            service.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[services.RedisService]:
    """A Redis of this test's own, which it may stop and start."""
    service = services.start_redis(tmp_path, name="private-redis")
    try:
        yield service
    finally:
        service.stop()
