"""Red-team of the zbus transport on Trio sockets: a hostile caller (cancels
at every await, waits with timeouts, sends odd bytes) and a hostile
environment (Redis killed, stopped, a process holding many files), against
a real Redis; and of containerd calls bounded by Trio cancel scopes, against
a real containerd that is stopped.

Where a test shortens ``COMMAND_TIMEOUT_SECONDS`` (monkeypatch) it says so:
that only makes the transport give up on a stopped Redis sooner, the
failure path under test is the real one."""

from __future__ import annotations

import os
import resource
import signal
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import redis
import trio

from contd_trio import errors
from contd_trio.containerd.channel import open_channel
from contd_trio.containerd.client import Containerd
from contd_trio.zbus import demo
from contd_trio.zbus import transport as transport_module
from contd_trio.zbus.client import open_client
from contd_trio.zbus.errors import BusUnavailable, ZbusError
from contd_trio.zbus.transport import open_redis_transport
from tests.helpers import wait_until
from tests.integration.test_zbus import serve_demo
from tools import services


def _sync(service: services.RedisService) -> redis.Redis:
    return redis.Redis(unix_socket_path=str(service.socket_path))


def _connections_made(r: redis.Redis) -> int:
    return int(r.info("stats")["total_connections_received"])


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def many_open_files() -> Iterator[None]:
    """The process holds more than 1024 descriptors, as a daemon with many
    containers' files and connections may: new ones are numbered past
    select()'s FD_SETSIZE."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4096
    if hard != resource.RLIM_INFINITY and hard < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
    elif soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    held = [os.open("/dev/null", os.O_RDONLY) for _ in range(1100)]
    try:
        yield
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_connections_are_reused_by_a_process_holding_over_1024_files(
    private_redis: services.RedisService, many_open_files: None
) -> None:
    """Found: the idle check used select(), which refuses a descriptor past
    1024, so every pooled connection looked stale and each command (and each
    exchange) opened a new connection to Redis."""
    r = _sync(private_redis)
    async with open_redis_transport(private_redis.url) as transport:
        await transport.ping()
        await transport.pop("q", 0, 1)
        before = _connections_made(r)
        for _ in range(20):
            await transport.ping()
            await transport.pop("q", 0, 1)
        assert _connections_made(r) - before == 0


async def test_a_concurrent_pop_with_redis_gone_is_bus_unavailable(tmp_path: Path) -> None:
    """Found: a pop made while another one held the exchange's own
    connection took a pooled connection whose connect was outside the
    transport's error wording: it raised FileNotFoundError, not
    BusUnavailable (a client's reply loop only retries BusUnavailable)."""
    failures: list[BaseException] = []
    async with open_redis_transport(f"unix://{tmp_path}/nothing.sock") as transport:

        async def pop() -> None:
            try:
                await transport.pop("q", 1, 1)
            except Exception as exc:  # what it raised is what is checked
                failures.append(exc)

        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(pop)
    assert len(failures) == 4
    assert all(isinstance(failure, BusUnavailable) for failure in failures), failures


async def test_a_concurrent_pop_to_a_stopped_redis_with_a_password_gives_up_in_time(
    private_redis: services.RedisService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found: that pooled connection's AUTH had no bound at all, so a pop to
    a stopped Redis (its socket still accepts) waited forever. Fault made
    faster: COMMAND_TIMEOUT_SECONDS shortened to 0.5 s."""
    monkeypatch.setattr(transport_module, "COMMAND_TIMEOUT_SECONDS", 0.5)
    r = _sync(private_redis)
    r.config_set("requirepass", "s3cret")
    assert private_redis.process is not None
    async with open_redis_transport(f"unix://:s3cret@{private_redis.socket_path}") as transport:
        await transport.ping()
        try:
            with trio.fail_after(30):
                async with trio.open_nursery() as nursery:
                    # The first pop holds the exchange's own connection, blocked in Redis.
                    nursery.start_soon(transport.pop, "q-first", 0.5, 1)
                    await wait_until(lambda: transport._exchanging, interval=0.01)
                    private_redis.process.send_signal(signal.SIGSTOP)
                    with pytest.raises(BusUnavailable):
                        await transport.pop("q-second", 0.1, 1)
                    nursery.cancel_scope.cancel()
        finally:
            private_redis.process.send_signal(signal.SIGCONT)


async def test_a_subscription_outlives_a_receive_that_timed_out(broker: str) -> None:
    """Found: a receive cancelled by its caller's timeout closed the
    subscription's connection, so the next receive failed with
    BusUnavailable although Redis was fine and no message was lost."""
    channel = f"ch{uuid.uuid4().hex[:8]}"
    async with open_redis_transport(broker) as transport, transport.subscribe(channel) as subscription:
        for round_ in range(3):
            with trio.move_on_after(0.05) as waited:
                await subscription.receive()
            assert waited.cancelled_caught
            assert await transport.publish(channel, b"m%d" % round_) == 1
            with trio.fail_after(10):
                assert await subscription.receive() == (channel, b"m%d" % round_)


async def _cancel_after_checkpoints(
    count: int, operation: Callable[[], Awaitable[object]], step: Callable[[], Awaitable[None]]
) -> bool:
    """Run ``operation``, cancelled once a sibling has passed ``count``
    steps (checkpoints, or short sleeps for what waits in Redis); whether
    it was cut short."""
    with trio.CancelScope() as scope:

        async def canceller() -> None:
            for _ in range(count):
                await step()
            scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(canceller)
            await operation()
            nursery.cancel_scope.cancel()
    return scope.cancelled_caught


async def test_cancelled_at_any_point_no_command_reads_another_ones_reply(
    private_redis: services.RedisService,
) -> None:
    """Every transport method, cancelled after 0, 1, 2, ... checkpoints
    until it completes: after each, a push/pop of a value unique to that
    round and a PUBLISH to nobody must read their own replies (a
    connection left out of step would hand one the other's)."""
    fds_before = _open_fds()
    async with open_redis_transport(private_redis.url) as transport:
        channel = f"ch{uuid.uuid4().hex[:8]}"
        operations: dict[str, Callable[[], Awaitable[object]]] = {
            "push": lambda: transport.push("cq", b"x"),
            "publish": lambda: transport.publish(channel, b"x"),
            "ping": transport.ping,
            "delete": lambda: transport.delete("cq-gone"),
            "send_batch": lambda: transport.send_batch(
                [("reply", b"crep", b"y"), ("publish", channel.encode(), b"z"), ("requeue", b"cq", b"r")], 60
            ),
            "pop": lambda: transport.pop("cq", 0, 5),
            "blocking pop": lambda: transport.pop("cq-empty", 0.05, 5),
        }

        async def subscribe_once() -> None:
            async with transport.subscribe(channel):
                pass

        operations["subscribe"] = subscribe_once

        async def blocking_step() -> None:
            # Past the first checkpoints, the blocking pop waits in Redis (50 ms).
            await trio.sleep(0.005)

        for name, operation in operations.items():
            completed = False
            for count in range(200):
                step = blocking_step if name == "blocking pop" and count > 20 else trio.lowlevel.checkpoint
                cut_short = await _cancel_after_checkpoints(count, operation, step)
                key = f"check-{name}-{count}"
                await transport.push(key, key.encode())
                assert await transport.pop(key, 0, 5) == [key.encode()], (name, count)
                assert await transport.publish(f"nobody-{uuid.uuid4().hex}", b"x") == 0, (name, count)
                if not cut_short:
                    completed = True
                    break
            assert completed, f"{name} never completed"
    assert _open_fds() <= fds_before


async def test_odd_bytes_and_a_giant_payload_go_through_unchanged(broker: str) -> None:
    """Every byte value, 40 MB of it, under a key with CR LF and a byte that
    is not UTF-8, both through a plain push/pop and through an exchange's
    answers."""
    giant = bytes(range(256)) * (40 * 4096)
    queue = f"q\r\n{uuid.uuid4().hex[:6]}\r\n"
    reply_key = b"reply\xff\r\n" + uuid.uuid4().hex.encode()
    r = redis.Redis(**transport_module.parse_broker_url(broker).redis_kwargs())
    async with open_redis_transport(broker) as transport:
        await transport.push(queue, giant)
        assert await transport.pop(queue, 0, 5) == [giant]
        await transport.send_batch([("reply", reply_key, giant)], 60)
        assert r.lrange(reply_key, 0, -1) == [giant]
        r.delete(reply_key)


async def _call_add(client_call: Callable[..., Awaitable[object]], module: str, value: float) -> object:
    return await client_call(module, demo.CALCULATOR, "Add", value, 1.0, timeout=5)


async def test_the_server_answers_right_or_not_at_all_across_redis_kills(
    private_redis: services.RedisService, nursery: trio.Nursery
) -> None:
    """40 callers in a loop while Redis is SIGKILLed and started again three
    times: each answer that arrives is the answer to its own question, the
    server answers again after each restart, and the server's process keeps
    no more descriptors after the third restart than after the first."""
    served = await nursery.start(lambda task_status: serve_demo(private_redis.url, task_status, tiktok=False))
    wrong: list[tuple[float, object]] = []
    answered = [0]  # answers since the last restart
    fds_after_restart: list[int] = []
    async with open_client(private_redis.url) as client:

        async def caller(first: float) -> None:
            value = first
            while True:
                try:
                    answer = await _call_add(client.call, served.module, value)
                except ZbusError:
                    await trio.sleep(0.05)
                    continue
                if answer != value + 1.0:
                    wrong.append((value, answer))
                answered[0] += 1
                value += 1000.0

        async with trio.open_nursery() as callers:
            for i in range(40):
                callers.start_soon(caller, float(i))
            for _ in range(3):
                await wait_until(lambda: answered[0] > 200, timeout=30)
                private_redis.kill()
                private_redis.restart()
                answered[0] = 0
                await wait_until(lambda: answered[0] > 200, timeout=60)
                fds_after_restart.append(_open_fds())
            callers.cancel_scope.cancel()
    assert wrong == []
    # Pooled connections may differ by how many callers held one at the time.
    slack = transport_module.COMMAND_CONNECTIONS + transport_module.BLOCKING_CONNECTIONS
    assert fds_after_restart[-1] <= fds_after_restart[0] + slack, fds_after_restart


async def test_close_drops_pooled_connections_in_use(private_redis: services.RedisService) -> None:
    """Found: close() ("commands in flight fail with BusUnavailable") closed
    only idle pooled connections: a blocking pop in flight on a pooled one
    stayed blocked in Redis, and its connection went back to the closed
    transport's pool, open, when the pop ended."""
    r = _sync(private_redis)
    failures: list[BaseException] = []
    async with open_redis_transport(private_redis.url) as transport:

        async def pop(queue: str) -> None:
            try:
                await transport.pop(queue, 30, 1)
            except Exception as exc:  # what it raised is what is checked
                failures.append(exc)

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(pop, "q-exchanger")
                await wait_until(lambda: transport._exchanging, interval=0.01)
                nursery.start_soon(pop, "q-pooled")
                await wait_until(lambda: int(r.info("clients")["blocked_clients"]) == 2, interval=0.01)
                transport.close()
        await wait_until(lambda: int(r.info("clients")["blocked_clients"]) == 0, interval=0.01)
        assert len(failures) == 2 and all(isinstance(f, BusUnavailable) for f in failures), failures
        assert transport._blocking._idle == []


async def test_containerd_stopped_a_call_ends_by_its_own_timeout_even_shielded_or_by_the_callers(
    private_containerd: services.ContainerdService,
) -> None:
    """containerd SIGSTOPped: a call's own timeout (now a Trio cancel scope,
    no grpc-timeout sent) still ends it inside a shielded scope, as
    DeadlineExceeded; a caller's deadline shorter than the call's timeout
    ends it as the caller's cancellation; once containerd continues, the
    same channel answers."""
    process = private_containerd.process
    assert process is not None
    async with open_channel(private_containerd.address) as channel:
        ctd = Containerd(channel)
        await ctd.version()
        process.send_signal(signal.SIGSTOP)
        try:
            with trio.fail_after(20):
                with trio.CancelScope(shield=True), pytest.raises(errors.DeadlineExceeded):
                    await ctd.version(timeout=0.5)
                with trio.move_on_after(0.3) as callers:
                    await ctd.version(timeout=10)
                assert callers.cancelled_caught
        finally:
            process.send_signal(signal.SIGCONT)
        with trio.fail_after(20):
            assert (await ctd.version())[0]


@pytest.mark.parametrize(
    "url",
    [
        "tcp://:s3cret-pw@localhost:notaport",
        "unix://:s3cret-pw@",
        "ftp://user:s3cret-pw@host/path",
        "tcp://s3cret-pw@",
    ],
)
def test_a_malformed_broker_address_is_refused_without_showing_its_password(url: str) -> None:
    """Found: the error quoted the whole address, password included (it
    reaches the daemon's stderr and logs)."""
    with pytest.raises(ValueError, match="broker '") as refused:
        transport_module.parse_broker_url(url)
    assert "s3cret" not in str(refused.value), refused.value


def test_a_password_that_is_not_utf8_once_decoded_is_refused_not_mangled() -> None:
    """Found: %FF decoded leniently to U+FFFD, and the wrong password was sent."""
    with pytest.raises(ValueError, match="not UTF-8") as refused:
        transport_module.parse_broker_url("tcp://:s3cret%FF@localhost:6379")
    assert "s3cret" not in str(refused.value)
    assert transport_module.parse_broker_url("tcp://:p%C3%A4ss@localhost:6379").password == "päss"
