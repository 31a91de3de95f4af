"""containerd's gRPC socket, behind Trio-native calls.

This is the only module that imports grpclib (and, with it, asyncio). One
grpclib channel is made inside the trio-asyncio loop and every call crosses
into asyncio once. Deadlines are Trio's: a call's own timeout is a cancel
scope around it, beside the caller's, and whichever ends first cancels the
gRPC stream (a RST_STREAM), so containerd stops working when we stop
waiting. No ``grpc-timeout`` header is sent: its value differs on every
call, so HPACK could never index it, and each new value pushed the
constant headers out of the dynamic table, which made grpclib encode them
all again on every call (a quarter of the daemon's CPU per containerd call,
profiled); and grpclib's timer for it cost an asyncio timer per call.

Every failure leaves here as a :class:`~contd_trio.errors.ContdError`,
mapped in one table from the gRPC status (as containerd's errdefs does), with
containerd's message (minus a meaningless ``": unknown"``). Losing the socket
(containerd restarting) is :class:`~contd_trio.errors.Unavailable`; the next
call reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import grpclib.exceptions
import h2.exceptions
import trio
import trio_asyncio
from google.protobuf.message import Message
from grpclib.client import Channel, Handler
from grpclib.const import Cardinality, Status
from grpclib.protocol import H2Protocol
from h2.utilities import SizeLimitDict

from .. import errors
from ..text import shorten_middle

#: The metadata key that carries the containerd namespace of a call.
NAMESPACE_HEADER = "containerd-namespace"
#: containerd's default maximum message size.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024

Req = TypeVar("Req", bound=Message)
Rep = TypeVar("Rep", bound=Message)

_ERRORS: dict[Status, type[errors.ContdError]] = {
    Status.INVALID_ARGUMENT: errors.InvalidArgument,
    Status.NOT_FOUND: errors.NotFound,
    Status.ALREADY_EXISTS: errors.AlreadyExists,
    Status.FAILED_PRECONDITION: errors.FailedPrecondition,
    Status.UNAVAILABLE: errors.Unavailable,
    Status.UNIMPLEMENTED: errors.Unimplemented,
    Status.DEADLINE_EXCEEDED: errors.DeadlineExceeded,
}

# containerd ends messages with ": <errdefs class>". Most classes carry the
# meaning ('task "b3": not found' without it reads "task b3") and stay; an
# ": unknown" class says nothing and is dropped.
_MEANINGLESS_SUFFIX = ": unknown"


#: containerd's messages can quote what it was given (runc echoes a whole
#: argv): a caller's 1 MB argument must not come back as a 1 MB error. They
#: are cut in the middle: their end says why.
MAX_MESSAGE_CHARS = 1000


def error_from_status(status: Status, message: str | None) -> errors.ContdError:
    """The daemon's error for a gRPC status from containerd."""
    text = shorten_middle(message or status.name.lower().replace("_", " "), MAX_MESSAGE_CHARS)
    if text.endswith(_MEANINGLESS_SUFFIX) and len(text) > len(_MEANINGLESS_SUFFIX):
        text = text[: -len(_MEANINGLESS_SUFFIX)]
    if status is Status.UNKNOWN and text.startswith("context deadline exceeded"):
        # containerd's errdefs reads this Unknown as the context's deadline error.
        return errors.DeadlineExceeded(text)
    return _ERRORS.get(status, errors.ContainerdError)(text)


#: How many closed streams the HTTP/2 connection remembers (see _BoundedH2Protocol).
CLOSED_STREAMS_KEPT = 1024


class _BoundedH2Protocol(H2Protocol):
    """grpclib's HTTP/2 protocol, remembering fewer closed streams.

    h2's ``H2Connection`` records how every closed stream was closed
    (``_closed_streams``, a ``SizeLimitDict`` of up to
    ``H2Connection.MAX_CLOSED_STREAMS`` = 65,536 entries), so that a frame
    still in flight for a stream it reset is answered with a RST_STREAM
    rather than taken as a connection error. Our one connection lives as
    long as the daemon and opens a stream per call: the record grew with
    the first 65,536 calls (about 130 bytes each, 8 MB) and never shrank.
    Such late frames arrive within a round trip on a unix socket, while a
    few streams close at most, so a thousand entries are plenty; should one
    come later still, h2 takes it as a connection error, grpclib drops the
    connection, calls in flight fail as Unavailable and the next reconnects.
    """

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        h2_connection = self.connection._connection
        h2_connection._closed_streams = SizeLimitDict(size_limit=CLOSED_STREAMS_KEPT)


#: HTTP/2 gives a connection's client streams the odd ids up to 2**31 - 1:
#: about 1.07 billion calls, after which h2 refuses every new stream. A
#: daemon polling a hundred containers' stats each second gets there in
#: four months, so a connection this close to the end is retired: new
#: calls go to a new one. The margin covers calls that took the old
#: connection before it was retired and have not opened their stream yet.
STREAM_IDS_KEPT_IN_RESERVE = 2 * 65_536
#: A retired connection is closed once its last stream ended, and no
#: sooner than this many seconds after it was retired (the calls of the
#: margin above open their streams within that).
RETIRED_CLOSE_AFTER_SECONDS = 10.0


def _stream_ids_left(protocol: H2Protocol) -> int:
    h2_connection = protocol.connection._connection
    highest: int = h2_connection.HIGHEST_ALLOWED_STREAM_ID
    return highest - (h2_connection.highest_outbound_stream_id or 0)


class _Channel(Channel):
    """A grpclib channel whose connections are :class:`_BoundedH2Protocol`,
    moving to a new connection before one runs out of stream ids."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Connections retired with streams still open (an event
        #: subscription lasts as long as the daemon), and when.
        self._retired: list[tuple[H2Protocol, float]] = []

    def _protocol_factory(self) -> H2Protocol:
        return _BoundedH2Protocol(Handler(), self._config, self._h2_config)

    async def __connect__(self) -> H2Protocol:
        protocol = self._protocol
        if protocol is not None and _stream_ids_left(protocol) < STREAM_IDS_KEPT_IN_RESERVE:
            self._retired.append((protocol, self._loop.time()))
            self._protocol = None
        if self._retired:
            self._close_idle_retired()
        return await super().__connect__()

    def _close_idle_retired(self) -> None:
        now = self._loop.time()
        still_open = []
        for protocol, retired_at in self._retired:
            if protocol.connection.is_closing():
                continue
            if protocol.processor.streams or now - retired_at < RETIRED_CLOSE_AFTER_SECONDS:
                still_open.append((protocol, retired_at))
            else:
                protocol.processor.close()
        self._retired = still_open

    def close(self) -> None:
        for protocol, _ in self._retired:
            protocol.processor.close()
        self._retired = []
        super().close()


@dataclass(frozen=True)
class Rpc(Generic[Req, Rep]):
    """One gRPC method: its full path and its message types."""

    path: str  # "/containerd.services.version.v1.Version/Version"
    request_type: type[Req]
    reply_type: type[Rep]


class ContainerdChannel:
    """Calls into containerd on one unix socket. Make one with :func:`open_channel`.

    Args:
        socket_path: containerd's socket (also named in errors).
        grpc_channel: a grpclib channel to use instead of one on the socket,
            made and closed by the caller. Component tests pass a
            ``grpclib.testing.ChannelFor`` here to inject faults; the daemon
            never does.
    """

    def __init__(self, socket_path: Path, grpc_channel: Channel | None = None) -> None:
        self.socket_path = socket_path
        self._channel: Channel | None = grpc_channel
        self._owns_channel = grpc_channel is None

    async def _open(self) -> None:
        # grpclib binds the running asyncio loop when the channel is made.
        if self._channel is None:
            self._channel = _Channel(path=str(self.socket_path))

    async def _close(self) -> None:
        if self._channel is not None and self._owns_channel:
            self._channel.close()

    def _unavailable(self, exc: BaseException) -> errors.Unavailable:
        reason = str(exc) or type(exc).__name__
        return errors.Unavailable(f"containerd at {self.socket_path} unavailable: {reason}")

    @staticmethod
    def _metadata(namespace: str | None) -> list[tuple[str, str]] | None:
        return [(NAMESPACE_HEADER, namespace)] if namespace else None

    async def _cross(self, coro_fn: Any, *args: Any) -> Any:
        """Run an asyncio coroutine function and map every failure."""
        try:
            return await trio_asyncio.aio_as_trio(coro_fn)(*args)
        except grpclib.exceptions.GRPCError as exc:
            raise error_from_status(exc.status, exc.message) from exc
        except TimeoutError as exc:  # grpclib's deadline (asyncio.TimeoutError is TimeoutError)
            raise errors.DeadlineExceeded("containerd did not answer in time") from exc
        except asyncio.CancelledError as exc:
            # Not a Trio cancellation (that arrives as trio.Cancelled): the
            # connection was torn down under the call.
            await trio.lowlevel.checkpoint_if_cancelled()
            raise self._unavailable(exc) from exc
        except (
            OSError,
            EOFError,
            grpclib.exceptions.StreamTerminatedError,
            grpclib.exceptions.ProtocolError,
            h2.exceptions.ProtocolError,
        ) as exc:
            raise self._unavailable(exc) from exc

    async def call(
        self,
        rpc: Rpc[Req, Rep],
        request: Req,
        *,
        namespace: str | None = None,
        timeout: float | None = None,
    ) -> Rep:
        """One unary call.

        Args:
            namespace: the containerd namespace, sent as ``containerd-namespace``.
            timeout: seconds; the caller's Trio deadline applies as well.
        Raises:
            ContdError: the mapped failure (NotFound, AlreadyExists, Unavailable, ...).
        """
        try:
            with trio.fail_after(math.inf if timeout is None else timeout):
                reply: Rep = await self._cross(self._aio_call, rpc, request, self._metadata(namespace))
        except trio.TooSlowError as exc:
            raise errors.DeadlineExceeded(f"containerd did not answer within {timeout:g}s") from exc
        return reply

    async def _aio_call(self, rpc: Rpc[Req, Rep], request: Req, metadata: Any) -> Rep:
        assert self._channel is not None
        async with self._channel.request(
            rpc.path, Cardinality.UNARY_UNARY, rpc.request_type, rpc.reply_type, metadata=metadata
        ) as stream:
            await stream.send_message(request, end=True)
            reply = await stream.recv_message()
            await stream.recv_trailing_metadata()
        assert reply is not None
        return reply

    @asynccontextmanager
    async def server_stream(
        self, rpc: Rpc[Req, Rep], request: Req, *, namespace: str | None = None
    ) -> AsyncIterator[ReplyStream[Rep]]:
        """A server-streaming call, open while this is entered.

        Raises:
            ContdError: the call could not be made, or broke while receiving.
        """
        stream = self._channel_request(rpc, namespace)
        await self._cross(self._aio_open_stream, stream, request)
        try:
            yield ReplyStream(self, stream)
        finally:
            # If the connection is gone already, there is nothing left to close.
            with trio.CancelScope(shield=True), trio.move_on_after(2), contextlib.suppress(errors.ContdError):
                await self._cross(self._aio_close_stream, stream)

    def _channel_request(self, rpc: Rpc[Req, Rep], namespace: str | None) -> Any:
        assert self._channel is not None
        return self._channel.request(
            rpc.path,
            Cardinality.UNARY_STREAM,
            rpc.request_type,
            rpc.reply_type,
            metadata=self._metadata(namespace),
        )

    @staticmethod
    async def _aio_open_stream(stream: Any, request: Message) -> None:
        await stream.__aenter__()
        try:
            await stream.send_message(request, end=True)
        except BaseException as exc:
            # Entered but not yielded to anybody: close it here, or it leaks.
            await stream.__aexit__(type(exc), exc, exc.__traceback__)
            raise

    @staticmethod
    async def _aio_close_stream(stream: Any) -> None:
        await stream.cancel()
        await stream.__aexit__(None, None, None)


class ReplyStream(Generic[Rep]):
    """The replies of a server-streaming call, as a Trio async iterator; it
    ends when containerd ends the stream."""

    def __init__(self, channel: ContainerdChannel, stream: Any) -> None:
        self._channel = channel
        self._stream = stream

    def __aiter__(self) -> ReplyStream[Rep]:
        return self

    async def __anext__(self) -> Rep:
        reply = await self._channel._cross(self._stream.recv_message)
        if reply is None:
            raise StopAsyncIteration
        return reply  # type: ignore[no-any-return]


@asynccontextmanager
async def open_channel(
    socket_path: Path | str, *, grpc_channel: Channel | None = None
) -> AsyncIterator[ContainerdChannel]:
    """A channel on containerd's socket; it connects on first use and
    reconnects after containerd restarts. ``grpc_channel``: see
    :class:`ContainerdChannel`."""
    channel = ContainerdChannel(Path(socket_path), grpc_channel)
    await trio_asyncio.aio_as_trio(channel._open)()
    try:
        yield channel
    finally:
        with trio.CancelScope(shield=True):
            await trio_asyncio.aio_as_trio(channel._close)()
