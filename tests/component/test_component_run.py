"""Component test of our error handling, with faults injected at the
containerd channel (``faults.FaultProxy``); it complements the real-process
tests that kill containerd during Runs.

Run is atomic: a Run that did not answer success leaves nothing once
reconciliation has run (no container, no task, no log file, no shim), and a
Run that answered success left a running container. Each test makes one
clean Run to learn which containerd calls a Run makes, then fails each of
those calls in turn, in one way per test.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from contd_trio.app import Daemon
from contd_trio.module.client import ContainerClient
from contd_trio.zbus.errors import CallError
from tests.component.faults import Call, Fail, FaultProxy, Rule, Status
from tests.component.support import (
    Leftovers,
    aimed,
    call_log,
    calls_of,
    container,
    done_then_unavailable,
    locks_released,
    outage,
    outage_once_done,
    unavailable,
    where,
)

RUNC_FAILURE = (
    "OCI runtime start failed: runc start failed: unable to start container process: "
    'exec: "/bin/nope": stat /bin/nope: no such file or directory: unknown'
)


def runc_error(proxy: FaultProxy, call: Call) -> Rule:
    return Rule(call.rpc, before=[Fail(Status.UNKNOWN, RUNC_FAILURE)], forward=False)


async def trace_run(
    contd: ContainerClient, proxy: FaultProxy, ns: str, netns: str, rootfs: Path
) -> list[Call]:
    """The containerd calls of one clean Run, in order."""
    since = len(proxy.calls)
    await contd.run(ns, container(rootfs, netns, "probe"))
    calls = calls_of(proxy, "Run", since)
    await contd.delete(ns, "probe")
    return calls


@pytest.mark.parametrize(
    "fault",
    [unavailable, done_then_unavailable, runc_error, outage, outage_once_done],
    ids=lambda f: f.__name__,
)
async def test_a_run_that_failed_leaves_nothing(
    fault: Callable[[FaultProxy, Call], Rule],
    contd: ContainerClient,
    daemon: Daemon,
    proxy: FaultProxy,
    leftovers: Leftovers,
    ns: str,
    netns_name: str,
    rootfs: Path,
) -> None:
    trace = await trace_run(contd, proxy, ns, netns_name, rootfs)
    assert trace, "a Run made no containerd call"
    problems = []
    for index, call in enumerate(trace):
        cid = f"c{index}"
        rule = proxy.add(aimed(fault(proxy, call), trace, index, "Run", cid))
        answer = "success"
        before = len(proxy.calls)
        try:
            await contd.run(ns, container(rootfs, netns_name, cid))
        except CallError as exc:
            answer = exc.message
        await proxy.outage_over()
        case = f"fault at {where(trace, index)}, answer {answer!r} (calls: {call_log(proxy, before, 'Run')})"
        if not rule.applied:
            problems.append(f"{case}: the fault was never applied")
            continue
        if answer == "success":
            state = await leftovers.real.get_process(ns, cid)
            if state.status != "running":
                problems.append(f"{case}: but the task is {state.status}")
            await contd.delete(ns, cid)
            continue
        if "ExceptionGroup" in answer or "internal error" in answer:
            problems.append(f"{case}: not one error of the daemon's tree")
        if fault in (outage, outage_once_done) and not ("containerd" in answer and "unavailable" in answer):
            problems.append(f"{case}: does not say containerd is unavailable")
        if fault is runc_error and "no such file or directory" not in answer:
            problems.append(f"{case}: runc's reason is lost")
        await daemon.supervisor.reconcile("component test: after a failed Run")
        left = await leftovers.wait_gone(ns, cid, timeout=5)
        if left:
            problems.append(f"{case}: left {', '.join(left)} after reconciliation")
    assert not problems, "\n".join(problems)
    assert await leftovers.wait_no_shims(ns) == []
    await locks_released(daemon)
