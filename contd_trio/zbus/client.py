"""A zbus client on Trio.

Unlike Go's client, which blocks one connection per call on a reply list
named after the request, this one gives every request the same private
``ReplyTo`` and sorts the answers by ID in one background task: hundreds of
concurrent calls cost one blocking connection. Servers see nothing unusual;
zbus has always allowed ``ReplyTo`` to differ from ``ID``.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from .. import logs
from ..backoff import Backoff
from . import codec
from .errors import BusUnavailable, CallError, ProtocolError, RequestTimedOut
from .transport import PULL_TIMEOUT_SECONDS, RedisTransport, Subscription, open_redis_transport

log = logging.getLogger("contd.zbus.client")

_REPLY_BATCH = 256


class _Waiter:
    __slots__ = ("done", "response")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.response: codec.Response | None = None


class Client:
    """Calls methods of zbus objects. Make one with :func:`open_client`."""

    def __init__(self, transport: RedisTransport) -> None:
        self.transport = transport
        self.reply_to = f"zbus.client.{uuid.uuid4()}"
        self._waiting: dict[str, _Waiter] = {}

    async def request(
        self,
        module: str,
        object_id: codec.ObjectID | str,
        method: str,
        *args: Any,
        timeout: float | None = None,
    ) -> codec.Response:
        """Send one request and wait for its response.

        Args:
            args: Python values, each encoded on its own as Go would
                (objects with a ``to_go()`` method become Go-shaped maps).
            timeout: seconds to wait for the answer; ``None`` waits as long as
                the surrounding cancel scope allows.
        Raises:
            RequestTimedOut: no answer within ``timeout``.
            BusUnavailable: the request could not be sent.
        """
        if isinstance(object_id, str):
            object_id = codec.ObjectID.parse(object_id)
        request_id = str(uuid.uuid4())
        payload = codec.encode_request(
            codec.Request(
                id=request_id,
                inputs=[codec.pack(a) for a in args],
                object=object_id,
                reply_to=self.reply_to,
                method=method,
            )
        )
        waiter = _Waiter()
        self._waiting[request_id] = waiter
        try:
            await self.transport.push(codec.queue_name(module, object_id), payload)
            with trio.move_on_after(float("inf") if timeout is None else timeout):
                await waiter.done.wait()
        finally:
            del self._waiting[request_id]
        if waiter.response is None:
            raise RequestTimedOut(
                f"no answer from {module}.{object_id} to {method}() within {timeout:g} seconds"
            )
        return waiter.response

    async def call(
        self,
        module: str,
        object_id: codec.ObjectID | str,
        method: str,
        *args: Any,
        timeout: float | None = None,
    ) -> Any:
        """Call a method and return its decoded result: ``None`` when it
        returns nothing, the value when one, a list when several.

        Raises:
            CallError: the method returned an error.
            ProtocolError: the server could not make the call.
            RequestTimedOut: no answer within ``timeout``.
        """
        response = await self.request(module, object_id, method, *args, timeout=timeout)
        if response.error is not None:
            raise ProtocolError(response.error)
        if response.output.error is not None:
            raise CallError(response.output.error)
        if response.output.data is None:
            return None
        return codec.unpack(response.output.data)

    async def status(self, module: str, *, timeout: float | None = 10.0) -> codec.Status:
        """The status object of a module: its objects and what its workers do."""
        response = await self.request(module, codec.STATUS_OBJECT, "Status", timeout=timeout)
        if response.error is not None:
            raise ProtocolError(response.error)
        if response.output.data is None:
            raise ProtocolError("status answer carries no data")
        return codec.decode_status(response.output.data)

    @asynccontextmanager
    async def subscribe(
        self, module: str, object_id: codec.ObjectID | str, event: str
    ) -> AsyncIterator[EventStream]:
        """Subscribe to an object's event stream; yields an iterator of
        decoded event values. Live once entered.

        Raises:
            BusUnavailable: Redis went away (the iterator ends with it).
        """
        if isinstance(object_id, str):
            object_id = codec.ObjectID.parse(object_id)
        channel = codec.event_channel(module, object_id, event)
        async with self.transport.subscribe(channel) as subscription:
            yield EventStream(subscription)

    async def _receive_replies(self) -> None:
        backoff = Backoff()
        while True:
            try:
                payloads = await self.transport.pop(self.reply_to, PULL_TIMEOUT_SECONDS, _REPLY_BATCH)
            except BusUnavailable as exc:
                delay = backoff.next()
                logs.event(
                    log, logging.WARNING, "redis unavailable, retrying", error=str(exc), retry_in=delay
                )
                await trio.sleep(delay)
                continue
            backoff.reset()
            for payload in payloads:
                self._deliver(payload)

    def _deliver(self, payload: bytes) -> None:
        try:
            response = codec.decode_response(payload)
        except codec.MalformedPayload as exc:
            logs.event(log, logging.WARNING, "dropped a reply that is not a response", reason=exc.reason)
            return
        waiter = self._waiting.get(response.id)
        if waiter is None:
            return  # its caller gave up; nobody waits for it any more
        waiter.response = response
        waiter.done.set()


class EventStream:
    """Decoded event values of one subscription."""

    def __init__(self, subscription: Subscription) -> None:
        self._subscription = subscription

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Any:
        _channel, payload = await self._subscription.receive()
        return codec.unpack(payload)


@asynccontextmanager
async def open_client(broker: str) -> AsyncIterator[Client]:
    """A connected client for the broker (``unix:///path`` or ``tcp://host:port``)."""
    async with open_redis_transport(broker) as transport, trio.open_nursery() as nursery:
        client = Client(transport)
        nursery.start_soon(client._receive_replies)
        try:
            yield client
        finally:
            nursery.cancel_scope.cancel()
            # If Redis is away, the key expires on its own.
            with trio.CancelScope(shield=True), trio.move_on_after(2), contextlib.suppress(BusUnavailable):
                await transport.delete(client.reply_to)
