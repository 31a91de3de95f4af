"""The zbus transport (Trio sockets, our RESP codec) against a real Redis:
its connections survive what Redis and callers do to them."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import redis
import trio

from contd_trio.zbus.errors import BusUnavailable
from contd_trio.zbus.transport import open_redis_transport
from tests.helpers import wait_until
from tools import services


def _blocked_clients(r: redis.Redis) -> int:
    return int(r.info("clients")["blocked_clients"])


async def test_pooled_connections_outlive_a_redis_restart(private_redis: services.RedisService) -> None:
    """Connections kept from before a restart are found closed and replaced:
    the first commands after it go through, none fails."""
    key = f"k{uuid.uuid4().hex[:8]}"
    async with open_redis_transport(private_redis.url) as transport:
        async with trio.open_nursery() as nursery:
            for i in range(5):  # several pooled connections, not just one
                nursery.start_soon(transport.push, key, b"%d" % i)
        await transport.pop(key, 0, 10)  # the exchanger's connection too
        private_redis.restart()
        await transport.ping()
        await transport.push(key, b"after")
        assert await transport.pop(key, 0, 10) == [b"after"]


async def test_a_pop_cancelled_while_redis_blocks_it_loses_nothing(
    private_redis: services.RedisService,
) -> None:
    """Cancelled inside BLPOP: the connection is dropped, so Redis hands the
    next item to nobody on it; the item stays queued for the next pop, which
    reads its own answer, not the abandoned one."""
    r = redis.Redis(unix_socket_path=str(private_redis.socket_path))
    key = f"q{uuid.uuid4().hex[:8]}"
    async with open_redis_transport(private_redis.url) as transport:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(transport.pop, key, 30, 1)
                await wait_until(lambda: _blocked_clients(r) == 1, interval=0.01)
                scope.cancel()
        await wait_until(lambda: _blocked_clients(r) == 0, interval=0.01)
        r.rpush(key, b"kept")
        assert r.lrange(key, 0, -1) == [b"kept"]
        assert await transport.pop(key, 0, 10) == [b"kept"]
        await transport.ping()


async def test_fifty_callers_at_once_all_get_through(broker: str) -> None:
    """More callers than pooled connections: the extra ones wait for one."""
    key = f"k{uuid.uuid4().hex[:8]}"
    async with open_redis_transport(broker) as transport:
        async with trio.open_nursery() as nursery:
            for i in range(50):
                nursery.start_soon(transport.push, key, b"%d" % i)
        taken = await transport.pop(key, 0, 100)
    assert sorted(int(item) for item in taken) == list(range(50))


async def test_a_password_is_sent_and_a_wrong_one_is_a_clear_error(
    private_redis: services.RedisService,
) -> None:
    r = redis.Redis(unix_socket_path=str(private_redis.socket_path))
    r.config_set("requirepass", "s3cret")
    path = private_redis.socket_path
    async with open_redis_transport(f"unix://:s3cret@{path}") as transport:
        await transport.ping()
    async with open_redis_transport(f"unix://:wrong@{path}") as transport:
        with pytest.raises(BusUnavailable, match="refused the password"):
            await transport.ping()
    async with open_redis_transport(f"unix://{path}") as transport:
        with pytest.raises(BusUnavailable, match="NOAUTH"):
            await transport.ping()


async def test_redis_gone_is_bus_unavailable(tmp_path: Path) -> None:
    async with open_redis_transport(f"unix://{tmp_path}/nothing.sock") as transport:
        with pytest.raises(BusUnavailable):
            await transport.ping()
        with pytest.raises(BusUnavailable):
            await transport.pop("q", 1, 1)
