"""Redis, as zbus uses it, behind Trio-native methods, on Trio sockets.

The rest of the code sees plain Trio coroutines that raise
:class:`~contd_trio.zbus.errors.BusUnavailable` when Redis is away. Commands
and replies are RESP, read and written by :mod:`contd_trio.resp` (sans I/O);
this module owns the sockets.

Why not redis-py under trio-asyncio, as the design card first had it: a
sequential call through it cannot reach Go zbus's 0.35 ms. A bare redis-py
loop (RPUSH + BLPOP) answers in 0.78 ms p50 on this machine kind, the same
loop on a Trio socket with our codec in 0.17 ms; each crossing into asyncio
costs about 35 µs and each command through redis-py's client about 150 µs,
against 18 µs for a round trip on a Trio socket.

The server's hot path is one command per batch: a Lua script, called by its
SHA, that sends the pending answers and takes the waiting requests together,
on a connection the exchange keeps to itself. Deadlines are Trio's: a cancel
scope around each command. A command cut short (cancelled, timed out, the
connection broken) drops its connection, since whatever Redis still sends on
it would be read as the next command's answer.
"""

from __future__ import annotations

import hashlib
import math
import select
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import trio

from ..resp import INCOMPLETE, ErrorReply, ProtocolError, Reply, ReplyReader, encode_command
from ..text import quote
from .errors import BusUnavailable, ZbusError

#: How long one BLPOP blocks in Redis (Go zbus: 10 s).
PULL_TIMEOUT_SECONDS = 10
#: A command that gets no answer this long after it should have is treated as
#: a dead connection (the command is cancelled, which drops the connection).
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


#: Redis bounds a bulk string at 512 MB (proto-max-bulk-len); an exchange
#: answers with several. The broker is the node's own: this bound only keeps
#: a confused peer from growing the buffer without end.
MAX_REPLY_BYTES = 1 << 31
MAX_REPLY_DEPTH = 4
RECEIVE_BYTES = 64 * 1024
#: Connections per pool: blocking pops (each holds one while it waits) and
#: other commands; a burst beyond waits for a connection, never fails.
BLOCKING_CONNECTIONS = 8
COMMAND_CONNECTIONS = 32
_NOSCRIPT = b"NOSCRIPT"
_NOT_LET_IN = (b"NOAUTH", b"WRONGPASS")


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

    def redis_kwargs(self) -> dict[str, Any]:
        """Connection arguments for a redis-py client (the tests' and benchmarks' own)."""
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
    shown = quote(_without_password(url))
    try:
        # Strict: a password that is not UTF-8 once decoded would be sent mangled.
        password = unquote(parts.username, errors="strict") if parts.username else None
        if parts.password:
            password = unquote(parts.password, errors="strict")
    except UnicodeDecodeError:
        raise ValueError(f"broker {shown}: the password is not UTF-8 once %-decoded") from None
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError(f"broker {shown}: unix:// needs a socket path")
        return BrokerAddress(unix_path=parts.path, password=password)
    if parts.scheme in ("tcp", "redis"):
        if not parts.hostname:
            raise ValueError(f"broker {shown}: {parts.scheme}:// needs a host")
        try:
            port = parts.port or 6379
        except ValueError as exc:
            raise ValueError(f"broker {shown}: bad port") from exc
        return BrokerAddress(host=parts.hostname, port=port, password=password)
    raise ValueError(f"broker {shown}: unknown scheme {quote(parts.scheme)}, expecting unix or tcp")


def _without_password(url: str) -> str:
    """The address as an error may show it: what precedes its host (the
    password) starred out."""
    scheme, separator, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    if "@" not in authority:
        return url
    return f"{scheme}{separator}***@{authority.rpartition('@')[2]}{slash}{path}"


#: (kind, key, payload): kind "reply", "wake", "publish" or "requeue"; the key
#: as the bytes Redis gets, since a caller's ReplyTo need not be valid UTF-8.
Outgoing = tuple[str, bytes, bytes]


_KIND_CODES = {"publish": b"p", "requeue": b"l"}


def _exchange_args(
    outgoing: Sequence[Outgoing],
    ttl: int,
    priority_queue: str,
    priority_limit: int,
    queues: Sequence[str],
    budget: int,
) -> list[bytes]:
    """The script's arguments after its SHA: the number of keys, the keys, ARGV."""
    keys = [priority_queue.encode(), *(queue.encode() for queue in queues)]
    argv = [b"%d" % ttl, b"%d" % priority_limit, b"%d" % budget, b"%d" % len(queues)]
    for kind, key, payload in outgoing:
        keys.append(key)
        argv.append(_KIND_CODES.get(kind, b"r"))
        argv.append(payload)
    return [b"%d" % len(keys), *keys, *argv]


def _arg(value: str | bytes | int | float) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return repr(value).encode()


class _Connection:
    """One connection to Redis: a command out, its reply in, one at a time.

    A command cut short leaves the connection out of step with Redis, so it
    closes itself: whoever holds it sees :attr:`broken` and drops it.
    """

    def __init__(self, stream: trio.abc.Stream, fileno: int) -> None:
        self._stream = stream
        self._fileno = fileno
        self._reader = ReplyReader(MAX_REPLY_BYTES, MAX_REPLY_DEPTH)
        self.broken = False

    async def call(self, *parts: str | bytes | int | float) -> Reply:
        """Send one command and read its reply (an :class:`ErrorReply` when refused)."""
        await self.send(encode_command(*(_arg(part) for part in parts)))
        return await self.read_reply()

    async def send(self, command: bytes) -> None:
        try:
            await self._stream.send_all(command)
        except BaseException:
            self.close()
            raise

    async def read_reply(self, *, cancel_breaks: bool = True) -> Reply:
        """The next reply. ``cancel_breaks=False`` keeps the connection when
        only a cancellation cuts the wait short: right for a subscription,
        where no reply is owed (a cancelled receive takes no bytes, and what
        part of a message was read stays in the reader)."""
        try:
            while (reply := self._reader.next_reply()) is INCOMPLETE:
                data = await self._stream.receive_some(RECEIVE_BYTES)
                if not data:
                    raise EOFError("redis closed the connection")
                self._reader.feed(data)
        except BaseException as exc:
            if cancel_breaks or not isinstance(exc, trio.Cancelled):
                self.close()
            raise
        return reply

    def stale(self) -> bool:
        """Whether Redis closed the connection (or said something unasked)
        while it sat idle: then it is readable without a command sent."""
        if self.broken:
            return True
        # poll, not select: select refuses a descriptor past FD_SETSIZE
        # (1024), which a daemon holding many files reaches, and every
        # connection would then look stale and be made again per command.
        poller = select.poll()
        poller.register(self._fileno, select.POLLIN)
        try:
            return bool(poller.poll(0))
        except OSError:
            return True

    def close(self) -> None:
        if not self.broken:
            self.broken = True
            # A socket stream closes at once; nothing to wait for.
            self._stream.socket.close()  # type: ignore[attr-defined]


async def _connect(address: BrokerAddress) -> _Connection:
    if address.unix_path is not None:
        stream: trio.SocketStream = await trio.open_unix_socket(address.unix_path)
    else:
        assert address.host is not None
        stream = await trio.open_tcp_stream(address.host, address.port)
    connection = _Connection(stream, stream.socket.fileno())
    if address.password is not None:
        try:
            refusal = await connection.call(b"AUTH", address.password)
        except BaseException:
            connection.close()
            raise
        if isinstance(refusal, ErrorReply):
            connection.close()
            raise BusUnavailable(f"redis refused the password: {refusal.message.decode('utf-8', 'replace')}")
    return connection


async def _bounded(timeout: float, command: Callable[..., Any], *args: Any) -> Any:
    """``command(*args)`` within ``timeout`` seconds, its failures to reach
    Redis worded as :class:`BusUnavailable`."""
    try:
        with trio.fail_after(timeout):
            return await command(*args)
    except trio.TooSlowError as exc:
        raise BusUnavailable(f"redis did not answer within {timeout:g} seconds") from exc
    except ProtocolError as exc:
        raise BusUnavailable(f"redis answered what is not RESP: {exc}") from exc
    except (OSError, EOFError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        raise BusUnavailable(f"redis unavailable: {exc or type(exc).__name__}") from exc


def _checked(reply: Reply) -> Reply:
    if isinstance(reply, ErrorReply):
        if reply.message.startswith(_NOT_LET_IN):
            # No command will go through until the broker's password is right.
            raise BusUnavailable(f"redis refused the connection: {reply.message.decode('utf-8', 'replace')}")
        raise BusCommandError(f"redis refused the command: {reply.message.decode('utf-8', 'replace')}")
    return reply


class _Pool:
    """Connections to reuse, at most ``size`` in use at once."""

    def __init__(self, address: BrokerAddress, size: int) -> None:
        self._address = address
        self._idle: list[_Connection] = []
        self._in_use: set[_Connection] = set()
        self._slots = trio.Semaphore(size)
        self._closed = False

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[_Connection]:
        async with self._slots:
            connection = None
            while self._idle:
                candidate = self._idle.pop()
                if not candidate.stale():
                    connection = candidate
                    break
                candidate.close()
            if connection is None:
                # Bounded and worded here, not by the caller: a blocking pop
                # holds its connection outside any command timeout.
                connection = await _bounded(COMMAND_TIMEOUT_SECONDS, _connect, self._address)
            self._in_use.add(connection)
            try:
                yield connection
            finally:
                self._in_use.discard(connection)
                if self._closed:
                    connection.close()
                elif not connection.broken:
                    self._idle.append(connection)

    def close(self) -> None:
        """Close every connection, those in use too (their commands fail)."""
        self._closed = True
        for connection in [*self._idle, *self._in_use]:
            connection.close()
        self._idle.clear()


class RedisTransport:
    """The Redis commands zbus needs.

    Blocking pops run on connections of their own so they never hold up
    other commands.
    """

    def __init__(self, address: BrokerAddress) -> None:
        self.address = address
        self._blocking = _Pool(address, BLOCKING_CONNECTIONS)
        self._commands = _Pool(address, COMMAND_CONNECTIONS)
        # The exchange's own connection (one exchange at a time uses it; a
        # concurrent one takes a pooled connection instead).
        self._exchanger: _Connection | None = None
        self._exchanging = False
        self._subscriptions: set[_Connection] = set()
        #: Commands Redis refused inside exchanges (messages dropped), for logs and tests.
        self.refused = 0

    def close(self) -> None:
        """Drop every connection (commands in flight fail with BusUnavailable)."""
        if self._exchanger is not None:
            self._exchanger.close()
        for connection in self._subscriptions:
            connection.close()
        self._blocking.close()
        self._commands.close()

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

        ``on_block`` is called, synchronously, right before such a wait: the
        caller learns that nothing it queues from now on would leave with
        this exchange.

        Returns:
            ``(queue, payload)`` pairs in the order taken; empty when nothing came.
        Raises:
            BusUnavailable: Redis is unreachable; nothing was taken, though some
                of ``outgoing`` may have been sent.
            BusCommandError: Redis refused the script.
        """
        args = _exchange_args(outgoing, ttl, priority_queue, priority_limit, queues, budget)
        keys = [priority_queue, *queues]
        async with self._exchange_connection() as connection:
            taken: list[tuple[str, bytes]] = await _bounded(
                block + COMMAND_TIMEOUT_SECONDS,
                self._exchange_on,
                connection,
                args,
                keys,
                block,
                on_block,
                wake_key,
            )
        return taken

    @asynccontextmanager
    async def _exchange_connection(self) -> AsyncIterator[_Connection]:
        """The exchange's own connection (made again when Redis closed it),
        or a pooled one while another exchange holds it."""
        if self._exchanging:
            async with self._blocking.connection() as connection:
                yield connection
            return
        self._exchanging = True
        try:
            if self._exchanger is None or self._exchanger.stale():
                if self._exchanger is not None:
                    self._exchanger.close()
                self._exchanger = None
                self._exchanger = await _bounded(COMMAND_TIMEOUT_SECONDS, _connect, self.address)
            yield self._exchanger
        finally:
            self._exchanging = False

    async def _exchange_on(
        self,
        connection: _Connection,
        args: list[bytes],
        keys: list[str],
        block: float,
        on_block: Callable[[], None] | None,
        wake_key: str | None,
    ) -> list[tuple[str, bytes]]:
        result = await _evalsha(connection, args)
        if not isinstance(result, list) or not result or not isinstance(result[0], int):
            raise ProtocolError(f"the exchange script answered {type(result).__name__}")
        self.refused += result[0]
        if len(result) > 1:
            taken = []
            for i in range(1, len(result) - 1, 2):
                index, payload = result[i], result[i + 1]
                if (
                    not isinstance(index, int)
                    or not 1 <= index <= len(keys)
                    or not isinstance(payload, bytes)
                ):
                    raise ProtocolError("the exchange script answered an item out of shape")
                taken.append((keys[index - 1], payload))
            return taken
        if block <= 0:
            return []
        if on_block is not None:
            on_block()
        # BLPOP takes fractions of a second since Redis 6; 0 would mean forever.
        waited_on = keys if wake_key is None or wake_key in keys else [*keys, wake_key]
        item = _checked(await connection.call(b"BLPOP", *waited_on, max(block, 0.01)))
        if item is None:
            return []
        if not isinstance(item, list) or len(item) != 2 or not all(isinstance(x, bytes) for x in item):
            raise ProtocolError("BLPOP answered out of shape")
        raw_queue, payload = item
        assert isinstance(raw_queue, bytes) and isinstance(payload, bytes)
        return [(raw_queue.decode("utf-8", "replace"), payload)]

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
        result = await self._command_with(_evalsha, args)
        if not isinstance(result, list) or not result or not isinstance(result[0], int):
            raise BusUnavailable(f"redis: the exchange script answered {type(result).__name__}")
        self.refused += result[0]

    async def push(self, queue: str, payload: bytes) -> None:
        """RPUSH one payload."""
        await self._command(b"RPUSH", queue, payload)

    async def publish(self, channel: str | bytes, payload: bytes) -> int:
        """PUBLISH one message; returns how many subscribers got it."""
        count = await self._command(b"PUBLISH", channel, payload)
        return count if isinstance(count, int) else 0

    async def delete(self, *keys: str) -> None:
        await self._command(b"DEL", *keys)

    async def ping(self) -> None:
        """Check that Redis answers.

        Raises:
            BusUnavailable: it does not.
        """
        await self._command(b"PING")

    async def _command(self, *parts: str | bytes | int | float) -> Reply:
        reply: Reply = await self._command_with(_call_checked, parts)
        return reply

    async def _command_with(self, command: Callable[[_Connection, Any], Any], args: Any) -> Any:
        async def on_a_connection() -> Any:
            async with self._commands.connection() as connection:
                return await command(connection, args)

        return await _bounded(COMMAND_TIMEOUT_SECONDS, on_a_connection)

    # -- pub/sub -------------------------------------------------------------------

    @asynccontextmanager
    async def subscribe(self, *channels: str) -> AsyncIterator[Subscription]:
        """Subscribe to channels; the subscription is live once this is entered.

        Raises:
            BusUnavailable: Redis is unreachable (here or while receiving).
        """
        connection: _Connection = await _bounded(COMMAND_TIMEOUT_SECONDS, _connect, self.address)
        self._subscriptions.add(connection)
        try:
            await _bounded(COMMAND_TIMEOUT_SECONDS, _subscribe, connection, channels)
            yield Subscription(connection)
        finally:
            # Closing the connection ends the subscription in Redis.
            self._subscriptions.discard(connection)
            connection.close()


async def _call_checked(connection: _Connection, parts: Sequence[str | bytes | int | float]) -> Reply:
    return _checked(await connection.call(*parts))


async def _evalsha(connection: _Connection, args: list[bytes]) -> Reply:
    """The exchange script by its SHA (not its 1.3 kB of text each time);
    loaded with EVAL when Redis does not know it (yet, or any more)."""
    reply = await connection.call(b"EVALSHA", _EXCHANGE_SHA, *args)
    if isinstance(reply, ErrorReply) and reply.message.startswith(_NOSCRIPT):
        reply = await connection.call(b"EVAL", _EXCHANGE_SCRIPT, *args)
    return _checked(reply)


async def _subscribe(connection: _Connection, channels: Sequence[str]) -> None:
    await connection.send(encode_command(b"SUBSCRIBE", *(channel.encode() for channel in channels)))
    for _ in channels:
        confirmation = _checked(await connection.read_reply())
        if not isinstance(confirmation, list) or not confirmation or confirmation[0] != b"subscribe":
            raise ProtocolError("SUBSCRIBE answered out of shape")


class Subscription:
    """Messages of a pub/sub subscription, as ``(channel, payload)`` pairs.

    A receive may be cancelled (a caller waiting with a timeout): the
    subscription stays live and the next receive gets the next message.
    """

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> tuple[str, bytes]:
        return await self.receive()

    async def _read_message(self) -> Reply:
        return await self._connection.read_reply(cancel_breaks=False)

    async def receive(self) -> tuple[str, bytes]:
        """Wait for the next message.

        Raises:
            BusUnavailable: Redis went away; the subscription is over.
        """
        while True:
            message = await _bounded(math.inf, self._read_message)
            if (
                isinstance(message, list)
                and len(message) == 3
                and message[0] == b"message"
                and isinstance(message[1], bytes)
                and isinstance(message[2], bytes)
            ):
                return message[1].decode("utf-8", "replace"), message[2]


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
    try:
        yield transport
    finally:
        transport.close()
