"""Helpers of the component tests: requests, checks of what is left behind."""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio
import trio.testing

from contd_trio import errors
from contd_trio.app import Daemon
from contd_trio.containerd.client import Containerd
from contd_trio.module.client import ContainerClient
from contd_trio.module.names import OBJECT
from contd_trio.module.paths import Paths
from contd_trio.module.service import container_methods
from contd_trio.module.types import Container, NetworkInfo
from contd_trio.zbus.dispatch import Dispatcher
from tests.component.faults import SUBSCRIBE, Call, Fail, FaultProxy, Hook, Rule, Status, calling_as
from tools import services

#: How long containerd stays away in an outage (a restart takes about that).
OUTAGE_SECONDS = 0.5

#: Exits 0 on SIGTERM at once, so stopping it never waits for a grace period.
SIGTERM_EXITS = "sh -c 'trap \"exit 0\" TERM; sleep 1000 & wait'"


def container(rootfs: Path, netns: str, name: str, **fields: Any) -> Container:
    fields.setdefault("entrypoint", SIGTERM_EXITS)
    return Container(name=name, rootfs=str(rootfs), network=NetworkInfo(netns), **fields)


async def run_all(contd: ContainerClient, ns: str, containers: list[Container]) -> None:
    """Run containers at once (a test's many subjects, made faster)."""
    async with trio.open_nursery() as nursery:
        for subject in containers:
            nursery.start_soon(contd.run, ns, subject)


# -- kinds of fault, each a rule for a call like ``call`` ----------------------------------------
# Outages spare the event stream: the supervisor's handling of a broken
# stream is test_component_supervision's business.


def unavailable(proxy: FaultProxy, call: Call) -> Rule:
    """The call fails; containerd did nothing."""
    return Rule(call.rpc, before=[Fail(Status.UNAVAILABLE, "connection refused")], forward=False)


def done_then_unavailable(proxy: FaultProxy, call: Call) -> Rule:
    """containerd did the call, but the caller sees it fail."""
    return Rule(call.rpc, after=[Fail(Status.UNAVAILABLE, "connection refused")])


def outage(proxy: FaultProxy, call: Call) -> Rule:
    """containerd goes away as the call arrives, for a restart's time."""
    return Rule(call.rpc, before=[Hook(lambda _: proxy.begin_outage(OUTAGE_SECONDS, event_streams=False))])


def outage_once_done(proxy: FaultProxy, call: Call) -> Rule:
    """containerd did the call, then went away before answering, for a restart's time."""
    return Rule(call.rpc, after=[Hook(lambda _: proxy.begin_outage(OUTAGE_SECONDS, event_streams=False))])


def wrong_answer(
    answer: str, fault: Callable[[FaultProxy, Call], Rule] | None = None, own_error: str | None = None
) -> str:
    """What is wrong with an error answer ("" if nothing): it must be one
    error of the daemon's tree, and say so when containerd was away, unless
    it is the operation's own error (``own_error``, how the answer starts
    without a fault: containerd went away while cleaning up after it)."""
    if "ExceptionGroup" in answer or "internal error" in answer:
        return "not one error of the daemon's tree"
    if own_error is not None and answer.startswith(own_error):
        return ""
    if fault in (outage, outage_once_done) and not ("containerd" in answer and "unavailable" in answer):
        return "does not say containerd is unavailable"
    return ""


def assert_one_error(message: str) -> None:
    """An answer is one error of the daemon's tree, never a leaked group or a bug."""
    assert "ExceptionGroup" not in message, message
    assert "internal error" not in message, message


def label_requests(daemon: Daemon) -> None:
    """Label the containerd calls made while serving a request with the
    method's name ("Run", "Delete", ...), so rules tell a Run's calls from
    the supervisor's (which carry no label). Wraps the served method table."""

    def labelled(name: str, handler: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def serve(*args: Any) -> Any:
            with calling_as(name):
                return await handler(*args)

        return serve

    dispatcher = Dispatcher()
    dispatcher.register(
        OBJECT,
        {
            name: dataclasses.replace(method, handler=labelled(name, method.handler))
            for name, method in container_methods(daemon.module).items()
        },
    )
    daemon.server.dispatcher = dispatcher


async def serving(contd: ContainerClient) -> None:
    """The daemon still serves: its status object answers."""
    status = await contd.bus.status("container", timeout=10)
    assert [str(o) for o in status.objects] == [str(OBJECT)]


async def locks_released(daemon: Daemon, timeout: float = 10.0) -> None:
    """No per-container lock is held or waited for (the supervisor may
    hold one briefly: wait for it)."""
    with trio.move_on_after(timeout):
        while len(daemon.ops.locks):
            await trio.sleep(0.02)
    assert len(daemon.ops.locks) == 0, "a container lock is still held"


async def settled(proxy: FaultProxy) -> None:
    """Wait until the daemon is idle: no call to containerd is in flight
    (event streams aside) while every task waits, so whatever it started
    has been done and the next calls come from what the test does next."""

    def calling() -> bool:
        return any(call.path != SUBSCRIBE for call in proxy.in_flight)

    while True:
        await proxy.wait_for(lambda: not calling())
        await trio.testing.wait_all_tasks_blocked(cushion=0.01)
        if not calling():
            return


def calls_of(proxy: FaultProxy, caller: str, since: int = 0) -> list[Call]:
    """The calls ``caller`` made, from the proxy's ``since``-th call on."""
    return [call for call in proxy.calls[since:] if call.caller == caller]


def aimed(rule: Rule, trace: list[Call], index: int, caller: str, cid: str = "") -> Rule:
    """Aim ``rule`` at the call, in a later run of the operation ``trace``
    was taken from, that matches ``trace[index]``: same RPC, same caller,
    same count of calls of that RPC so far; and container ``cid`` when the
    call is about a container."""
    call = trace[index]
    rule.rpc = call.rpc
    rule.caller = caller
    rule.container = cid if call.container_id and cid else None
    rule.nth = sum(1 for c in trace[: index + 1] if c.path == call.path)
    return rule


def call_log(proxy: FaultProxy, since: int, caller: str | None = None) -> str:
    """The calls since the proxy's ``since``-th, with their outcomes (all
    callers, or ``caller``'s), for failure messages."""
    calls = proxy.calls[since:]
    if caller is not None:
        calls = [call for call in calls if call.caller == caller]
    return "; ".join(
        f"{call.method}{' ' + call.exec_id if call.exec_id else ''} {call.outcome}" for call in calls
    )


def where(trace: list[Call], index: int) -> str:
    return f"{trace[index].method} (call {index + 1} of {len(trace)}: {', '.join(c.method for c in trace)})"


async def crash(real: Containerd, ns: str, cid: str) -> int:
    """Kill a container's task behind the daemon's back; returns the dead pid."""
    pid = (await real.get_process(ns, cid)).pid
    await real.kill(ns, cid, signal.SIGKILL, all_processes=True)
    return pid


class Leftovers:
    """What containerd, the daemon's root and the process table hold of a
    container, asked of containerd directly (not through the proxy)."""

    def __init__(self, real: Containerd, address: Path, root: Path) -> None:
        self.real = real
        self.address = address
        self.paths = Paths(root)

    async def of(self, ns: str, cid: str, exec_ids: tuple[str, ...] = ()) -> list[str]:
        """What is left of ``cid``: empty when nothing is."""
        found = []
        try:
            await self.real.get_container(ns, cid)
            found.append("container")
        except errors.NotFound:
            pass
        try:
            state = await self.real.get_process(ns, cid)
            found.append(f"task ({state.status})")
        except errors.NotFound:
            pass
        for exec_id in exec_ids:
            try:
                state = await self.real.get_process(ns, cid, exec_id)
                found.append(f"exec process {exec_id} ({state.status})")
            except errors.NotFound:
                pass
            for stream in ("stdout", "stderr"):
                if self.paths.exec_output(ns, cid, exec_id, stream).exists():
                    found.append(f"exec {stream} file {exec_id}")
        if self.paths.log_file(ns, cid).exists():
            found.append("log file")
        # A task deleted with its container can leave its shim behind, out
        # of containerd's sight: look at the process table too.
        found.extend(f"runc shim {pid}" for pid in self.shims(ns, cid))
        return found

    def shims(self, ns: str, cid: str) -> list[int]:
        """The runc shims serving ``cid`` (each container has its own)."""
        return [pid for pid in services.shim_pids(self.address, ns) if _shim_id(pid) == cid]

    async def wait_gone(
        self, ns: str, cid: str, *, timeout: float = 15.0, exec_ids: tuple[str, ...] = ()
    ) -> list[str]:
        """Wait until nothing is left of ``cid``; returns what still is when
        ``timeout`` ran out (empty: all gone)."""
        with trio.move_on_after(timeout):
            while await self.of(ns, cid, exec_ids):
                await trio.sleep(0.05)
        return await self.of(ns, cid, exec_ids)

    async def wait_execs_gone(
        self, ns: str, cid: str, exec_ids: set[str], pids: list[int], timeout: float
    ) -> list[str]:
        """Wait until the exec processes ``exec_ids`` of ``cid`` and their
        output files are gone and the container runs just ``pids`` again;
        returns what is still left when ``timeout`` ran out."""
        left: list[str] = []
        with trio.move_on_after(timeout):
            while True:
                left = [
                    item
                    for item in await self.of(ns, cid, tuple(sorted(exec_ids)))
                    if item.startswith("exec")
                ]
                extra = sorted(set(await self.real.pids(ns, cid)) - set(pids))
                if extra:
                    left.append(f"processes {extra} in the container")
                if not left:
                    break
                await trio.sleep(0.05)
        return left

    async def wait_no_shims(self, ns: str, timeout: float = 10.0) -> list[str]:
        """Wait until no runc shim serves the namespace; returns those left
        (pid and container id) when ``timeout`` ran out."""
        with trio.move_on_after(timeout):
            while services.shim_pids(self.address, ns):
                await trio.sleep(0.05)
        return [f"{pid} ({_shim_id(pid)})" for pid in services.shim_pids(self.address, ns)]


def _shim_id(pid: int) -> str:
    """The ``-id`` a runc shim was started with: its first container."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return ""
    return dict(zip(argv[1::2], argv[2::2], strict=False)).get(b"-id", b"").decode()
