"""Redis, as zbus uses it, behind Trio-native methods.

This is the only module that imports redis (and, with it, asyncio). Every
redis object is created and awaited inside the trio-asyncio loop here; the
rest of the code sees plain Trio coroutines that raise
:class:`~contd_trio.zbus.errors.BusUnavailable` when Redis is away.

Crossing into asyncio costs about 35 µs under trio-asyncio and every Redis
command through redis-py's client about 150 µs (a bare asyncio stream round
trip: 50 µs), so the server's hot path is one crossing and one command per
batch: a Lua script, called by its SHA, that sends the pending answers and
takes the waiting requests together, on a connection the exchange keeps to
itself (no pool work per command). Deadlines are Trio's (a cancel scope
around each crossing), not redis-py's per-read socket timeouts, which cost an
asyncio timer per read.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
import redis.exceptions
import trio
import trio_asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from .errors import BusUnavailable, ZbusError

#: How long one BLPOP blocks in Redis (Go zbus: 10 s).
PULL_TIMEOUT_SECONDS = 10
#: A command that gets no answer this long after it should have is treated as
#: a dead connection (the crossing is cancelled, which drops the connection).
COMMAND_TIMEOUT_SECONDS = 10

# Sends the outgoing messages, then takes waiting requests; one round trip.
# KEYS: [1] the priority queue, [2 .. 1+nq] the other queues in order, then one
#       key per outgoing message.
# ARGV: [1] ttl of reply keys, [2] most items taken from the priority queue,
#       [3] most items taken from the other queues together, [4] nq, then a
#       (kind, payload) pair per outgoing message: kind "p" publishes on the
#       key, "l" LPUSHes to it (a request given back to the head of its
#       queue), anything else RPUSHes to it and sets it to expire.
# Returns {refused, index, payload, index, payload, ...}: how many commands
# Redis refused (a key of the wrong type: that one message is dropped, the
# others still go), then each taken payload with the index of its queue.
_EXCHANGE_SCRIPT = """
local ttl = tonumber(ARGV[1])
local nq = tonumber(ARGV[4])
local refused = 0
local function try(...)
  local reply = redis.pcall(...)
  if type(reply) == 'table' and reply.err then refused = refused + 1; return nil end
  return reply
end
local k = 2 + nq
for i = 5, #ARGV, 2 do
  if ARGV[i] == 'p' then
    try('PUBLISH', KEYS[k], ARGV[i + 1])
  elseif ARGV[i] == 'l' then
    try('LPUSH', KEYS[k], ARGV[i + 1])
  elseif try('RPUSH', KEYS[k], ARGV[i + 1]) then
    try('EXPIRE', KEYS[k], ttl)
  end
  k = k + 1
end
local out = {0}
local function take(index, count)
  if count <= 0 then return 0 end
  local items = try('LPOP', KEYS[index], count)
  if not items then return 0 end
  for _, item in ipairs(items) do
    out[#out + 1] = index
    out[#out + 1] = item
  end
  return #items
end
take(1, tonumber(ARGV[2]))
local budget = tonumber(ARGV[3])
for index = 2, 1 + nq do
  budget = budget - take(index, budget)
end
out[1] = refused
return out
"""


_EXCHANGE_SHA = hashlib.sha1(_EXCHANGE_SCRIPT.encode()).hexdigest()


class BusCommandError(ZbusError):
    """Redis refused a command (a key of the wrong type, say)."""


@dataclass(frozen=True)
class BrokerAddress:
    """Where Redis listens: a unix socket path or a TCP host and port."""

    unix_path: str | None = None
    host: str | None = None
    port: int = 6379
    password: str | None = None

    def __str__(self) -> str:
        return f"unix://{self.unix_path}" if self.unix_path else f"tcp://{self.host}:{self.port}"

    def pool_kwargs(self) -> dict[str, Any]:
        """Connection arguments for a redis.asyncio connection pool."""
        if self.unix_path:
            return {
                "connection_class": aioredis.UnixDomainSocketConnection,
                "path": self.unix_path,
                "password": self.password,
            }
        return {"host": self.host, "port": self.port, "password": self.password}

    def redis_kwargs(self) -> dict[str, Any]:
        """Connection arguments for a redis.Redis client (sync or async)."""
        if self.unix_path:
            return {"unix_socket_path": self.unix_path, "password": self.password}
        return {"host": self.host, "port": self.port, "password": self.password}


def parse_broker_url(url: str) -> BrokerAddress:
    """Read a zbus broker address: ``unix:///path``, ``tcp://host:port`` (Go
    zbus's two forms) or ``redis://host:port``; a user part is the password.

    Raises:
        ValueError: the address is not of one of those forms.
    """
    parts = urlsplit(url)
    password = unquote(parts.username) if parts.username else None
    if parts.password:
        password = unquote(parts.password)
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError(f"broker {url!r}: unix:// needs a socket path")
        return BrokerAddress(unix_path=parts.path, password=password)
    if parts.scheme in ("tcp", "redis"):
        if not parts.hostname:
            raise ValueError(f"broker {url!r}: {parts.scheme}:// needs a host")
        try:
            port = parts.port or 6379
        except ValueError as exc:
            raise ValueError(f"broker {url!r}: bad port") from exc
        return BrokerAddress(host=parts.hostname, port=port, password=password)
    raise ValueError(f"broker {url!r}: unknown scheme {parts.scheme!r}, expecting unix or tcp")


#: (kind, key, payload): kind "reply", "wake", "publish" or "requeue"; the key
#: as the bytes Redis gets, since a caller's ReplyTo need not be valid UTF-8.
Outgoing = tuple[str, bytes, bytes]


_KIND_CODES = {"publish": "p", "requeue": "l"}


def _exchange_args(
    outgoing: Sequence[Outgoing],
    ttl: int,
    priority_queue: str,
    priority_limit: int,
    queues: Sequence[str],
    budget: int,
) -> list[Any]:
    keys: list[Any] = [priority_queue, *queues]
    argv: list[Any] = [ttl, priority_limit, budget, len(queues)]
    for kind, key, payload in outgoing:
        keys.append(key)
        argv.append(_KIND_CODES.get(kind, "r"))
        argv.append(payload)
    return [_EXCHANGE_SCRIPT, len(keys), *keys, *argv]


class RedisTransport:
    """The Redis commands zbus needs, each one crossing into asyncio once.

    Blocking pops run on connections of their own so they never hold up
    other commands.
    """

    def __init__(self, address: BrokerAddress) -> None:
        self.address = address
        self._blocking: aioredis.Redis | None = None
        self._commands: aioredis.Redis | None = None
        # The exchange's own connection (one exchange at a time uses it; a
        # concurrent one takes a pooled connection instead).
        self._exchanger: aioredis.Connection | None = None
        self._exchanging = False
        #: Commands Redis refused inside exchanges (messages dropped), for logs and tests.
        self.refused = 0

    async def _open(self) -> None:
        kwargs = self.address.pool_kwargs()
        common: dict[str, Any] = {
            "socket_timeout": None,
            "socket_connect_timeout": COMMAND_TIMEOUT_SECONDS,
            # Retrying is the caller's business (with its own backoff and logs);
            # redis-py's retries would stall a command for seconds, silently.
            "retry": Retry(NoBackoff(), 0),
        }
        # Blocking pools: a burst of concurrent commands waits for a connection
        # instead of failing with "Too many connections".
        # from_pool: the client owns its pool and closes it with itself.
        self._blocking = aioredis.Redis.from_pool(
            aioredis.BlockingConnectionPool(**kwargs, **common, max_connections=8, timeout=None)
        )
        self._commands = aioredis.Redis.from_pool(
            aioredis.BlockingConnectionPool(**kwargs, **common, max_connections=32, timeout=None)
        )

    async def _close(self) -> None:
        if self._exchanger is not None:
            await self._exchanger.disconnect()
        for client in (self._blocking, self._commands):
            if client is not None:
                await client.aclose()

    async def _run(self, timeout: float, coro_fn: Any, *args: Any) -> Any:
        try:
            with trio.fail_after(timeout):
                return await trio_asyncio.aio_as_trio(coro_fn)(*args)
        except trio.TooSlowError as exc:
            raise BusUnavailable(f"redis did not answer within {timeout:g} seconds") from exc
        except redis.exceptions.ResponseError as exc:
            raise BusCommandError(f"redis refused the command: {exc}") from exc
        except (redis.exceptions.RedisError, OSError, EOFError) as exc:
            raise BusUnavailable(f"redis unavailable: {exc or type(exc).__name__}") from exc

    # -- the server's exchange ------------------------------------------------------

    async def exchange(
        self,
        outgoing: Sequence[Outgoing],
        ttl: int,
        priority_queue: str,
        priority_limit: int,
        queues: Sequence[str],
        budget: int,
        block: float,
        on_block: Callable[[], None] | None = None,
        wake_key: str | None = None,
    ) -> list[tuple[str, bytes]]:
        """Send ``outgoing`` (as :meth:`send_batch`) and take waiting requests,
        in one round trip.

        Takes up to ``priority_limit`` items from ``priority_queue``, then up
        to ``budget`` items in all from ``queues`` in order. When nothing was
        waiting and ``block`` is positive, waits up to ``block`` seconds for
        the first item to come to any of them (or to ``wake_key``, which
        only ever ends the wait), and returns just that one.

        ``on_block`` is called, synchronously and in the Trio thread, right
        before such a wait: the caller learns that nothing it queues from now
        on would leave with this exchange.

        Returns:
            ``(queue, payload)`` pairs in the order taken; empty when nothing came.
        Raises:
            BusUnavailable: Redis is unreachable; nothing was taken, though some
                of ``outgoing`` may have been sent.
        """
        args = _exchange_args(outgoing, ttl, priority_queue, priority_limit, queues, budget)
        taken: list[tuple[str, bytes]] = await self._run(
            block + COMMAND_TIMEOUT_SECONDS,
            self._aio_exchange,
            args,
            [priority_queue, *queues],
            block,
            on_block,
            wake_key,
        )
        return taken

    async def _aio_exchange(
        self,
        args: list[Any],
        keys: list[str],
        block: float,
        on_block: Callable[[], None] | None,
        wake_key: str | None,
    ) -> list[tuple[str, bytes]]:
        assert self._blocking is not None
        if self._exchanging:
            return await self._exchange_on(None, args, keys, block, on_block, wake_key)
        if self._exchanger is None:
            make_connection: Any = self._blocking.connection_pool.make_connection  # untyped in redis-py
            self._exchanger = make_connection()
        self._exchanging = True
        try:
            return await self._exchange_on(self._exchanger, args, keys, block, on_block, wake_key)
        except BaseException:
            # Cut short (cancelled, or the connection broke): what Redis
            # still sends on it would be read as the next command's answer.
            await self._exchanger.disconnect(nowait=True)
            raise
        finally:
            self._exchanging = False

    async def _exchange_on(
        self,
        conn: aioredis.Connection | None,
        args: list[Any],
        keys: list[str],
        block: float,
        on_block: Callable[[], None] | None,
        wake_key: str | None,
    ) -> list[tuple[str, bytes]]:
        result = await self._evalsha(conn, args)
        self.refused += int(result[0])
        if len(result) > 1:
            return [(keys[int(result[i]) - 1], result[i + 1]) for i in range(1, len(result), 2)]
        if block <= 0:
            return []
        if on_block is not None:
            on_block()
        # BLPOP takes fractions of a second since Redis 6; 0 would mean forever.
        waited_on = keys if wake_key is None or wake_key in keys else [*keys, wake_key]
        item = await self._execute(conn, "BLPOP", *waited_on, max(block, 0.01))
        if item is None:
            return []
        raw_queue, payload = item
        queue = raw_queue.decode() if isinstance(raw_queue, bytes) else str(raw_queue)
        # The pools do not decode responses: payloads are bytes.
        assert isinstance(payload, bytes)
        return [(queue, payload)]

    async def _execute(self, conn: aioredis.Connection | None, *command: Any) -> Any:
        """One command on ``conn``, or on a pooled blocking connection when None."""
        if conn is None:
            assert self._blocking is not None
            execute: Any = self._blocking.execute_command  # untyped in redis-py
            return await execute(*command)
        await conn.send_command(*command)
        return await conn.read_response()

    async def _evalsha(self, conn: aioredis.Connection | None, args: list[Any]) -> Any:
        """The exchange script by its SHA (not its 1.3 kB of text each time);
        loaded with EVAL when Redis does not know it (yet, or any more)."""
        try:
            return await self._execute(conn, "EVALSHA", _EXCHANGE_SHA, *args[1:])
        except redis.exceptions.NoScriptError:
            return await self._execute(conn, "EVAL", *args)

    async def pop(self, queue: str, block: float, limit: int) -> list[bytes]:
        """Take up to ``limit`` items from ``queue``, waiting up to ``block``
        seconds for the first when it is empty.

        Raises:
            BusUnavailable: Redis is unreachable.
        """
        taken = await self.exchange((), 0, queue, limit, (), 0, block)
        # After a blocking pop (one item), more may be waiting already: the
        # caller's next pop takes them in one batch, this one answers at once.
        return [payload for _queue, payload in taken]

    # -- commands ----------------------------------------------------------------

    async def send_batch(self, messages: Sequence[Outgoing], ttl: int) -> None:
        """Send messages in one round trip: a ``publish`` is PUBLISHed on its
        key; a ``requeue`` is LPUSHed to its key (a queue of requests, which
        never expires); a ``reply`` or ``wake`` is RPUSHed to its key, which
        then expires after ``ttl`` seconds. A message Redis refuses is dropped (and
        counted in :attr:`refused`); the others still go."""
        args = _exchange_args(messages, ttl, "", 0, (), 0)
        result = await self._run(COMMAND_TIMEOUT_SECONDS, self._aio_send_batch, args)
        self.refused += int(result[0])

    async def _aio_send_batch(self, args: list[Any]) -> Any:
        assert self._commands is not None
        try:
            return await self._commands.evalsha(_EXCHANGE_SHA, *args[1:])
        except redis.exceptions.NoScriptError:
            return await self._commands.eval(*args)

    async def push(self, queue: str, payload: bytes) -> None:
        """RPUSH one payload."""
        await self._run(COMMAND_TIMEOUT_SECONDS, self._command, "rpush", queue, payload)

    async def publish(self, channel: str | bytes, payload: bytes) -> int:
        """PUBLISH one message; returns how many subscribers got it."""
        return int(await self._run(COMMAND_TIMEOUT_SECONDS, self._command, "publish", channel, payload))

    async def delete(self, *keys: str) -> None:
        await self._run(COMMAND_TIMEOUT_SECONDS, self._command, "delete", *keys)

    async def ping(self) -> None:
        """Check that Redis answers.

        Raises:
            BusUnavailable: it does not.
        """
        await self._run(COMMAND_TIMEOUT_SECONDS, self._command, "ping")

    async def _command(self, name: str, *args: Any) -> Any:
        assert self._commands is not None
        return await getattr(self._commands, name)(*args)

    # -- pub/sub -------------------------------------------------------------------

    @asynccontextmanager
    async def subscribe(self, *channels: str) -> AsyncIterator[Subscription]:
        """Subscribe to channels; the subscription is live once this is entered.

        Raises:
            BusUnavailable: Redis is unreachable (here or while receiving).
        """
        assert self._commands is not None
        pubsub = self._commands.pubsub(ignore_subscribe_messages=True)
        try:
            await self._run(COMMAND_TIMEOUT_SECONDS, pubsub.subscribe, *channels)
            yield Subscription(self, pubsub)
        finally:
            # If the connection is gone already, there is nothing left to close.
            with trio.CancelScope(shield=True), contextlib.suppress(ZbusError):
                await self._run(2, pubsub.aclose)


class Subscription:
    """Messages of a pub/sub subscription, as ``(channel, payload)`` pairs."""

    def __init__(self, transport: RedisTransport, pubsub: Any) -> None:
        self._transport = transport
        self._pubsub = pubsub

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> tuple[str, bytes]:
        return await self.receive()

    async def receive(self) -> tuple[str, bytes]:
        """Wait for the next message.

        Raises:
            BusUnavailable: Redis went away; the subscription is over.
        """
        while True:
            message = await self._transport._run(
                math.inf, self._pubsub.get_message, True, PULL_TIMEOUT_SECONDS
            )
            if message is None or message.get("type") != "message":
                continue
            channel = message["channel"]
            return (channel.decode() if isinstance(channel, bytes) else channel), message["data"]


@asynccontextmanager
async def open_redis_transport(url_or_address: str | BrokerAddress) -> AsyncIterator[RedisTransport]:
    """Open a transport to the broker; connections are made on first use.

    Raises:
        ValueError: the broker address is malformed.
    """
    address = (
        url_or_address if isinstance(url_or_address, BrokerAddress) else parse_broker_url(url_or_address)
    )
    transport = RedisTransport(address)
    await trio_asyncio.aio_as_trio(transport._open)()
    try:
        yield transport
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await trio_asyncio.aio_as_trio(transport._close)()
