"""Supervision on the real containerd: confirmed starts, crash restarts,
reconciliation after the daemon or containerd went away, events, log and
stats backends."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis
import trio

from contd_trio import errors
from contd_trio.app import Daemon, host_facts, open_daemon
from contd_trio.config import Config
from contd_trio.containerd import spec as oci
from contd_trio.containerd.channel import open_channel
from contd_trio.containerd.client import Containerd
from contd_trio.containerd.events import Event, TaskExit
from contd_trio.containerd.spec import DEFAULT_PATH, SpecMount, SpecRequest
from contd_trio.module import labels
from contd_trio.module.client import ContainerClient
from contd_trio.module.types import Container, Logs, LogsRedis, MountInfo, NetworkInfo, Stats
from contd_trio.zbus.client import open_client
from contd_trio.zbus.errors import CallError
from tests.helpers import STEADY, UNTIL_TERM, wait_until
from tools import services


def container(rootfs: Path, netns: str, name: str = "c1", **fields: Any) -> Container:
    fields.setdefault("entrypoint", STEADY)
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

    async def wait_for_any(self, ns: str, cid: str, kinds: set[str], timeout: float = 20) -> str:
        """The first of ``kinds`` published for the container from now on."""
        seen = len(self.kinds(ns, cid))
        with trio.fail_after(timeout):
            while not (new := [k for k in self.kinds(ns, cid)[seen:] if k in kinds]):
                await self._changed.wait()
        return new[0]


async def pid_of(client: ContainerClient, ns: str, cid: str) -> int:
    task = (await client.inspect(ns, cid)).task
    assert task is not None and task.status == "running"
    return task.pid


def subscribed(subscriber: redis.client.PubSub, *channels: str) -> redis.client.PubSub:
    """``subscriber`` once Redis confirmed its subscription to every channel."""
    subscriber.subscribe(*channels)
    confirmed = 0
    while confirmed < len(channels):
        message = subscriber.get_message(timeout=10)
        assert message is not None, "no subscription confirmation from Redis"
        confirmed += message["type"] == "subscribe"
    return subscriber


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
    for name in ("gone", "going", "clock"):
        await client.run(ns, container(rootfs, netns_name, name=name))
    await client.delete(ns, "gone")
    await client.signal_delete(ns, "going")
    await event_log.wait_for(ns, "going", "exited")
    # The supervisor handled those exits before this crash, and restarts it
    # after the restart delay: by then any restart of the others was due too.
    os.kill(await pid_of(client, ns, "clock"), signal.SIGKILL)
    await event_log.wait_for(ns, "clock", "restarted")
    assert "restarted" not in event_log.kinds(ns, "gone") + event_log.kinds(ns, "going")
    info = await client.inspect(ns, "going")
    assert info.task is not None and info.task.status == "stopped"
    await client.delete(ns, "going")
    await client.delete(ns, "clock")


async def test_a_crash_then_delete_or_signal_delete_during_the_restart_delay_is_never_restarted(
    daemon_config: Config, broker: str, ns: str, netns_name: str, rootfs: Path
) -> None:
    # Long enough a delay to act within it for sure, even on a loaded machine.
    config = dataclasses.replace(daemon_config, restart_delay=1.5)
    async with open_daemon(config) as daemon, open_client(broker) as bus, trio.open_nursery() as nursery:
        client = ContainerClient(bus, timeout=60)
        event_log = EventLog()
        await nursery.start(event_log.collect, client)
        for name in ("deleted", "signalled", "clock"):
            await client.run(ns, container(rootfs, netns_name, name=name))
        for name in ("deleted", "signalled"):
            os.kill(await pid_of(client, ns, name), signal.SIGKILL)

        async def crash_recorded(name: str) -> bool:
            record = await daemon.containerd.get_container(ns, name)
            return labels.CRASHES in record.labels

        # The crash was judged (its time recorded): the restart waits out the delay.
        for name in ("deleted", "signalled"):
            await wait_until(lambda name=name: crash_recorded(name), interval=0.02)
        await client.delete(ns, "deleted")
        await client.signal_delete(ns, "signalled")
        # A later crash's restart comes one delay later, after theirs was due.
        os.kill(await pid_of(client, ns, "clock"), signal.SIGKILL)
        await event_log.wait_for(ns, "clock", "restarted")
        assert "restarted" not in event_log.kinds(ns, "deleted") + event_log.kinds(ns, "signalled")
        assert sorted(await client.list_containers(ns)) == ["clock", "signalled"]
        info = await client.inspect(ns, "signalled")
        assert info.task is not None and info.task.status == "stopped" and info.task.restarts == 0
        for name in ("signalled", "clock"):
            await client.delete(ns, name)
        nursery.cancel_scope.cancel()


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
    client: ContainerClient, ns: str, netns_name: str, rootfs: Path, netns_redis: services.RedisService
) -> None:
    """The backend is a Redis in the container's network namespace: the
    log shim reaches it from there."""
    subscriber = subscribed(
        redis.Redis(unix_socket_path=str(netns_redis.socket_path)).pubsub(), f"{ns}-out", f"{ns}-err"
    )
    backends = [
        Logs("redis", LogsRedis(netns_redis.channel_url(f"{ns}-out"), netns_redis.channel_url(f"{ns}-err")))
    ]
    script = f"sh -c 'echo to stdout; echo to stderr >&2; {UNTIL_TERM}'"
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
    printing = 'i=1; while [ $i -le 600 ]; do printf "line %06d\\n" $i; i=$((i+1)); done'
    script = f"sh -c '{printing}; {UNTIL_TERM}'"
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
        assert all(" stdout F line " in line for line in lines)
        numbers = [int(line.split()[-1]) for line in lines]
        assert numbers == list(range(numbers[0], 601))  # consecutive, whole lines, up to the last
        # Only what fits in the two files is kept: at least a full rotated file's worth.
        assert rotated.stat().st_size > 4096 - len(lines[-1]) - 1
        text = await client.logs(ns, "c1")
        assert text.splitlines()[-1] == "line 000600" and len(text.splitlines()) == 100
        await client.delete(ns, "c1")


STATS_KEYS = {"timestamp", "memory_usage", "memory_limit", "memory_cache", "cpu_usage", "pids_current"}


class StatsChannel:
    """The stats a Redis channel receives, read without blocking the loop."""

    def __init__(self, backend: services.RedisService, channel: str) -> None:
        self.redis = redis.Redis(host="127.0.0.1", port=backend.port)
        self.subscriber = subscribed(self.redis.pubsub(), channel)
        self.url = backend.channel_url(channel)

    async def next(self, timeout: float = 10) -> dict[str, Any]:
        with trio.fail_after(timeout):
            while True:
                message = self.subscriber.get_message(ignore_subscribe_messages=True, timeout=0.01)
                if message:
                    return json.loads(message["data"])  # type: ignore[no-any-return]
                await trio.sleep(0.05)

    async def next_after_now(self) -> dict[str, Any]:
        """The first stats pushed from now on (those already received are dropped)."""
        while self.subscriber.get_message(ignore_subscribe_messages=True, timeout=0):
            pass
        return await self.next()

    def publishers(self) -> list[str]:
        """The clients of this Redis whose last command was a PUBLISH."""
        return [c["addr"] for c in self.redis.client_list() if c["cmd"] == "publish"]

    def close(self) -> None:
        self.subscriber.close()
        self.redis.close()


async def test_stats_reach_a_redis_endpoint_and_resume_after_a_daemon_restart(
    daemon_config: Config,
    broker: str,
    ns: str,
    netns_name: str,
    rootfs: Path,
    backend_redis: services.RedisService,
) -> None:
    channel = StatsChannel(backend_redis, f"{ns}-stats")
    stats = [Stats("redis", channel.url)]
    async with open_daemon(daemon_config) as first, open_client(broker) as bus:
        await ContainerClient(bus).run(ns, container(rootfs, netns_name, stats=stats, memory=64 << 20))
        metrics = await channel.next()
        assert first.stats.running() == {(ns, "c1")}
        assert channel.publishers()  # the daemon's connection
    assert metrics["memory_limit"] == 64 << 20 and metrics["pids_current"] >= 1
    assert set(metrics) == STATS_KEYS
    # The daemon is gone, and with it whatever pushed stats: its connection is closed.
    await wait_until(lambda: not channel.publishers())
    async with open_daemon(daemon_config) as again:
        # Resumed by the new daemon's start-up reconciliation.
        await wait_until(lambda: again.stats.running() == {(ns, "c1")})
        metrics = await channel.next_after_now()
        assert metrics["memory_limit"] == 64 << 20
        await again.module.delete(ns, "c1")
        assert again.stats.running() == set()
    channel.close()


async def test_stats_monitors_survive_a_crash_restart_and_stop_on_delete_and_give_up(
    daemon_config: Config,
    broker: str,
    ns: str,
    netns_name: str,
    rootfs: Path,
    backend_redis: services.RedisService,
) -> None:
    config = dataclasses.replace(daemon_config, restart_delay=0.3, restart_limit=2)
    channels = {name: StatsChannel(backend_redis, f"{ns}-{name}") for name in ("kept", "given-up")}
    async with open_daemon(config) as daemon, open_client(broker) as bus, trio.open_nursery() as nursery:
        client = ContainerClient(bus, timeout=60)
        event_log = EventLog()
        await nursery.start(event_log.collect, client)
        for name, channel in channels.items():
            await client.run(
                ns, container(rootfs, netns_name, name=name, stats=[Stats("redis", channel.url)])
            )
        assert daemon.stats.running() == {(ns, "kept"), (ns, "given-up")}
        # A crash restart keeps the monitor, which reports on the new task.
        os.kill(await pid_of(client, ns, "kept"), signal.SIGKILL)
        await event_log.wait_for(ns, "kept", "restarted")
        assert (ns, "kept") in daemon.stats.running()
        assert (await channels["kept"].next_after_now())["pids_current"] >= 1
        # Given up (the second crash within the window): its monitor stops.
        os.kill(await pid_of(client, ns, "given-up"), signal.SIGKILL)
        await event_log.wait_for(ns, "given-up", "restarted")
        os.kill(await pid_of(client, ns, "given-up"), signal.SIGKILL)
        await event_log.wait_for(ns, "given-up", "failed")
        assert daemon.stats.running() == {(ns, "kept")}
        # Deleted: its monitor stops.
        await client.delete(ns, "kept")
        assert daemon.stats.running() == set()
        await client.delete(ns, "given-up")
        nursery.cancel_scope.cancel()
    for channel in channels.values():
        channel.close()


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
    counter = (
        "sh -c 'trap \"exit 0\" TERM; i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.05 & wait; done'"
    )
    log_of_a = daemon_config.root / "logs" / ns / "a.log"
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
        # a (and c) keep writing their logs while the daemon is away.
        lines_then = len(log_of_a.read_text().splitlines())
        await wait_until(lambda: len(log_of_a.read_text().splitlines()) >= lines_then + 10)
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


async def test_reconciliation_after_a_daemon_restart(
    daemon_config: Config, broker: str, ns: str, netns_name: str, rootfs: Path
) -> None:
    """A going-away container is finished off, a given-up one left alone,
    one that died while the daemon was away restarted."""
    first_config = dataclasses.replace(daemon_config, restart_delay=0.3, restart_limit=1)
    async with open_daemon(first_config) as first, open_client(broker) as bus, trio.open_nursery() as nursery:
        client = ContainerClient(bus, timeout=60)
        event_log = EventLog()
        await nursery.start(event_log.collect, client)
        for name in ("a-failed", "b-going", "c-dead"):
            await client.run(ns, container(rootfs, netns_name, name=name))
        os.kill(await pid_of(client, ns, "a-failed"), signal.SIGKILL)
        await event_log.wait_for(ns, "a-failed", "failed")  # the first crash gives it up
        failed_before = (await first.containerd.get_container(ns, "a-failed")).labels
        # What a Delete does first; as if the daemon died right after.
        await first.containerd.update_labels(ns, "b-going", {labels.GOING_AWAY: "true"})
        pid_c = await pid_of(client, ns, "c-dead")
        nursery.cancel_scope.cancel()
    os.kill(pid_c, signal.SIGKILL)  # dies while no daemon is there
    async with (
        open_daemon(daemon_config) as second,
        open_client(broker) as bus,
        trio.open_nursery() as nursery,
    ):
        client = ContainerClient(bus, timeout=60)
        event_log = EventLog()
        await nursery.start(event_log.collect, client)
        # Start-up reconciliation (containers are listed in name order).
        await event_log.wait_for(ns, "b-going", "deleted")
        await event_log.wait_for(ns, "c-dead", "restarted")
        assert event_log.kinds(ns, "a-failed") == []
        assert sorted(await client.list_containers(ns)) == ["a-failed", "c-dead"]
        assert not (daemon_config.root / "logs" / ns / "b-going.log").exists()
        # Left alone: no task made for it, its labels as they were.
        with pytest.raises(errors.NotFound):
            await second.containerd.get_process(ns, "a-failed")
        assert (await second.containerd.get_container(ns, "a-failed")).labels == failed_before
        info = await client.inspect(ns, "a-failed")
        assert info.task is not None and info.task.status == "stopped" and info.task.exit_status == 137
        for name in ("a-failed", "c-dead"):
            await client.delete(ns, name)
        nursery.cancel_scope.cancel()


async def test_crash_history_survives_a_daemon_restart(
    fast_config: Config, broker: str, ns: str, netns_name: str, rootfs: Path
) -> None:
    assert fast_config.restart_limit == 3
    async with open_daemon(fast_config), open_client(broker) as bus, trio.open_nursery() as nursery:
        client = ContainerClient(bus, timeout=60)
        event_log = EventLog()
        await nursery.start(event_log.collect, client)
        await client.run(ns, container(rootfs, netns_name))
        for crashes in (1, 2):
            os.kill(await pid_of(client, ns, "c1"), signal.SIGKILL)
            await event_log.wait_for(ns, "c1", "restarted", count=crashes)
        nursery.cancel_scope.cancel()
    async with open_daemon(fast_config) as again, open_client(broker) as bus, trio.open_nursery() as nursery:
        client = ContainerClient(bus, timeout=60)
        event_log = EventLog()
        await nursery.start(event_log.collect, client)
        os.kill(await pid_of(client, ns, "c1"), signal.SIGKILL)
        # The third crash within the window, two of them seen by the daemon before.
        assert await event_log.wait_for_any(ns, "c1", {"failed", "restarted"}) == "failed"
        record = await again.containerd.get_container(ns, "c1")
        assert record.labels[labels.FAILED] == "exited with status 137"
        assert (await client.inspect(ns, "c1")).task.restarts == 2  # type: ignore[union-attr]
        await client.delete(ns, "c1")
        nursery.cancel_scope.cancel()


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
            await wait_until(lambda: not Path(f"/proc/{pid_a}").exists())  # reaped by its shim
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
    client: ContainerClient,
    supervised: Daemon,
    event_log: EventLog,
    ns: str,
    netns_name: str,
    rootfs: Path,
    containerd: services.ContainerdService,
) -> None:
    """containerd publishes a task's exit a second time when the task's runc
    shim dies before the task was deleted: the supervisor acts on it once."""
    await client.run(ns, container(rootfs, netns_name))
    pid = (await client.inspect(ns, "c1")).task.pid  # type: ignore[union-attr]
    filters = [f'namespace=={ns},topic=="/tasks/exit"', f'namespace=={ns},topic=="/containers/update"']
    async with supervised.containerd.watch_events(filters) as events:

        async def next_event(topic: str) -> Event:
            with trio.fail_after(20):
                async for event in events:
                    if isinstance(event, Event) and event.topic == topic:
                        return event
            raise AssertionError("the event stream ended")

        # Subscribed for sure once an event of ours comes through.
        await supervised.containerd.update_labels(ns, "c1", {"probe": "1"})
        await next_event("/containers/update")
        # Holding the container's lock keeps its restart waiting while the
        # shim is killed: the second exit comes while the task is still there.
        async with supervised.ops.locks.hold((ns, "c1")):
            os.kill(pid, signal.SIGKILL)
            first = await next_event("/tasks/exit")
            [shim] = services.shim_pids(containerd.address, ns)
            os.kill(shim, signal.SIGKILL)
            second = await next_event("/tasks/exit")
    assert isinstance(first.payload, TaskExit) and isinstance(second.payload, TaskExit)
    assert first.payload.pid == second.payload.pid == pid and second.payload.container_id == "c1"
    # The restart starts after the second exit was published, and the
    # supervisor reads events in order: by "restarted" it has seen both.
    await event_log.wait_for(ns, "c1", "restarted")
    kinds = event_log.kinds(ns, "c1")
    assert kinds.count("exited") == 1 and kinds.count("restarted") == 1
    info = await client.inspect(ns, "c1")
    assert info.task is not None and info.task.restarts == 1 and info.task.status == "running"
    await client.delete(ns, "c1")


async def test_a_container_with_the_earlier_annotations_is_inspected_and_restarted_as_before(
    fast_config: Config,
    broker: str,
    ns: str,
    netns_name: str,
    rootfs: Path,
    tmp_path: Path,
    containerd: services.ContainerdService,
    backend_redis: services.RedisService,
    netns_redis: services.RedisService,
) -> None:
    """A container made before the ``contd.request`` annotation holds the
    earlier daemon's ``contd.*`` annotations (their format is that of
    ``tests/data/legacy-specs``, written out here with this test's paths).
    Start-up reconciliation finds it not running and starts it with the log
    and stats backends they name; Inspect gives the Container that daemon
    gave; a crash restart does the same, and leaves the spec as it was."""
    source = tmp_path / "data"
    source.mkdir()
    out, err = f"{ns}-out", f"{ns}-err"
    # The log backend is in the container's network (the log shim joins it), stats' on the host.
    log_lines = subscribed(redis.Redis(unix_socket_path=str(netns_redis.socket_path)).pubsub(), out, err)
    stats = StatsChannel(backend_redis, f"{ns}-stats")
    entrypoint = f"sh -c 'echo to stdout; echo to stderr >&2; {UNTIL_TERM}'"

    def compact(value: Any) -> str:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

    annotations = {
        "shutdown_timeout": "2000000000",
        "contd.entrypoint": entrypoint,
        "contd.interactive": "false",
        "contd.workdir": "/tmp",
        "contd.mounts": compact(
            [{"source": str(source), "target": "/mnt/data", "type": "bind", "options": ["rbind"]}]
        ),
        "contd.logs": compact(
            [
                {
                    "Type": "redis",
                    "Data": {
                        "Stdout": netns_redis.channel_url(out),
                        "Stderr": netns_redis.channel_url(err),
                    },
                }
            ]
        ),
        "contd.stats": compact([{"Type": "redis", "Endpoint": stats.url}]),
    }
    request = SpecRequest(
        namespace=ns,
        container_id="old",
        rootfs=str(rootfs),
        args=tuple(shlex.split(entrypoint)),
        env=("A=1",),
        cwd="/tmp",
        netns=netns_name,
        mounts=(SpecMount(str(source), "/mnt/data", "bind", ("rbind",)),),
        memory=64 << 20,
        cpu=1,
        annotations=annotations,
    )
    async with open_channel(containerd.address) as channel:
        made = Containerd(channel)
        await made.ensure_namespace(ns)
        await made.create_container(
            ns, "old", oci.build_spec(request, host_facts(fast_config)), labels={labels.MANAGED: "true"}
        )
    # What the earlier daemon's Inspect gave, written out.
    expected = Container(
        name="old",
        rootfs=str(rootfs),
        env=[f"PATH={DEFAULT_PATH}", "A=1"],
        working_dir="/tmp",
        network=NetworkInfo(netns_name),
        mounts=[MountInfo(str(source), "/mnt/data", "bind", ["rbind"])],
        entrypoint=entrypoint,
        interactive=False,
        cpu=1,
        memory=64 << 20,
        logs=[Logs("redis", LogsRedis(netns_redis.channel_url(out), netns_redis.channel_url(err)))],
        stats=[Stats("redis", stats.url)],
        elevated=False,
        rootfs_propagation="",
        shutdown_timeout_ns=2_000_000_000,
    )

    async def inspected_running(client: ContainerClient, restarts: int) -> Container:
        async def running() -> bool:
            task = (await client.inspect(ns, "old")).task
            return task is not None and task.status == "running" and task.restarts == restarts

        await wait_until(running, timeout=20)
        return await client.inspect(ns, "old")

    async def both_lines_published() -> dict[str, list[bytes]]:
        received: dict[str, list[bytes]] = {}

        def got_both() -> bool:
            message = log_lines.get_message(ignore_subscribe_messages=True, timeout=0.01)
            if message:
                received.setdefault(message["channel"].decode(), []).append(message["data"])
            return len(received) == 2

        await wait_until(got_both, timeout=15, interval=0.01)
        return received

    async with (
        open_daemon(fast_config) as daemon,
        open_client(broker) as bus,
        trio.open_nursery() as nursery,
    ):
        client = ContainerClient(bus, timeout=60)
        event_log = EventLog()
        await nursery.start(event_log.collect, client)
        for restarts in (1, 2):
            got = await inspected_running(client, restarts)
            assert dataclasses.replace(got, task=None, created_at=expected.created_at) == expected
            assert got.created_at.seconds > 0
            # Started with the backends the old annotations name.
            assert await both_lines_published() == {out: [b"to stdout"], err: [b"to stderr"]}
            assert (await stats.next_after_now())["memory_limit"] == 64 << 20
            assert daemon.stats.running() == {(ns, "old")}
            # A restart starts a task; the spec stays as the earlier daemon wrote it.
            record = await daemon.containerd.get_container(ns, "old")
            assert record.spec is not None and record.spec["annotations"] == annotations
            if restarts == 1:
                os.kill(got.task.pid, signal.SIGKILL)  # type: ignore[union-attr]
                await event_log.wait_for(ns, "old", "restarted")
        await client.delete(ns, "old")
        assert daemon.stats.running() == set()
        nursery.cancel_scope.cancel()
    log_lines.close()
    stats.close()
