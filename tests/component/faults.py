"""A fault-injecting proxy between the daemon and the real containerd.

Component tests of the daemon's error handling hand the daemon a grpclib
channel (``open_daemon(config, grpc_channel=proxy.channel)``) that leads to
a :class:`FaultProxy` instead of containerd's socket. The proxy serves every
RPC path the daemon uses (each ``Rpc`` constant of
``contd_trio.containerd.client``) through ``grpclib.testing.ChannelFor``, and
forwards each call to the real containerd over a real grpclib channel on its
socket, with the call's ``containerd-namespace`` and its deadline. Before
and after forwarding it consults its rules, so a test can make one chosen
call fail, hang, succeed late, or run a test hook, deterministically.

This is the only test module that imports asyncio and grpclib (the package
confines them to its bridge modules; see ``contd_trio.containerd.channel``).

How a test drives it, from Trio:

* The proxy runs in the asyncio world of trio-asyncio (the tests run under
  ``trio_asyncio.run``, see ``tests/conftest.py``); rules and records are
  plain Python values that Trio code reads and changes directly.
* Everything a rule waits for or calls is Trio: a :class:`Gate` is a pair of
  ``trio.Event``; a hook is a plain or Trio async function of the
  :class:`Call`, run through ``trio_asyncio.trio_as_aio``. A hook may cancel
  the caller's ``trio.CancelScope`` at exactly that call.
* A rule matches calls by RPC, container id, exec process or not, and
  caller; it applies to the ``nth`` matching call and ``times`` calls from
  there. The caller is a label the test sets around its own calls with
  :func:`calling_as`: it travels with the call's context (Trio task ->
  asyncio task -> the in-memory HTTP/2 transport -> the proxy's handler), so
  the supervisor's calls for the same container are never mistaken for a
  Run's.
* :meth:`FaultProxy.begin_outage` makes containerd look gone, as if it was
  killed: calls in flight and new ones lose their stream (the daemon sees
  ``Unavailable``), event streams included, for a while or until
  :meth:`end_outage`.
* :meth:`FaultProxy.break_event_streams` breaks the event streams only.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
import trio_asyncio
from google.protobuf.message import Message
from grpclib.client import Channel
from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError, StreamTerminatedError
from grpclib.server import Stream
from grpclib.testing import ChannelFor

from contd_trio.containerd import client as containerd_client
from contd_trio.containerd.channel import NAMESPACE_HEADER, Rpc

__all__ = [
    "RPCS",
    "Call",
    "Fail",
    "FaultProxy",
    "Gate",
    "Hook",
    "Reset",
    "Rule",
    "Status",
    "Wait",
    "calling_as",
    "open_fault_proxy",
]

#: Every RPC the daemon makes, by path.
RPCS: dict[str, Rpc[Any, Any]] = {
    value.path: value for value in vars(containerd_client).values() if isinstance(value, Rpc)
}
SUBSCRIBE = containerd_client.EVENTS_SUBSCRIBE.path

_CALLER: contextvars.ContextVar[str] = contextvars.ContextVar("contd_test_caller", default="")


@contextlib.contextmanager
def calling_as(caller: str) -> Iterator[None]:
    """Label the containerd calls made by the current Trio task (and the
    tasks it starts) as ``caller``, for rules with ``caller=``."""
    token = _CALLER.set(caller)
    try:
        yield
    finally:
        _CALLER.reset(token)


@dataclass(eq=False)
class Call:
    """One call that reached the proxy."""

    number: int  # 1-based, over every call the proxy saw
    path: str
    namespace: str
    container_id: str
    exec_id: str
    caller: str
    request: Message
    #: "ok", "error <STATUS>", "reset", or "abandoned" (the caller went away).
    outcome: str = ""

    @property
    def rpc(self) -> Rpc[Any, Any]:
        return RPCS[self.path]

    @property
    def method(self) -> str:
        """``Service/Method``, e.g. ``Tasks/Start``."""
        service, method = self.path.rsplit("/", 2)[-2:]
        return f"{service.rsplit('.', 1)[-1]}/{method}"

    def __repr__(self) -> str:
        target = "/".join(filter(None, (self.namespace, self.container_id, self.exec_id)))
        return f"<Call #{self.number} {self.method} {target} by {self.caller or '-'}: {self.outcome}>"


class Gate:
    """Where calls wait until the test releases them (see :class:`Wait`)."""

    def __init__(self) -> None:
        self.arrived = trio.Event()
        self.released = trio.Event()
        self.calls: list[Call] = []

    def release(self) -> None:
        self.released.set()

    async def wait_arrived(self, timeout: float = 10.0) -> Call:
        with trio.fail_after(timeout):
            await self.arrived.wait()
        return self.calls[0]


@dataclass(frozen=True)
class Fail:
    """Answer with this gRPC status (as containerd would answer an error)."""

    status: Status
    message: str = ""


@dataclass(frozen=True)
class Reset:
    """Drop the call's stream, as a containerd that died mid-call would."""


@dataclass(frozen=True)
class Wait:
    """Hold the call at ``gate`` until the test releases it."""

    gate: Gate


@dataclass(frozen=True)
class Hook:
    """Call ``fn(call)``: a plain function, or a Trio async function."""

    fn: Callable[[Call], Awaitable[None] | None]


Step = Fail | Reset | Wait | Hook


@dataclass
class Rule:
    """What to do to some calls of one RPC.

    ``before`` runs when the call arrives; then the call is forwarded to
    containerd (unless ``forward`` is false or a step failed it); then
    ``after`` runs, before the answer goes back.

    Matching: ``container`` (the call's container id), ``exec_process``
    (True: only calls about an exec process; False: only the task's own),
    ``caller`` (see :func:`calling_as`). Of the matching calls, the
    ``nth`` and the ``times - 1`` following ones are affected
    (``times=None``: every one from the ``nth`` on).
    """

    rpc: Rpc[Any, Any]
    before: Sequence[Step] = ()
    after: Sequence[Step] = ()
    forward: bool = True
    container: str | None = None
    exec_process: bool | None = None
    caller: str | None = None
    nth: int = 1
    times: int | None = 1
    #: The calls this rule was applied to (chosen for, when they arrived).
    applied: list[Call] = field(default_factory=list)
    #: The calls one of its steps was carried out on. An ``after`` step
    #: never is when the caller gave up before containerd answered.
    struck: list[Call] = field(default_factory=list)
    _matched: int = field(default=0, init=False, repr=False)

    def _take(self, call: Call) -> bool:
        if call.path != self.rpc.path:
            return False
        if self.container is not None and call.container_id != self.container:
            return False
        if self.exec_process is not None and bool(call.exec_id) != self.exec_process:
            return False
        if self.caller is not None and call.caller != self.caller:
            return False
        self._matched += 1
        if self._matched < self.nth:
            return False
        return self.times is None or self._matched < self.nth + self.times


class _Dropped(Exception):
    """The call's stream is to be reset (see :class:`Reset`)."""


class FaultProxy:
    """Serves containerd's RPCs (grpclib ``__mapping__``) by forwarding them
    to the real containerd, with faults. Make one with :func:`open_fault_proxy`."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        #: The channel to give the daemon (set by :func:`open_fault_proxy`).
        self.channel: Channel
        self.rules: list[Rule] = []
        #: Every call seen, in order of arrival.
        self.calls: list[Call] = []
        #: The calls being served right now (event streams included).
        self.in_flight: set[Call] = set()
        self.outage = False
        self._outage_spares_streams = False
        self._outages = 0
        self._nursery: trio.Nursery
        self._aborts: dict[int, asyncio.Future[None]] = {}
        self._numbers = itertools.count(1)
        self._upstream: Channel | None = None
        self._changed = trio.Event()

    # -- what tests call ---------------------------------------------------------------------

    def add(self, rule: Rule) -> Rule:
        self.rules.append(rule)
        return rule

    def fail(
        self,
        rpc: Rpc[Any, Any],
        status: Status,
        message: str = "",
        *,
        forward_first: bool = False,
        **match: Any,
    ) -> Rule:
        """Make a call fail with ``status``; with ``forward_first`` containerd
        does the work and the caller still sees the error."""
        step = Fail(status, message)
        if forward_first:
            return self.add(Rule(rpc, after=[step], **match))
        return self.add(Rule(rpc, before=[step], forward=False, **match))

    def hang(self, rpc: Rpc[Any, Any], *, forward_first: bool = False, **match: Any) -> Gate:
        """Hold a call until ``gate.release()``, then forward it; with
        ``forward_first`` containerd answers at once but the answer is held
        (a late answer)."""
        gate = Gate()
        if forward_first:
            self.add(Rule(rpc, after=[Wait(gate)], **match))
        else:
            self.add(Rule(rpc, before=[Wait(gate)], **match))
        return gate

    def hook(
        self,
        rpc: Rpc[Any, Any],
        fn: Callable[[Call], Awaitable[None] | None],
        *,
        forward_first: bool = False,
        **match: Any,
    ) -> Rule:
        """Call ``fn(call)`` when the call arrives (or once containerd answered it)."""
        if forward_first:
            return self.add(Rule(rpc, after=[Hook(fn)], **match))
        return self.add(Rule(rpc, before=[Hook(fn)], **match))

    def clear(self) -> None:
        """Remove every rule (calls then simply go through)."""
        self.rules.clear()

    def begin_outage(self, seconds: float | None = None, *, event_streams: bool = True) -> None:
        """containerd is gone: every call in flight loses its stream, and so
        does every new call, for ``seconds`` (a restart) or until
        :meth:`end_outage`. With ``event_streams=False`` the event streams
        are spared (to look at one operation's handling alone, without the
        supervisor's). Call it from Trio (a test or a hook)."""
        self.outage = True
        self._outage_spares_streams = not event_streams
        self._outages += 1
        for call in self.in_flight:
            if self._out(call):
                self._abort(call)
        if seconds is not None:
            self._nursery.start_soon(self._end_outage_after, seconds, self._outages)

    async def _end_outage_after(self, seconds: float, outage: int) -> None:
        await trio.sleep(seconds)
        if outage == self._outages:
            self.end_outage()

    def end_outage(self) -> None:
        self.outage = False
        self._notify()

    async def outage_over(self, timeout: float = 10.0) -> None:
        await self.wait_for(lambda: not self.outage, timeout)

    def break_event_streams(self) -> int:
        """Drop every open event stream (the daemon sees it break); returns how many."""
        streams = self.open_streams()
        for call in streams:
            self._abort(call)
        return len(streams)

    def open_streams(self) -> list[Call]:
        return [call for call in self.in_flight if call.path == SUBSCRIBE]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate()`` holds, re-checked after every change
        the proxy sees (a call arriving or ending)."""
        with trio.fail_after(timeout):
            while not predicate():
                await self._changed.wait()

    # -- grpclib's side ----------------------------------------------------------------------

    def __mapping__(self) -> dict[str, Handler]:
        mapping = {}
        for path, rpc in RPCS.items():
            cardinality = Cardinality.UNARY_STREAM if path == SUBSCRIBE else Cardinality.UNARY_UNARY
            mapping[path] = Handler(self._handler(rpc), cardinality, rpc.request_type, rpc.reply_type)
        return mapping

    def _handler(self, rpc: Rpc[Any, Any]) -> Callable[[Stream[Any, Any]], Awaitable[None]]:
        body = self._events if rpc.path == SUBSCRIBE else self._unary

        async def serve(stream: Stream[Any, Any]) -> None:
            await self._serve(rpc, stream, body)

        return serve

    async def _serve(
        self,
        rpc: Rpc[Any, Any],
        stream: Stream[Any, Any],
        body: Callable[[Call, Stream[Any, Any]], Awaitable[None]],
    ) -> None:
        request = await stream.recv_message()
        assert request is not None
        call = self._arrive(rpc, stream, request)
        abort: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._aborts[call.number] = abort
        if self._out(call):
            self._abort(call)
        # Not even started when containerd is gone: a started task may have
        # written the request to containerd before it sees the abort.
        work = asyncio.ensure_future(body(call, stream)) if not abort.done() else None
        try:
            if work is None:
                raise _Dropped
            await asyncio.wait({work, abort}, return_when=asyncio.FIRST_COMPLETED)
            if not work.done():
                raise _Dropped
            work.result()
            call.outcome = call.outcome or "ok"
        except _Dropped:
            call.outcome = "reset"
            await stream.cancel()
        except GRPCError as exc:
            call.outcome = f"error {exc.status.name}"
            raise
        except (asyncio.CancelledError, StreamTerminatedError):
            call.outcome = call.outcome or "abandoned"
            raise
        finally:
            if work is None:
                pass
            elif not work.done():
                work.cancel()
                with contextlib.suppress(BaseException):
                    await work
            elif not work.cancelled():
                work.exception()  # retrieved: the caller may have gone while we answered
            del self._aborts[call.number]
            self.in_flight.discard(call)
            self._notify()

    def _arrive(self, rpc: Rpc[Any, Any], stream: Stream[Any, Any], request: Message) -> Call:
        fields = request.DESCRIPTOR.fields_by_name
        container_id = ""
        for name in ("container_id", "id"):
            if name in fields:
                container_id = getattr(request, name)
                break
        else:
            if "container" in fields:
                container_id = request.container.id  # type: ignore[attr-defined]
        call = Call(
            number=next(self._numbers),
            path=rpc.path,
            namespace=str(stream.metadata.get(NAMESPACE_HEADER, "")) if stream.metadata else "",
            container_id=container_id,
            exec_id=getattr(request, "exec_id", "") if "exec_id" in fields else "",
            caller=_CALLER.get(),
            request=request,
        )
        self.calls.append(call)
        self.in_flight.add(call)
        self._notify()
        return call

    def _out(self, call: Call) -> bool:
        return self.outage and not (self._outage_spares_streams and call.path == SUBSCRIBE)

    def _abort(self, call: Call) -> None:
        abort = self._aborts.get(call.number)
        if abort is not None and not abort.done():
            abort.set_result(None)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _rule_for(self, call: Call) -> Rule | None:
        chosen = None
        for rule in list(self.rules):
            if rule._take(call) and chosen is None:
                chosen = rule
        if chosen is not None:
            chosen.applied.append(call)
        return chosen

    async def _steps(self, rule: Rule, steps: Sequence[Step], call: Call) -> None:
        for step in steps:
            self._check_aborted(call)
            if call not in rule.struck:
                rule.struck.append(call)
            if isinstance(step, Fail):
                raise GRPCError(step.status, step.message or None)
            if isinstance(step, Reset):
                raise _Dropped
            if isinstance(step, Wait):
                step.gate.calls.append(call)
                step.gate.arrived.set()
                await trio_asyncio.trio_as_aio(step.gate.released.wait)()
            elif isinstance(step, Hook):
                if inspect.iscoroutinefunction(step.fn):
                    await trio_asyncio.trio_as_aio(step.fn)(call)
                else:
                    await trio_asyncio.trio_as_aio(_call_sync)(step.fn, call)
        self._check_aborted(call)

    def _check_aborted(self, call: Call) -> None:
        """A step may have begun an outage (or broken the streams): this
        call then does not go on, nor answer."""
        abort = self._aborts.get(call.number)
        if abort is not None and abort.done():
            raise _Dropped

    def _metadata(self, call: Call) -> list[tuple[str, str]] | None:
        return [(NAMESPACE_HEADER, call.namespace)] if call.namespace else None

    async def _unary(self, call: Call, stream: Stream[Any, Any]) -> None:
        rule = self._rule_for(call)
        if rule is not None:
            await self._steps(rule, rule.before, call)
        if rule is None or rule.forward:
            reply = await self._forward(call, stream)
        else:
            reply = call.rpc.reply_type()
        if rule is not None:
            await self._steps(rule, rule.after, call)
        await stream.send_message(reply)

    async def _forward(self, call: Call, stream: Stream[Any, Any]) -> Message:
        assert self._upstream is not None
        rpc = call.rpc
        try:
            async with self._upstream.request(
                rpc.path,
                Cardinality.UNARY_UNARY,
                rpc.request_type,
                rpc.reply_type,
                deadline=stream.deadline,
                metadata=self._metadata(call),
            ) as upstream:
                await upstream.send_message(call.request, end=True)
                reply = await upstream.recv_message()
                await upstream.recv_trailing_metadata()
        except (OSError, StreamTerminatedError) as exc:
            raise _Dropped from exc  # the real containerd is gone: so are we
        assert reply is not None
        return reply  # type: ignore[no-any-return]

    async def _events(self, call: Call, stream: Stream[Any, Any]) -> None:
        assert self._upstream is not None
        rule = self._rule_for(call)
        if rule is not None:
            await self._steps(rule, rule.before, call)
            if not rule.forward:
                return
        rpc = call.rpc
        try:
            async with self._upstream.request(
                rpc.path,
                Cardinality.UNARY_STREAM,
                rpc.request_type,
                rpc.reply_type,
                metadata=self._metadata(call),
            ) as upstream:
                await upstream.send_message(call.request, end=True)
                await stream.send_initial_metadata()
                if rule is not None:
                    await self._steps(rule, rule.after, call)
                async for envelope in upstream:
                    await stream.send_message(envelope)
        except (OSError, StreamTerminatedError) as exc:
            raise _Dropped from exc


async def _call_sync(fn: Callable[[Call], Any], call: Call) -> None:
    # Run in a Trio task (through trio_as_aio), so hooks may touch Trio objects.
    fn(call)


@contextlib.asynccontextmanager
async def open_fault_proxy(socket_path: Path) -> AsyncIterator[FaultProxy]:
    """A proxy in front of the containerd at ``socket_path``; give the daemon
    ``proxy.channel``."""
    proxy = FaultProxy(socket_path)
    proxy._upstream = await trio_asyncio.aio_as_trio(_make_channel)(socket_path)
    try:
        async with trio.open_nursery() as nursery:
            proxy._nursery = nursery
            async with trio_asyncio.aio_as_trio(ChannelFor([proxy])) as channel:
                proxy.channel = channel
                yield proxy
            nursery.cancel_scope.cancel()
    finally:
        proxy._upstream.close()


async def _make_channel(socket_path: Path) -> Channel:
    # grpclib binds the running asyncio loop when a channel is made.
    return Channel(path=str(socket_path))
