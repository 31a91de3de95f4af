"""The stats publisher against the real Redis, and against endpoints that are
not one: the tenant's endpoints here are small TCP servers of the test's own
(on 127.0.0.1) that answer wrong, too much, or never."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import pytest
import redis
import trio

from contd_trio.module.client import ContainerClient
from contd_trio.module.redis_publisher import PublishFailed, RedisPublisher
from contd_trio.module.stats import PUSH_INTERVAL, StatsMonitors
from contd_trio.module.types import Container, NetworkInfo, Stats
from contd_trio.module.untrusted import MAX_BACKENDS
from contd_trio.resp import INCOMPLETE, ReplyReader
from tests.helpers import STEADY
from tools import services

Handler = Callable[[trio.SocketStream], Awaitable[None]]


@asynccontextmanager
async def endpoint(handler: Handler) -> AsyncIterator[int]:
    """A TCP server on 127.0.0.1 running ``handler`` per connection; its port."""
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        yield listeners[0].socket.getsockname()[1]
        nursery.cancel_scope.cancel()


def publish_clients(backend: services.RedisService) -> list[str]:
    """The backend Redis's connections whose last command was PUBLISH."""
    with redis.Redis(host="127.0.0.1", port=backend.port) as admin:
        return [c["addr"] for c in admin.client_list() if c["cmd"] == "publish"]


async def failure(publisher: RedisPublisher) -> str:
    try:
        await publisher.publish(b"{}")
    except PublishFailed as exc:
        return str(exc)
    raise AssertionError("the round went through")


async def test_one_connection_carries_every_channel_of_a_redis(backend_redis: services.RedisService) -> None:
    listener = redis.Redis(host="127.0.0.1", port=backend_redis.port).pubsub()
    listener.subscribe("pub-a", "pub-b")
    before = publish_clients(backend_redis)
    publisher = RedisPublisher("127.0.0.1", backend_redis.port, [b"pub-a", b"pub-b", b"pub-a"])
    try:
        await publisher.publish(b"one")
        assert len(publish_clients(backend_redis)) == len(before) + 1
        received = []
        with trio.fail_after(10):
            while len(received) < 3:
                message = await trio.to_thread.run_sync(listener.get_message, True, 0.5)
                if message is not None:
                    received.append((message["channel"], message["data"]))
        assert sorted(received) == [(b"pub-a", b"one"), (b"pub-a", b"one"), (b"pub-b", b"one")]
        # Redis drops the connection: the round fails, the next one connects again.
        ours = set(publish_clients(backend_redis)) - set(before)
        assert len(ours) == 1
        with redis.Redis(host="127.0.0.1", port=backend_redis.port) as admin:
            admin.client_kill(ours.pop())
        await failure(publisher)
        assert not publisher.connected
        await publisher.publish(b"two")
        assert publisher.connected
    finally:
        await publisher.aclose()
        listener.close()


async def test_an_endless_reply_is_dropped_at_the_bound() -> None:
    sent = 0
    closed = trio.Event()

    async def endless(stream: trio.SocketStream) -> None:
        nonlocal sent
        await stream.receive_some()
        try:
            await stream.send_all(b"+")
            while True:
                await stream.send_all(b"x" * 65536)
                sent += 65536
        except trio.BrokenResourceError:
            closed.set()

    async with endpoint(endless) as port:
        publisher = RedisPublisher("127.0.0.1", port, [b"c"], max_reply_bytes=64 * 1024)
        assert await failure(publisher) == "not a Redis: a reply longer than 65536 bytes"
        assert not publisher.connected
        with trio.fail_after(10):
            await closed.wait()
    # What the kernel's buffers took besides: nowhere near what an unbounded reader takes.
    assert sent < 16 << 20


async def test_an_endpoint_that_never_answers_is_dropped_at_the_timeout() -> None:
    async def silent(stream: trio.SocketStream) -> None:
        while await stream.receive_some():
            pass

    async with endpoint(silent) as port:
        publisher = RedisPublisher("127.0.0.1", port, [b"c"], timeout=0.5)
        assert await failure(publisher) == "no answer within 0.5s"
        assert not publisher.connected


async def test_wrong_answers_fail_the_round() -> None:
    answers = [b"-NOPERM no channel for you\r\n", b"+OK\r\n", b"", b"%1\r\n"]

    async def answer(stream: trio.SocketStream) -> None:
        await stream.receive_some()
        await stream.send_all(answers.pop(0))
        await stream.aclose()

    async with endpoint(answer) as port:
        publisher = RedisPublisher("127.0.0.1", port, [b"c"])
        assert await failure(publisher) == "PUBLISH refused: 'NOPERM no channel for you'"
        assert await failure(publisher) == "not an answer to PUBLISH: \"b'OK'\""
        assert await failure(publisher) == "the connection was closed"
        assert await failure(publisher) == "not a Redis: unknown reply type b'%'"
        assert not publisher.connected


async def test_unreachable_and_unusable_addresses() -> None:
    free = services.free_loopback_port()
    assert "refused" in (await failure(RedisPublisher("127.0.0.1", free, [b"c"]))).lower()
    assert await failure(RedisPublisher("0.0.0.0", free, [b"c"])) == (
        "'0.0.0.0' gives no address to send to: 0.0.0.0 is an unspecified address"
    )
    # A name is resolved (here from /etc/hosts) and its addresses checked.
    assert "refused" in (await failure(RedisPublisher("localhost", free, [b"c"]))).lower()


async def test_a_containers_entries_naming_one_redis_share_its_connection(
    contd: ContainerClient,
    ns: str,
    netns_name: str,
    rootfs: Path,
    backend_redis: services.RedisService,
) -> None:
    channels = [f"{ns}-shared-{i}" for i in range(MAX_BACKENDS)]
    listener = redis.Redis(host="127.0.0.1", port=backend_redis.port).pubsub()
    listener.subscribe(*channels)
    before = publish_clients(backend_redis)
    stats = [Stats("redis", backend_redis.channel_url(channel)) for channel in channels]
    await contd.run(
        ns,
        Container(
            name="c1", rootfs=str(rootfs), network=NetworkInfo(netns_name), entrypoint=STEADY, stats=stats
        ),
    )
    try:
        waiting = set(channels)
        with trio.fail_after(30):
            while waiting:
                message = await trio.to_thread.run_sync(listener.get_message, True, 0.5)
                if message is not None and message["type"] == "message":
                    assert set(json.loads(message["data"])) >= {"memory_usage", "cpu_usage"}
                    waiting.discard(message["channel"].decode())
        assert len(publish_clients(backend_redis)) == len(before) + 1
    finally:
        await contd.delete(ns, "c1")
        listener.close()


async def test_a_monitor_logs_a_failing_endpoint_once_backs_off_and_resumes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A monitor of a container in a cgroup tree of the test's own, pushing
    every 50 ms to two channels of an endpoint that hangs up at first."""
    (tmp_path / "ns1/c1").mkdir(parents=True)
    (tmp_path / "ns1/c1/cgroup.procs").write_text("")
    connections = 0
    answered = trio.Event()

    async def hangs_up_then_answers(stream: trio.SocketStream) -> None:
        nonlocal connections
        connections += 1
        if connections == 1:
            await stream.aclose()
            return
        commands = ReplyReader()
        while data := await stream.receive_some():
            commands.feed(data)
            while (command := commands.next_reply()) is not INCOMPLETE:
                assert isinstance(command, list) and command[0] == b"PUBLISH"
                await stream.send_all(b":1\r\n")
                answered.set()

    caplog.set_level(logging.INFO, logger="contd.stats")
    async with endpoint(hangs_up_then_answers) as port, trio.open_nursery() as nursery:
        monitors = StatsMonitors(interval=0.05, cgroup_root=tmp_path)
        await nursery.start(monitors.serve)
        started = trio.current_time()
        monitors.start("ns1", "c1", [Stats("redis", f"redis://127.0.0.1:{port}/{c}") for c in "ab"])
        with trio.fail_after(30):
            await answered.wait()
        waited = trio.current_time() - started
        assert monitors.running() == {("ns1", "c1")}
        nursery.cancel_scope.cancel()
    messages = [r.getMessage() for r in caplog.records if r.name == "contd.stats"]
    assert messages.count("could not push stats, retrying") == 1
    assert messages.count("pushing stats again") == 1
    # One connection for both channels, and none made again before the backoff was out.
    assert connections == 2
    assert waited >= PUSH_INTERVAL * 0.9
