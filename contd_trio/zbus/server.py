"""A zbus server on Trio: one reader, one task per request, one standby writer.

The reader takes requests only while a worker slot is free, as Go's server
does, so requests it cannot serve stay in Redis. Status requests need no
slot: the reader answers them itself, even when every slot is busy (it then
waits on the status queue and a private wake-up list that a finishing request
pushes to). Each request runs in its own task under its own deadline and
always gets an answer. A request that only waits (a Run's settle window) can
lend its slot back meanwhile (:func:`slot_lent`), so waiting never holds
capacity another request needs; it takes a slot again, before any new
request does, when the wait is over.

Answers and events wait in an outbox. While the reader is working it carries
them along with its next pop, so under load one round trip to Redis (one
crossing into asyncio, the dearest thing on this path) serves a whole batch.
While the reader is blocked waiting for requests, or Redis is away, a writer
task sends them instead, and keeps them until Redis is back.

Stopping never cancels the reader inside a round trip, where Redis may have
handed it requests already: it is woken (a push to its wake-up list ends its
blocking pop) and returns. A request it took once the stop was asked for is
given back to the head of its queue, for the next daemon; the requests in
flight are served, or cancelled after the grace, and answered either way.
"""

from __future__ import annotations

import collections
import contextvars
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, NamedTuple

import trio
import trio.lowlevel

from .. import logs
from ..backoff import Backoff
from ..text import format_duration, printable
from . import codec
from .dispatch import BoundCall, Dispatcher, Method
from .errors import ProtocolError, ZbusError
from .transport import PULL_TIMEOUT_SECONDS, RedisTransport

log = logging.getLogger("contd.zbus")

DEFAULT_WORKERS = 16
DEFAULT_TIMEOUT_SECONDS = 300.0
#: Status requests taken in one pop; they are cheap to answer.
_STATUS_BATCH = 64
#: Outgoing messages sent in one pipeline at most.
_WRITE_BATCH = 512
#: How long a stopping server keeps trying to send its last answers.
_FLUSH_SECONDS = 5.0
#: How long a stopping server waits, at least, for its reader to come back
#: from Redis; after that it is cancelled, even mid-exchange (Redis is hung).
_READER_STOP_SECONDS = 5.0


class _Outgoing(NamedTuple):
    kind: str  # "reply", "publish", "wake" or "requeue", as RedisTransport.send_batch takes them
    key: bytes
    payload: bytes


class _Lease:
    """The worker slot a request holds: ``slot`` is None while the request
    lends it back (or could not take one again before it was cancelled)."""

    __slots__ = ("action", "server", "slot", "taken_back")

    def __init__(self, server: Server, slot: int, action: str) -> None:
        self.server = server
        self.slot: int | None = slot
        self.action = action
        self.taken_back = trio.Event()


_current_lease: contextvars.ContextVar[_Lease | None] = contextvars.ContextVar(
    "zbus_request_lease", default=None
)


@asynccontextmanager
async def slot_lent() -> AsyncIterator[None]:
    """Inside a request, give its worker slot back while the block only waits
    (for a timer, an event), and take one again when the block ends: before
    any new request, but possibly after waiting for one to free up.

    Outside a request (supervision, a test), or in a block that lends already,
    this does nothing. When the request is cancelled while it waits for a slot
    again, it finishes without one (its clean-up still runs).
    """
    lease = _current_lease.get()
    if lease is None or lease.slot is None:
        yield
        return
    lease.server._lend(lease)
    try:
        yield
    finally:
        await lease.server._take_back(lease)


class Server:
    """Serves registered objects of one module over zbus.

    Args:
        module: the module name (the prefix of every queue).
        transport: a Redis transport this server may block on.
        workers: requests served at once (a request holds a slot while it runs).
        timeout: the deadline of each request, in seconds.
        pull_timeout: how long one blocking pop waits in Redis.
    """

    def __init__(
        self,
        module: str,
        transport: RedisTransport,
        *,
        workers: int = DEFAULT_WORKERS,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        pull_timeout: float = PULL_TIMEOUT_SECONDS,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.module = module
        self.transport = transport
        self.workers = workers
        self.timeout = timeout
        self.pull_timeout = pull_timeout
        self.dispatcher = Dispatcher()
        now = codec.timestamp_now()
        self._slots = [codec.WorkerStatus("free", now) for _ in range(workers)]
        self._free_slots = list(range(workers - 1, -1, -1))
        # Requests that lent their slot and want one again, first come first served.
        self._returning: collections.deque[_Lease] = collections.deque()
        # Free slots promised to the reader's exchange under way (see _take_back).
        self._reserved = 0
        self._active = 0  # requests running, with or without a slot
        self._status_queue = codec.queue_name(module, codec.STATUS_OBJECT)
        self._wake_key = f"{module}.zbus.wake.{uuid.uuid4()}"
        self._parked = False
        self._outbox: collections.deque[_Outgoing] = collections.deque()
        # True while the reader will not send soon (blocked in Redis, backing
        # off, or stopped): the writer sends the outbox then.
        self._reader_waiting = True
        self._writer_wakeup = trio.Event()
        self._stopping = False
        self._drained = trio.Event()  # set by the writer once a stopping server's outbox is sent
        self._stopped = trio.Event()
        self._closing = False  # stop() was called: the reader takes nothing more
        self._reader_done = trio.Event()
        self._backing_off = trio.CancelScope()  # the reader's wait for Redis to come back
        self._accepting = trio.CancelScope()
        self._requests_scope = trio.CancelScope()
        self._idle = trio.Event()
        self._idle.set()
        self._rotation = 0

    # -- registration and events -----------------------------------------------------

    def register(self, object_id: codec.ObjectID, methods: Mapping[str, Method]) -> None:
        self.dispatcher.register(object_id, methods)

    def publish_nowait(self, object_id: codec.ObjectID, event: str, value: Any) -> None:
        """Queue an event for channel ``<module>.<object>.<event>``; it leaves
        with the next batch, or once Redis is back."""
        channel = codec.event_channel(self.module, object_id, event)
        self._send_soon(_Outgoing("publish", channel.encode(), codec.pack(value)))

    # -- status ----------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Requests being served, including those lending their slot."""
        return self._active

    @property
    def lending(self) -> int:
        """Requests being served without a slot (waiting, or waiting for one again)."""
        return self._active - (self.workers - len(self._free_slots))

    def status(self) -> codec.Status:
        """Go's Status: the objects served and one entry per worker slot."""
        return codec.Status(objects=self.dispatcher.objects(), workers=list(self._slots))

    # -- life cycle ------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled, or until :meth:`stop` was called and the
        requests in flight have answered. Retries Redis with backoff and never
        gives up on its own."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._write_outgoing)
            with self._requests_scope:
                async with trio.open_nursery() as requests:
                    task_status.started()
                    with self._accepting:
                        await self._read_requests(requests)
                    self._reader_waiting = True
                    self._writer_wakeup.set()
            # Stopping: the answers of the last requests must still leave.
            self._stopping = True
            self._writer_wakeup.set()
            with trio.move_on_after(_FLUSH_SECONDS):
                await self._drained.wait()
            if not self._drained.is_set():
                logs.event(log, logging.ERROR, "answers lost at shutdown", count=len(self._outbox))
            nursery.cancel_scope.cancel()
        self._stopped.set()

    async def stop(self, grace: float) -> None:
        """Stop taking requests, give in-flight ones ``grace`` seconds, then
        cancel the rest (each still answers its caller).

        The reader is woken, not cancelled: a round trip cut short would lose
        what Redis handed over in it. Only a reader that Redis keeps waiting
        past the grace (and at least :data:`_READER_STOP_SECONDS`) is cancelled.
        """
        deadline = trio.current_time() + grace
        self._closing = True
        self._backing_off.cancel()
        self._send_soon(_Outgoing("wake", self._wake_key.encode(), b""))
        with trio.move_on_at(max(deadline, trio.current_time() + _READER_STOP_SECONDS)):
            await self._reader_done.wait()
        if not self._reader_done.is_set():
            logs.event(
                log, logging.ERROR, "redis kept the reader waiting at shutdown: cancelling it mid-exchange"
            )
            self._accepting.cancel()
        with trio.move_on_at(deadline):
            await self._idle.wait()
        self._requests_scope.cancel()

    async def wait_stopped(self) -> None:
        """Wait until :meth:`serve` has stopped after :meth:`stop` (its last
        answers sent, or given up on after a bound)."""
        await self._stopped.wait()

    # -- the reader ------------------------------------------------------------------

    async def _read_requests(self, requests: trio.Nursery) -> None:
        try:
            await self._read_until_closing(requests)
        finally:
            self._reader_done.set()

    async def _read_until_closing(self, requests: trio.Nursery) -> None:
        object_queues = [codec.queue_name(self.module, o) for o in self.dispatcher.objects()]
        backoff = Backoff()
        unavailable = False
        while not self._closing:
            free = len(self._free_slots)
            if free:
                self._parked = False
                queues = self._rotated(object_queues)
            else:
                # Every slot is busy: answer status requests only, until woken.
                self._parked = True
                queues = [self._wake_key]
            # Answers waiting to leave ride along with the pop: under load, one
            # round trip (and one crossing into asyncio) serves a whole batch.
            outgoing = self._take_outbox()
            taken: list[tuple[str, bytes]] | None = None
            failure: ZbusError | None = None
            self._reserved = free
            try:
                taken = await self.transport.exchange(
                    outgoing,
                    codec.REPLY_TTL_SECONDS,
                    self._status_queue,
                    _STATUS_BATCH,
                    queues,
                    free,
                    self.pull_timeout,
                    self._on_reader_blocked,
                    # Always waited on: stop() ends a blocking pop through it.
                    self._wake_key,
                )
            except ZbusError as exc:
                failure = exc
            finally:
                self._reader_waiting = False
                self._reserved = 0
                if taken is None and outgoing:
                    # Not known to have left: send them again (a duplicate answer is harmless).
                    self._outbox.extendleft(reversed(outgoing))
            if taken is None:
                delay = backoff.next()
                logs.event(
                    log, logging.WARNING, "redis unavailable, retrying", error=str(failure), retry_in=delay
                )
                unavailable = True
                self._on_reader_blocked()
                with self._backing_off:
                    await trio.sleep(delay)
                self._backing_off = trio.CancelScope()
                self._reader_waiting = False
                continue
            if unavailable:
                logs.event(log, logging.INFO, "redis reachable again")
                unavailable = False
            backoff.reset()
            given_back: list[_Outgoing] = []
            for queue, payload in taken:
                if queue == self._wake_key:
                    continue
                if self._closing and queue != self._status_queue:
                    # Taken after the stop was asked for: not started here,
                    # but given back for the next daemon.
                    given_back.append(_Outgoing("requeue", queue.encode(), payload))
                    continue
                self._accept(queue == self._status_queue, payload, requests)
            # Slots the exchange was promised but did not use go to requests
            # that lent theirs and want one again.
            self._hand_over()
            if given_back:
                logs.event(log, logging.INFO, "stopping: requests given back to redis", count=len(given_back))
            # Pushed to the head last one first, so the queue keeps its order.
            for message in reversed(given_back):
                self._send_soon(message)
            if taken:
                # Let the requests just started run first: those that finish at
                # once put their answers in the outbox in time to ride along.
                await trio.lowlevel.checkpoint()
                await trio.lowlevel.checkpoint()

    def _on_reader_blocked(self) -> None:
        self._reader_waiting = True
        if self._outbox:
            self._writer_wakeup.set()

    def _rotated(self, queues: list[str]) -> list[str]:
        # Queues are served in order: rotate so that no object starves another.
        if len(queues) < 2:
            return queues
        self._rotation = (self._rotation + 1) % len(queues)
        return queues[self._rotation :] + queues[: self._rotation]

    def _accept(self, is_status: bool, payload: bytes, requests: trio.Nursery) -> None:
        """Answer or start one request. Whatever a payload holds, this never
        raises: one bad request must not stop the reader, which serves all."""
        try:
            self._accept_one(is_status, payload, requests)
        except Exception:  # a bug, triggered by this payload: drop it, keep serving
            log.exception("dropped a request that could not be handled (%d bytes)", len(payload))

    def _accept_one(self, is_status: bool, payload: bytes, requests: trio.Nursery) -> None:
        try:
            request = codec.decode_request(payload)
        except codec.MalformedPayload as exc:
            if exc.reply_to is None:
                logs.event(
                    log,
                    logging.WARNING,
                    "dropped a payload that is not a request",
                    reason=exc.reason,
                    size=len(payload),
                )
                return
            logs.event(log, logging.WARNING, "malformed request", reason=exc.reason, reply_to=exc.reply_to)
            self._reply(
                exc.reply_to, codec.Response(id=exc.request_id, error=f"invalid request: {exc.reason}")
            )
            return
        if is_status:
            data = codec.pack(self.status())
            self._reply(request.reply_to, codec.Response(id=request.id, output=codec.Output(data=data)))
            return
        try:
            call = self.dispatcher.bind(request)
        except ProtocolError as exc:
            logs.event(
                log,
                logging.WARNING,
                "protocol error",
                object=request.object,
                method=request.method,
                error=exc.message,
            )
            self._reply(request.reply_to, codec.Response(id=request.id, error=exc.message))
            return
        slot = self._free_slots.pop()
        self._slots[slot] = codec.WorkerStatus("busy", codec.timestamp_now(), call.action)
        self._active += 1
        if self._idle.is_set():
            self._idle = trio.Event()
        requests.start_soon(self._handle, call, request, _Lease(self, slot, call.action))

    # -- one request -------------------------------------------------------------------

    async def _handle(self, call: BoundCall, request: codec.Request, lease: _Lease) -> None:
        started = time.monotonic()
        output: codec.Output | None = None
        _current_lease.set(lease)  # this task's own context: seen by slot_lent()
        try:
            with trio.move_on_after(self.timeout):
                try:
                    output = await call.run()
                except Exception as exc:  # a bug in a method: it must still answer
                    log.exception("unexpected error in %s (request %s)", call.action, printable(request.id))
                    output = codec.Output(
                        data=call.method.zero_results(),
                        error=f"internal error: {type(exc).__name__}: {exc}",
                    )
            if output is None:
                output = codec.Output(
                    data=call.method.zero_results(),
                    error=f"{call.action} timed out after {format_duration(self.timeout)}",
                )
        finally:
            if output is None:
                # Cancelled by a shutdown: still tell the caller, who would wait forever.
                output = codec.Output(
                    data=call.method.zero_results(),
                    error=f"{call.action} cancelled: the daemon is shutting down",
                )
            self._reply(request.reply_to, codec.Response(id=request.id, output=output))
            self._finish(lease)
            if log.isEnabledFor(logging.INFO):
                logs.event(
                    log,
                    logging.INFO,
                    "request done" if output.error is None else "request failed",
                    request=request.id,
                    method=call.action,
                    **call.context(),
                    duration=round(time.monotonic() - started, 6),
                    error=output.error,
                )

    def _finish(self, lease: _Lease) -> None:
        if lease in self._returning:  # cancelled while waiting for a slot again
            self._returning.remove(lease)
        if lease.slot is not None:
            self._release(lease.slot)
            lease.slot = None
        self._active -= 1
        if not self._active:
            self._idle.set()

    def _release(self, slot: int) -> None:
        """A slot is free: a request that lent its own gets it, or else the reader."""
        if self._returning:
            self._give(self._returning.popleft(), slot)
            return
        self._slots[slot] = codec.WorkerStatus("free", codec.timestamp_now())
        self._free_slots.append(slot)
        if self._parked:
            self._parked = False
            self._send_soon(_Outgoing("wake", self._wake_key.encode(), b""))

    def _give(self, lease: _Lease, slot: int) -> None:
        lease.slot = slot
        self._slots[slot] = codec.WorkerStatus("busy", codec.timestamp_now(), lease.action)
        lease.taken_back.set()

    def _lend(self, lease: _Lease) -> None:
        assert lease.slot is not None
        slot, lease.slot = lease.slot, None
        lease.taken_back = trio.Event()
        self._release(slot)

    async def _take_back(self, lease: _Lease) -> None:
        # The reader's exchange under way may take as many requests as there
        # were free slots when it started: those slots are not up for grabs.
        if not self._returning and len(self._free_slots) > self._reserved:
            self._give(lease, self._free_slots.pop())
            return
        self._returning.append(lease)
        try:
            await lease.taken_back.wait()
        except BaseException:
            if lease.slot is None and lease in self._returning:
                self._returning.remove(lease)
            raise

    def _hand_over(self) -> None:
        while self._returning and self._free_slots:
            self._give(self._returning.popleft(), self._free_slots.pop())

    # -- the outbox and its writer ---------------------------------------------------------

    def _reply(self, reply_to: str, response: codec.Response) -> None:
        try:
            payload = codec.encode_response(response)
        except Exception:  # a bug: the caller must still hear something
            log.exception("could not encode the answer to request %s", printable(response.id))
            payload = codec.encode_response(
                codec.Response(
                    id=response.id,
                    output=codec.Output(error="internal error: the answer could not be encoded"),
                )
            )
        self._send_soon(_Outgoing("reply", codec.wire_key(reply_to), payload))

    def _send_soon(self, message: _Outgoing) -> None:
        self._outbox.append(message)
        if self._reader_waiting:
            self._writer_wakeup.set()

    def _take_outbox(self) -> list[_Outgoing]:
        count = min(len(self._outbox), _WRITE_BATCH)
        return [self._outbox.popleft() for _ in range(count)]

    async def _write_outgoing(self) -> None:
        backoff = Backoff()
        while True:
            await self._writer_wakeup.wait()
            self._writer_wakeup = trio.Event()
            while self._outbox and (self._reader_waiting or self._stopping):
                batch = self._take_outbox()
                try:
                    await self.transport.send_batch(batch, codec.REPLY_TTL_SECONDS)
                except ZbusError as exc:
                    self._outbox.extendleft(reversed(batch))
                    delay = backoff.next()
                    logs.event(
                        log,
                        logging.WARNING,
                        "could not send answers, keeping them",
                        pending=len(self._outbox),
                        error=str(exc),
                        retry_in=delay,
                    )
                    await trio.sleep(delay)
                    continue
                backoff.reset()
            if self._stopping and not self._outbox:
                self._drained.set()
