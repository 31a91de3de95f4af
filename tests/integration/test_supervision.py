"""Supervision on the real containerd: confirmed starts, crash restarts,
reconciliation after the daemon or containerd went away, events, log and
stats backends."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis
import trio

from contd_trio.app import Daemon, open_daemon
from contd_trio.config import Config
from contd_trio.containerd.events import Event, TaskExit
from contd_trio.module import labels
from contd_trio.module.client import ContainerClient
from contd_trio.module.types import Container, Logs, LogsRedis, NetworkInfo, Stats
from contd_trio.zbus.client import open_client
from contd_trio.zbus.errors import CallError
from tests.helpers import wait_until
from tools import services

COOPERATIVE = "sh -c 'trap \"exit 0\" TERM; while true; do sleep 0.1 & wait; done'"


def container(rootfs: Path, netns: str, name: str = "c1", **fields: Any) -> Container:
    fields.setdefault("entrypoint", COOPERATIVE)
    return Container(name=name, rootfs=str(rootfs), network=NetworkInfo(netns), **fields)


class EventLog:
    """The events published on the bus, collected in the background."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._changed = trio.Event()

    async def collect(self, contd: ContainerClient, *, task_status: trio.TaskStatus[None]) -> None:
        async with contd.events() as stream:
            task_status.started()
            async for event in stream:
                self.events.append(event)
                self._changed.set()
                self._changed = trio.Event()

    def kinds(self, ns: str, cid: str) -> list[str]:
        return [e["Kind"] for e in self.events if e["Namespace"] == ns and e["ID"] == cid]

    async def wait_for(self, ns: str, cid: str, kind: str, count: int = 1, timeout: float = 20) -> None:
        with trio.fail_after(timeout):
            while self.kinds(ns, cid).count(kind) < count:
                await self._changed.wait()


@pytest.fixture
def fast_config(daemon_config: Config) -> Config:
    return dataclasses.replace(daemon_config, restart_delay=0.3, restart_limit=3, restart_window=60.0)


@pytest.fixture
async def supervised(fast_config: Config) -> AsyncIterator[Daemon]:
    async with open_daemon(fast_config) as running:
        yield running


@pytest.fixture
async def client(supervised: Daemon, broker: str) -> AsyncIterator[ContainerClient]:
    async with open_client(broker) as bus:
        yield ContainerClient(bus, timeout=120)


@pytest.fixture
async def event_log(client: ContainerClient, nursery: trio.Nursery) -> EventLog:
    log = EventLog()
    await nursery.start(log.collect, client)
    return log


def containers_left(containerd: services.ContainerdService, ns: str) -> list[str]:
    return services.ctr(containerd.address, "containers", "list", "-q", namespace=ns, check=False).split()


async def test_an_entrypoint_that_exits_at_once_fails_run_and_leaves_nothing(
    client: ContainerClient,
    ns: str,
    netns_name: str,
    rootfs: Path,
    containerd: services.ContainerdService,
    fast_config: Config,
) -> None:
    failing = "sh -c 'echo starting; echo cannot go on >&2; exit 3'"
    with pytest.raises(
        CallError, match=r"^entrypoint of c1 exited with status 3; output: starting\ncannot go on$"
    ):
        await client.run(ns, container(rootfs, netns_name, entrypoint=failing))
    assert containers_left(containerd, ns) == []
    assert not (fast_config.root / "logs" / ns / "c1.log").exists()


async def test_the_life_cycle_on_the_events_channel(
    client: ContainerClient, event_log: EventLog, ns: str, netns_name: str, rootfs: Path
) -> None:
    await client.run(ns, container(rootfs, netns_name))
    await client.delete(ns, "c1")
    await event_log.wait_for(ns, "c1", "deleted")
    assert event_log.kinds(ns, "c1") == ["created", "started", "exited", "deleted"]
    started = next(e for e in event_log.events if e["ID"] == "c1" and e["Kind"] == "started")
    assert started["Pid"] > 0 and started["Namespace"] == ns
    exited = next(e for e in event_log.events if e["ID"] == "c1" and e["Kind"] == "exited")
    assert exited["ExitStatus"] == 0


async def test_a_crashing_container_is_restarted_then_given_up(
    client: ContainerClient, supervised: Daemon, event_log: EventLog, ns: str, netns_name: str, rootfs: Path
) -> None:
    crashy = "sh -c 'echo run; sleep 1; exit 5'"
    await client.run(ns, container(rootfs, netns_name, entrypoint=crashy))
    first_pid = (await client.inspect(ns, "c1")).task.pid  # type: ignore[union-attr]
    await event_log.wait_for(ns, "c1", "restarted")
    second_pid = (await client.inspect(ns, "c1")).task.pid  # type: ignore[union-attr]
    assert second_pid != first_pid
    await event_log.wait_for(ns, "c1", "failed", timeout=30)
    kinds = event_log.kinds(ns, "c1")
    assert kinds.count("restarted") == 2  # the third crash within the window gives up
    assert kinds[-1] == "failed"
    info = await client.inspect(ns, "c1")
    assert info.task is not None and info.task.status == "stopped"
    assert info.task.restarts == 2 and info.task.exit_status == 5
    record = await supervised.containerd.get_container(ns, "c1")
    assert record.labels[labels.FAILED] == "exited with status 5"
    # Giving up keeps the container and its output.
    assert (await client.logs(ns, "c1")).count("run\n") == 3
    await client.delete(ns, "c1")


async def test_delete_and_signal_delete_never_restart(
    client: ContainerClient, event_log: EventLog, ns: str, netns_name: str, rootfs: Path
) -> None:
    await client.run(ns, container(rootfs, netns_name, name="gone"))
    await client.run(ns, container(rootfs, netns_name, name="going"))
    await client.delete(ns, "gone")
    await client.signal_delete(ns, "going")
    await event_log.wait_for(ns, "going", "exited")
    await trio.sleep(1.5)  # several restart delays
    assert "restarted" not in event_log.kinds(ns, "gone") + event_log.kinds(ns, "going")
    info = await client.inspect(ns, "going")
    assert info.task is not None and info.task.status == "stopped"
    await client.delete(ns, "going")


async def test_an_oom_kill_is_reported_as_oom(
    client: ContainerClient, event_log: EventLog, ns: str, netns_name: str, rootfs: Path
) -> None:
    # tail keeps a line without newline in memory: /dev/zero has none.
    hungry = "sh -c 'sleep 0.5; tail /dev/zero'"
    await client.run(ns, container(rootfs, netns_name, entrypoint=hungry, memory=16 << 20))
    await event_log.wait_for(ns, "c1", "oom")
    await event_log.wait_for(ns, "c1", "exited")
    exited = next(e for e in event_log.events if e["ID"] == "c1" and e["Kind"] == "exited")
    assert exited["ExitStatus"] == 137
    await client.delete(ns, "c1")


async def test_log_lines_reach_a_redis_channel(
    client: ContainerClient, ns: str, netns_name: str, rootfs: Path, backend_redis: services.RedisService
) -> None:
    subscriber = redis.Redis(host="127.0.0.1", port=backend_redis.port).pubsub()
    subscriber.subscribe(f"{ns}-out", f"{ns}-err")
    backends = [
        Logs(
            "redis", LogsRedis(backend_redis.channel_url(f"{ns}-out"), backend_redis.channel_url(f"{ns}-err"))
        )
    ]
    script = "sh -c 'sleep 0.5; echo to stdout; echo to stderr >&2; sleep 1000'"
    await client.run(ns, container(rootfs, netns_name, entrypoint=script, logs=backends))
    received: dict[str, list[bytes]] = {}

    def got_both() -> bool:
        message = subscriber.get_message(ignore_subscribe_messages=True, timeout=0.01)
        if message:
            received.setdefault(message["channel"].decode(), []).append(message["data"])
        return len(received) == 2

    await wait_until(got_both, timeout=15, interval=0.01)
    assert received == {f"{ns}-out": [b"to stdout"], f"{ns}-err": [b"to stderr"]}
    assert (await client.inspect(ns, "c1")).logs == backends
    subscriber.close()
    await client.delete(ns, "c1")


async def test_the_log_file_rotates_at_the_cap_with_no_line_lost(
    daemon_config: Config, broker: str, ns: str, netns_name: str, rootfs: Path
) -> None:
    config = dataclasses.replace(daemon_config, log_max_bytes=4096)
    script = "sh -c 'i=1; while [ $i -le 600 ]; do printf \"line %06d\\n\" $i; i=$((i+1)); done; sleep 1000'"
    async with open_daemon(config), open_client(broker) as bus:
        client = ContainerClient(bus, timeout=60)
        await client.run(ns, container(rootfs, netns_name, entrypoint=script))
        log_file = config.root / "logs" / ns / "c1.log"
        rotated = log_file.with_name("c1.log.1")

        def all_written() -> bool:
            return log_file.exists() and "line 000600" in log_file.read_text()

        await wait_until(all_written)
        assert rotated.exists()
        assert log_file.stat().st_size <= 4096 and rotated.stat().st_size <= 4096
        lines = rotated.read_text().splitlines() + log_file.read_text().splitlines()
        numbers = [int(line.split()[1]) for line in lines]
        assert numbers == list(range(numbers[0], 601))  # consecutive, whole lines, up to the last
        # Only what fits in the two files is kept: at least a full rotated file's worth.
        assert len(numbers) * 12 > 4096
        text = await client.logs(ns, "c1")
        assert text.splitlines()[-1] == "line 000600" and len(text.splitlines()) == 100
        await client.delete(ns, "c1")


async def test_stats_reach_a_redis_endpoint_and_resume_after_a_daemon_restart(
    daemon_config: Config,
    broker: str,
    ns: str,
    netns_name: str,
    rootfs: Path,
    backend_redis: services.RedisService,
) -> None:
    subscriber = redis.Redis(host="127.0.0.1", port=backend_redis.port).pubsub()
    subscriber.subscribe(f"{ns}-stats")

    async def next_stats(timeout: float = 10) -> dict[str, Any]:
        with trio.fail_after(timeout):
            while True:
                message = subscriber.get_message(ignore_subscribe_messages=True, timeout=0.01)
                if message:
                    return json.loads(message["data"])  # type: ignore[no-any-return]
                await trio.sleep(0.05)

    stats = [Stats("redis", backend_redis.channel_url(f"{ns}-stats"))]
    async with open_daemon(daemon_config), open_client(broker) as bus:
        await ContainerClient(bus).run(ns, container(rootfs, netns_name, stats=stats, memory=64 << 20))
        metrics = await next_stats()
    assert metrics["memory_limit"] == 64 << 20 and metrics["pids_current"] >= 1
    assert set(metrics) == {
        "timestamp",
        "memory_usage",
        "memory_limit",
        "memory_cache",
        "cpu_usage",
        "pids_current",
    }
    # The daemon is gone: nothing comes.
    await trio.sleep(2.5)
    while subscriber.get_message(ignore_subscribe_messages=True, timeout=0.01):
        pass
    with pytest.raises(trio.TooSlowError):
        await next_stats(timeout=2.5)
    async with open_daemon(daemon_config) as again, open_client(broker) as bus:
        metrics = await next_stats()
        assert metrics["memory_limit"] == 64 << 20
        await again.module.delete(ns, "c1")
    subscriber.close()


def spawn_contd(config: Config, log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "contd_trio",
                "-broker",
                config.broker,
                "-root",
                str(config.root),
                "-containerd",
                str(config.containerd_socket),
                "-containerd-root",
                str(config.containerd_root),
                "-containerd-state",
                str(config.containerd_state),
                "-corex",
                str(config.corex),
                "-restart-delay",
                "300ms",
                "-log-level",
                "debug",
            ],
            stderr=log,
        )


async def test_containers_survive_a_daemon_sigkill_and_the_dead_are_restarted(
    daemon_config: Config,
    broker: str,
    ns: str,
    netns_name: str,
    rootfs: Path,
    tmp_path: Path,
    containerd: services.ContainerdService,
) -> None:
    counter = "sh -c 'i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.05; done'"
    daemon = spawn_contd(daemon_config, tmp_path / "contd.log")
    try:
        async with open_client(broker) as bus:
            client = ContainerClient(bus, timeout=60)
            await bus.status("container", timeout=30)  # up and serving
            for name in ("a", "b", "c"):
                await client.run(ns, container(rootfs, netns_name, name=name, entrypoint=counter))
            pids = {name: (await client.inspect(ns, name)).task.pid for name in "abc"}  # type: ignore[union-attr]
        daemon.kill()  # SIGKILL: no clean-up of any kind
        daemon.wait()
        services.ctr(containerd.address, "tasks", "kill", "-s", "SIGKILL", "b", namespace=ns)
        await trio.sleep(1.0)  # a and c keep writing their logs meanwhile
        daemon = spawn_contd(daemon_config, tmp_path / "contd.log")
        async with open_client(broker) as bus:
            client = ContainerClient(bus, timeout=60)

            async def b_is_back() -> bool:
                task = (await client.inspect(ns, "b")).task
                return task is not None and task.status == "running" and task.restarts == 1

            await wait_until(b_is_back, timeout=30)
            for name in ("a", "c"):
                task = (await client.inspect(ns, name)).task
                assert task is not None and task.status == "running" and task.pid == pids[name]
            # The log shim kept writing while the daemon was away: no tick is missing.
            ticks = [int(line.split()[1]) for line in (await client.logs(ns, "a")).splitlines()]
            assert ticks == list(range(ticks[0], ticks[0] + len(ticks)))
            assert (await client.inspect(ns, "b")).task.pid != pids["b"]  # type: ignore[union-attr]
            for name in "abc":
                await client.delete(ns, name)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)


async def test_containerd_restarted_while_containers_run(
    daemon_config: Config,
    broker: str,
    ns: str,
    netns_name: str,
    rootfs: Path,
    private_containerd: services.ContainerdService,
) -> None:
    config = dataclasses.replace(
        daemon_config,
        containerd_socket=private_containerd.address,
        containerd_root=private_containerd.root,
        containerd_state=private_containerd.state,
        restart_delay=0.3,
    )
    async with open_daemon(config) as daemon, open_client(broker) as bus:
        client = ContainerClient(bus, timeout=60)
        log = EventLog()
        async with trio.open_nursery() as nursery:
            await nursery.start(log.collect, client)
            for name in ("a", "b"):
                await client.run(ns, container(rootfs, netns_name, name=name))
            pid_a = (await client.inspect(ns, "a")).task.pid  # type: ignore[union-attr]
            private_containerd.kill()
            # Meanwhile "a" dies: containerd is not there to tell anybody.
            os.kill(pid_a, signal.SIGKILL)
            await trio.sleep(0.5)
            await trio.to_thread.run_sync(private_containerd.start_again)
            # The gap is noticed, reconciliation restarts "a"...
            await log.wait_for(ns, "a", "restarted", timeout=30)
            assert daemon.supervisor.reconciliations >= 2
            # ...and live events flow again: a crash of "b" is seen and handled.
            pid_b = (await client.inspect(ns, "b")).task.pid  # type: ignore[union-attr]
            os.kill(pid_b, signal.SIGKILL)
            await log.wait_for(ns, "b", "restarted", timeout=30)
            nursery.cancel_scope.cancel()
        for name in ("a", "b"):
            await client.delete(ns, name)


async def test_a_repeated_exit_event_is_handled_once(
    client: ContainerClient, supervised: Daemon, event_log: EventLog, ns: str, netns_name: str, rootfs: Path
) -> None:
    await client.run(ns, container(rootfs, netns_name))
    pid = (await client.inspect(ns, "c1")).task.pid  # type: ignore[union-attr]
    os.kill(pid, signal.SIGKILL)
    await event_log.wait_for(ns, "c1", "restarted")
    # A dead shim makes containerd publish the same exit again: replay it.
    repeated = Event(
        namespace=ns,
        topic="/tasks/exit",
        timestamp_ns=time.time_ns(),
        type_url="containerd.events.TaskExit",
        payload=TaskExit(container_id="c1", id="c1", pid=pid, exit_status=137),
    )
    await supervised.supervisor._dispatch(repeated)
    await supervised.supervisor._dispatch(repeated)
    await trio.sleep(1.0)  # past the restart delay
    kinds = event_log.kinds(ns, "c1")
    assert kinds.count("exited") == 1 and kinds.count("restarted") == 1
    info = await client.inspect(ns, "c1")
    assert info.task is not None and info.task.restarts == 1 and info.task.status == "running"
    await client.delete(ns, "c1")
