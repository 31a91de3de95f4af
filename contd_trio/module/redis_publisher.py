"""PUBLISH to a tenant's Redis on plain Trio sockets, for the stats monitors.

The Redis is an endpoint a tenant named, so nothing it does is trusted: the
address its name resolves to must be one a Redis can listen on
(:func:`address_refusal`), each round (connect, send, every reply) must end
within ``timeout``, and each reply within ``max_reply_bytes`` (the
:mod:`contd_trio.resp` reader refuses a longer one as soon as it sees it).
Whatever goes wrong drops the connection and fails the round with
:class:`PublishFailed`; the caller backs off and the next round connects
again.

One publisher is one connection to one Redis, made on first use, carrying
every channel of that Redis a container names: the PUBLISHes of a round are
sent together and their replies read after.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

import trio

from ..resp import INCOMPLETE, ErrorReply, ProtocolError, Reply, ReplyReader, encode_command
from ..text import quote

#: A whole round: resolving, connecting, sending and reading every reply.
ROUND_TIMEOUT = 5.0
#: PUBLISH answers an integer; anything near this long is not Redis answering.
MAX_REPLY_BYTES = 64 * 1024
RECEIVE_BYTES = 16 * 1024

_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")


class PublishFailed(Exception):
    """A round of PUBLISHes did not go through (the reason); the connection is dropped."""


def address_refusal(address: str) -> str | None:
    """Why no Redis can be at IP ``address`` (unspecified, multicast,
    broadcast or reserved), or None: loopback, private and link-local
    addresses are all where a node's services may be."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_multicast:
        return "a multicast address"
    if isinstance(ip, ipaddress.IPv4Address) and (ip.is_reserved or ip in _THIS_NETWORK):
        return "a reserved or broadcast address"
    return None


class RedisPublisher:
    """PUBLISHes each payload on ``channels`` of the Redis at ``host``:``port``."""

    def __init__(
        self,
        host: str,
        port: int,
        channels: Sequence[bytes],
        *,
        timeout: float = ROUND_TIMEOUT,
        max_reply_bytes: int = MAX_REPLY_BYTES,
    ) -> None:
        self.host = host
        self.port = port
        self.channels = list(channels)
        self.timeout = timeout
        self.max_reply_bytes = max_reply_bytes
        self._stream: trio.SocketStream | None = None
        self._reader = ReplyReader(max_reply_bytes)

    @property
    def connected(self) -> bool:
        return self._stream is not None

    async def publish(self, payload: bytes) -> None:
        """Raises: PublishFailed: the reason, in words."""
        try:
            with trio.fail_after(self.timeout):
                await self._round(payload)
            return
        except trio.TooSlowError:
            reason = f"no answer within {self.timeout:g}s"
        except PublishFailed as exc:
            reason = str(exc)
        except ProtocolError as exc:
            reason = f"not a Redis: {exc}"
        except (OSError, trio.BrokenResourceError) as exc:
            reason = str(exc) or type(exc).__name__
        await self.aclose()
        raise PublishFailed(reason)

    async def aclose(self) -> None:
        """Drop the connection (the next round makes another)."""
        stream, self._stream = self._stream, None
        if stream is not None:
            await trio.aclose_forcefully(stream)

    async def _round(self, payload: bytes) -> None:
        if self._stream is None:
            self._stream = await self._connect()
            self._reader = ReplyReader(self.max_reply_bytes)
        stream = self._stream
        await stream.send_all(b"".join(encode_command(b"PUBLISH", ch, payload) for ch in self.channels))
        for _ in self.channels:
            reply = await self._next_reply(stream)
            if isinstance(reply, ErrorReply):
                refusal = reply.message.decode("utf-8", "replace")
                raise PublishFailed(f"PUBLISH refused: {quote(refusal)}")
            if not isinstance(reply, int):
                raise PublishFailed(f"not an answer to PUBLISH: {quote(repr(reply))}")

    async def _next_reply(self, stream: trio.SocketStream) -> Reply:
        while (reply := self._reader.next_reply()) is INCOMPLETE:
            data = await stream.receive_some(RECEIVE_BYTES)
            if not data:
                raise PublishFailed("the connection was closed")
            self._reader.feed(data)
        return reply

    async def _connect(self) -> trio.SocketStream:
        try:
            found = await trio.socket.getaddrinfo(self.host, self.port, type=trio.socket.SOCK_STREAM)
        except UnicodeError as exc:  # a name IDNA cannot encode
            raise PublishFailed(f"{quote(self.host)} is not a name: {exc}") from None
        usable: list[tuple[int, Any]] = []
        refusals: list[str] = []
        for family, _, _, _, sockaddr in found:
            refusal = address_refusal(str(sockaddr[0]))
            if refusal is not None:
                refusals.append(f"{sockaddr[0]} is {refusal}")
            elif (family, sockaddr) not in usable:
                usable.append((family, sockaddr))
        if not usable:
            why = "; ".join(refusals) or "nothing found"
            raise PublishFailed(f"{quote(self.host)} gives no address to send to: {why}")
        error: OSError | None = None
        # The addresses just checked, not the name again: it could resolve elsewhere.
        for address_family, address in usable:
            sock = trio.socket.socket(address_family, trio.socket.SOCK_STREAM)
            connected = False
            try:
                await sock.connect(address)
                connected = True
                return trio.SocketStream(sock)
            except OSError as exc:
                error = exc
            finally:
                if not connected:
                    sock.close()
        assert error is not None
        raise error
