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
from typing import Any

import pytest

from contd_trio.app import Daemon
from contd_trio.containerd.channel import Rpc
from contd_trio.containerd.client import TASKS_CREATE, TASKS_START
from contd_trio.module.client import ContainerClient
from contd_trio.zbus.errors import CallError
from tests.component.faults import Call, FaultProxy, Rule, Status
from tests.component.support import (
    Leftovers,
    aimed,
    assert_one_error,
    call_log,
    calls_of,
    container,
    done_then_unavailable,
    locks_released,
    outage,
    outage_once_done,
    unavailable,
    where,
    wrong_answer,
)

RUNC_FAILURE = (
    "OCI runtime start failed: runc start failed: unable to start container process: "
    'exec: "/bin/nope": stat /bin/nope: no such file or directory: unknown'
)


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
    [unavailable, done_then_unavailable, outage, outage_once_done],
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
        # Not struck: the caller gave up on the call before containerd answered
        # it; the fault had no part in the answer, but what is left still counts.
        struck = bool(rule.struck)
        if answer == "success":
            state = await leftovers.real.get_process(ns, cid)
            if state.status != "running":
                problems.append(f"{case}: but the task is {state.status}")
            await contd.delete(ns, cid)
            left = await leftovers.wait_gone(ns, cid, timeout=5)
            if left:
                problems.append(f"{case}: its Delete left {', '.join(left)}")
            continue
        if struck and (wrong := wrong_answer(answer, fault)):
            problems.append(f"{case}: {wrong}")
        await daemon.supervisor.reconcile("component test: after a failed Run")
        left = await leftovers.wait_gone(ns, cid, timeout=5)
        if left:
            problems.append(f"{case}: left {', '.join(left)} after reconciliation")
    assert not problems, "\n".join(problems)
    assert await leftovers.wait_no_shims(ns) == []
    await locks_released(daemon)


@pytest.mark.parametrize("rpc", [TASKS_CREATE, TASKS_START], ids=["create", "start"])
async def test_a_run_refused_by_runc_says_why_and_leaves_nothing(
    rpc: Rpc[Any, Any],
    contd: ContainerClient,
    daemon: Daemon,
    proxy: FaultProxy,
    leftovers: Leftovers,
    ns: str,
    netns_name: str,
    rootfs: Path,
) -> None:
    rule = proxy.fail(rpc, Status.UNKNOWN, RUNC_FAILURE, caller="Run")
    with pytest.raises(CallError) as failure:
        await contd.run(ns, container(rootfs, netns_name, "c1"))
    assert rule.applied
    assert_one_error(failure.value.message)
    assert "stat /bin/nope: no such file or directory" in failure.value.message, failure.value.message
    await daemon.supervisor.reconcile("component test: after a failed Run")
    assert await leftovers.wait_gone(ns, "c1", timeout=5) == []
