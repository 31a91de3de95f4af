"""Component test of our error handling, with faults injected at the
containerd channel (``faults.FaultProxy``); it complements the real-process
tests that kill the daemon mid-operation.

Cancellation at every containerd call, in the style of httpcore's
``tests/test_cancellations.py`` (issue 12.6): Run, Delete, Exec, the
supervisor's restart and the event stream are each made once cleanly to
learn their containerd calls, then cancelled at each of those calls in
turn, when the call reaches containerd ("arrived") or once containerd has
done it ("done"). A request is cancelled by its deadline or by a shutdown;
here the test cancels the caller's scope from a proxy hook, at exactly that
call, and the supervisor's work is cancelled by shutting the daemon down.

After each cancellation: the caller got one answer (returned, was
cancelled, or one error of the daemon's tree, never an exception group),
no per-container lock is held, and nothing half-made is left: a Run that
did not return leaves nothing once reconciliation has run, a Delete is
finished by the next one, an Exec leaves no process or output file, a
restart is completed by the next daemon, and no event stream is left open.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from contd_trio import errors
from contd_trio.app import Daemon, open_daemon
from contd_trio.config import Config
from contd_trio.containerd.client import EVENTS_PUBLISH, EVENTS_SUBSCRIBE
from contd_trio.module import labels
from tests.component.faults import Call, FaultProxy, Hook, Rule, calling_as
from tests.component.support import (
    Leftovers,
    aimed,
    call_log,
    calls_of,
    container,
    crash,
    locks_released,
    settled,
    where,
)

WHEN = ["arrived", "done"]


def cancelling(scope: trio.CancelScope) -> Callable[[Call], Awaitable[None]]:
    """A hook that cancels ``scope`` and lets the cancellation take effect
    (a caller that is not shielded gives up the call before it is forwarded)."""

    async def cancel(call: Call) -> None:
        scope.cancel()
        await trio.testing.wait_all_tasks_blocked()

    return cancel


def cancel_rule(scope: trio.CancelScope, call: Call, when: str) -> Rule:
    hook = Hook(cancelling(scope))
    return Rule(call.rpc, before=[hook]) if when == "arrived" else Rule(call.rpc, after=[hook])


async def answer_of(scope: trio.CancelScope, fn: Callable[..., Awaitable[Any]], *args: Any) -> str:
    """Call ``fn`` in ``scope``; say how it answered."""
    answer = "cancelled"
    with scope:
        try:
            await fn(*args)
            answer = "returned"
        except errors.ContdError as exc:
            answer = f"error {type(exc).__name__}: {exc}"
        except BaseExceptionGroup as group:
            _, rest = group.split(trio.Cancelled)
            if rest is None:
                raise  # only Cancelled inside: the scope takes it, as it would a bare one
            answer = f"exception group {rest!r}"  # never one answer: a defect
    return answer


def one_answer(answer: str) -> bool:
    return answer in ("returned", "cancelled") or answer.startswith("error ")


# -- requests ------------------------------------------------------------------------------


@pytest.mark.parametrize("when", WHEN)
async def test_run_cancelled_at_each_containerd_call(
    when: str,
    daemon: Daemon,
    proxy: FaultProxy,
    leftovers: Leftovers,
    ns: str,
    netns_name: str,
    rootfs: Path,
) -> None:
    module = daemon.module
    since = len(proxy.calls)
    with calling_as("run"):
        await module.run(ns, container(rootfs, netns_name, "probe"))
    trace = calls_of(proxy, "run", since)
    await module.delete(ns, "probe")
    problems = []
    for index, call in enumerate(trace):
        cid = f"c{index}"
        scope = trio.CancelScope()
        rule = proxy.add(aimed(cancel_rule(scope, call, when), trace, index, "run", cid))
        before = len(proxy.calls)
        with calling_as("run"):
            answer = await answer_of(scope, module.run, ns, container(rootfs, netns_name, cid))
        case = (
            f"Run cancelled at {where(trace, index)} ({when}), {answer}"
            f" (calls: {call_log(proxy, before, 'run')})"
        )
        if not rule.applied:
            problems.append(f"{case}: never cancelled")
            continue
        # Not struck: the caller gave up on the call before containerd answered
        # it and was never cancelled; what is left still counts.
        if rule.struck and not one_answer(answer):
            problems.append(f"{case}: not one answer")
        if answer == "returned":
            state = await leftovers.real.get_process(ns, cid)
            if state.status != "running":
                problems.append(f"{case}: returned, but the task is {state.status}")
            continue
        await daemon.supervisor.reconcile("component test: after a cancelled Run")
        left = await leftovers.wait_gone(ns, cid, timeout=5)
        if left:
            problems.append(f"{case}: left {', '.join(left)} after reconciliation")
    assert not problems, "\n".join(problems)
    await locks_released(daemon)


@pytest.mark.parametrize("when", WHEN)
async def test_delete_cancelled_at_each_containerd_call(
    when: str,
    daemon: Daemon,
    proxy: FaultProxy,
    leftovers: Leftovers,
    ns: str,
    netns_name: str,
    rootfs: Path,
) -> None:
    module = daemon.module
    await module.run(ns, container(rootfs, netns_name, "probe"))
    since = len(proxy.calls)
    with calling_as("delete"):
        await module.delete(ns, "probe")
    trace = calls_of(proxy, "delete", since)
    subjects = [f"c{index}" for index in range(len(trace))]
    async with trio.open_nursery() as nursery:
        for cid in subjects:
            nursery.start_soon(module.run, ns, container(rootfs, netns_name, cid))
    problems = []
    for index, cid in enumerate(subjects):
        scope = trio.CancelScope()
        rule = proxy.add(aimed(cancel_rule(scope, trace[index], when), trace, index, "delete", cid))
        before = len(proxy.calls)
        with calling_as("delete"):
            answer = await answer_of(scope, module.delete, ns, cid)
        case = (
            f"Delete cancelled at {where(trace, index)} ({when}), {answer}"
            f" (calls: {call_log(proxy, before, 'delete')})"
        )
        if not rule.applied:
            problems.append(f"{case}: never cancelled")
            continue
        # Not struck: the caller gave up on the call before containerd answered
        # it and was never cancelled; what is left still counts.
        if rule.struck and not one_answer(answer):
            problems.append(f"{case}: not one answer")
        if answer != "returned":
            # The next Delete finishes the job (and is not blocked by a lock).
            again = "returned"
            with trio.move_on_after(15) as bound:
                try:
                    await module.delete(ns, cid)
                except errors.NotFound:
                    again = "not found"
                except errors.ContdError as exc:
                    again = f"error {exc}"
            if bound.cancelled_caught:
                problems.append(f"{case}: the next Delete did not answer")
                continue
            if again.startswith("error"):
                problems.append(f"{case}: the next Delete answered {again}")
        left = await leftovers.wait_gone(ns, cid, timeout=5)
        if left:
            problems.append(f"{case}: left {', '.join(left)}")
    assert not problems, "\n".join(problems)
    await locks_released(daemon)


#: Runs past its Exec timeout, so Exec makes every call it has.
EXEC_ARGS = ("sleep", "1000")
EXEC_TIMEOUT_NS = 200_000_000


@pytest.mark.parametrize("when", WHEN)
async def test_exec_cancelled_at_each_containerd_call(
    when: str,
    daemon: Daemon,
    proxy: FaultProxy,
    leftovers: Leftovers,
    ns: str,
    netns_name: str,
    rootfs: Path,
) -> None:
    module = daemon.module
    await module.run(ns, container(rootfs, netns_name, "c1"))
    since = len(proxy.calls)
    with calling_as("exec"):
        await answer_of(trio.CancelScope(), module.exec_process, ns, "c1", EXEC_TIMEOUT_NS, *EXEC_ARGS)
    trace = calls_of(proxy, "exec", since)
    problems = []
    for index, call in enumerate(trace):
        pids = await leftovers.real.pids(ns, "c1")  # an earlier case's leak is not this one's
        scope = trio.CancelScope()
        rule = proxy.add(aimed(cancel_rule(scope, call, when), trace, index, "exec", "c1"))
        before = len(proxy.calls)
        with calling_as("exec"):
            answer = await answer_of(scope, module.exec_process, ns, "c1", EXEC_TIMEOUT_NS, *EXEC_ARGS)
        case = (
            f"Exec cancelled at {where(trace, index)} ({when}), {answer}"
            f" (calls: {call_log(proxy, before, 'exec')})"
        )
        if not rule.applied:
            problems.append(f"{case}: never cancelled")
            continue
        # Not struck: the caller gave up on the call before containerd answered
        # it and was never cancelled; what is left still counts.
        if rule.struck and not one_answer(answer):
            problems.append(f"{case}: not one answer")
        exec_ids = {c.exec_id for c in proxy.calls[before:] if c.exec_id}
        left = await leftovers.wait_execs_gone(ns, "c1", exec_ids, pids, timeout=2)
        if left:
            problems.append(f"{case}: left {', '.join(left)}")
    assert not problems, "\n".join(problems)
    await locks_released(daemon)


# -- supervision: cancelled by the daemon shutting down ----------------------------------------


async def shut_down_at(
    config: Config, proxy: FaultProxy, scope: trio.CancelScope, then: Callable[[Daemon], Awaitable[None]]
) -> tuple[str, Daemon | None]:
    """Run a daemon in ``scope`` and let ``then`` do its part (aiming a
    rule that cancels ``scope`` at some call); says how the daemon ended."""
    opened: list[Daemon] = []
    ending = "shut down"
    scope.deadline = trio.current_time() + 30  # a bound, should the rule never strike
    with scope:
        try:
            async with open_daemon(config, grpc_channel=proxy.channel) as running:
                opened.append(running)
                await then(running)
                await trio.sleep_forever()
        except BaseExceptionGroup as group:
            _, rest = group.split(trio.Cancelled)
            if rest is None:
                raise  # the shutdown's own cancellation: the scope takes it
            ending = f"ended with {rest!r}"
        except Exception as exc:
            ending = f"ended with {exc!r}"
    return ending, opened[0] if opened else None


async def test_the_supervisors_restart_cancelled_at_each_containerd_call(
    daemon_config: Config, proxy: FaultProxy, leftovers: Leftovers, ns: str, netns_name: str, rootfs: Path
) -> None:
    async def crash_settled(running: Daemon, cid: str) -> int:
        await running.module.run(ns, container(rootfs, netns_name, cid))
        await settled(proxy)
        since = len(proxy.calls)
        await crash(leftovers.real, ns, cid)
        return since

    async with open_daemon(daemon_config, grpc_channel=proxy.channel) as first:
        since = await crash_settled(first, "probe")
        with trio.fail_after(10):
            while labels.restarts((await leftovers.real.get_container(ns, "probe")).labels) < 1:
                await trio.sleep(0.05)
        await settled(proxy)
    trace = [c for c in proxy.calls[since:] if c.caller == "" and c.container_id == "probe"]
    assert trace, "a restart made no containerd call"
    problems = []
    for index, call in enumerate(trace):
        cid = f"c{index}"
        scope = trio.CancelScope()
        rule = cancel_rule(scope, call, "arrived")

        async def crash_one(running: Daemon, cid: str = cid, rule: Rule = rule, index: int = index) -> None:
            # Aimed once the daemon is idle, at the calls the crash causes.
            await running.module.run(ns, container(rootfs, netns_name, cid))
            await settled(proxy)
            proxy.add(aimed(rule, trace, index, "", cid))
            await crash(leftovers.real, ns, cid)

        ending, daemon = await shut_down_at(daemon_config, proxy, scope, crash_one)
        case = (
            f"restart cancelled at {where(trace, index)}, daemon {ending} (calls: {_calls_for(proxy, cid)})"
        )
        if not rule.applied:
            problems.append(f"{case}: never cancelled")
            continue
        if not rule.struck:
            continue  # the caller gave up on the call before containerd answered it
        if ending != "shut down":
            problems.append(f"{case}: not a clean shutdown")
        if daemon is not None and len(daemon.ops.locks):
            problems.append(f"{case}: a container lock is still held")
    # The next daemon's reconciliation completes every interrupted restart.
    async with open_daemon(daemon_config, grpc_channel=proxy.channel):
        for index in range(len(trace)):
            cid = f"c{index}"
            with trio.move_on_after(10):
                while (await _state(leftovers, ns, cid)) != "running":
                    await trio.sleep(0.05)
            state = await _state(leftovers, ns, cid)
            if state != "running":
                problems.append(
                    f"restart cancelled at {where(trace, index)}: {cid} is {state} under the next daemon"
                )
    assert not problems, "\n".join(problems)


async def _state(leftovers: Leftovers, ns: str, cid: str) -> str:
    try:
        return (await leftovers.real.get_process(ns, cid)).status
    except errors.NotFound:
        return "without a task"


def _calls_for(proxy: FaultProxy, cid: str) -> str:
    return "; ".join(
        f"{c.method} {c.outcome}" for c in proxy.calls if c.container_id == cid and c.caller == ""
    )


@pytest.mark.parametrize("when", WHEN)
async def test_the_event_stream_cancelled_at_each_containerd_call(
    when: str, daemon_config: Config, proxy: FaultProxy
) -> None:
    # Supervision's own calls: subscribing, reconciling at start-up,
    # subscribing again after a break, reconciling after that gap.
    async def break_once(running: Daemon) -> None:
        await settled(proxy)
        assert proxy.break_event_streams() == 1

    since = len(proxy.calls)
    with trio.CancelScope() as scope:
        async with open_daemon(daemon_config, grpc_channel=proxy.channel) as running:
            await break_once(running)
            await proxy.wait_for(
                lambda: len([c for c in proxy.calls[since:] if c.path == EVENTS_SUBSCRIBE.path]) == 2
            )
            await settled(proxy)
            scope.cancel()
    calls = [c for c in proxy.calls[since:] if c.caller == "" and c.container_id == ""]
    # Each subscription, and the first call of each kind after it (the
    # session's other namespaces make reconciliations long).
    # A subscription is confirmed by probes (Events.Publish) repeated until
    # one comes back: how many go out varies, so only the first probe is a
    # call that a later run makes at the same count.
    chosen = []
    kinds_since_subscribing: set[str] = set()
    probed = False
    for index, call in enumerate(calls):
        if call.path == EVENTS_SUBSCRIBE.path:
            kinds_since_subscribing.clear()
        if call.path == EVENTS_PUBLISH.path:
            if probed:
                continue
            probed = True
        if call.path not in kinds_since_subscribing:
            chosen.append(index)
            kinds_since_subscribing.add(call.path)
    assert [calls[i].path for i in chosen].count(EVENTS_SUBSCRIBE.path) == 2
    await proxy.wait_for(lambda: not proxy.in_flight)
    problems = []
    for index in chosen:
        proxy.clear()
        scope = trio.CancelScope()
        rule = proxy.add(aimed(cancel_rule(scope, calls[index], when), calls, index, ""))
        ending, _ = await shut_down_at(daemon_config, proxy, scope, break_once)
        case = (
            f"supervision cancelled at {calls[index].method} (its call {index + 1}) ({when}), daemon {ending}"
        )
        if not rule.applied:
            problems.append(f"{case}: never cancelled")
            continue
        if not rule.struck:
            continue  # the caller gave up on the call before containerd answered it
        if ending != "shut down":
            problems.append(f"{case}: not a clean shutdown")
        with trio.move_on_after(5):
            await proxy.wait_for(lambda: not proxy.in_flight)
        if proxy.in_flight:
            problems.append(f"{case}: calls left open: {sorted(proxy.in_flight, key=lambda c: c.number)}")
    assert not problems, "\n".join(problems)
