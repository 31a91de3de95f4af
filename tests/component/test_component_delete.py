"""Component test of our error handling, with faults injected at the
containerd channel (``faults.FaultProxy``); it complements the real-process
tests that kill containerd during Deletes.

Delete never leaves a container half-deleted for good: with a fault at any
of its containerd calls, either the answer is success and the container is
gone (task, container, log file), or the answer is one error and a later
Delete finishes the job. The per-container lock is released either way, so
that later Delete is not blocked.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from contd_trio.app import Daemon
from contd_trio.module.client import ContainerClient
from contd_trio.zbus.errors import CallError
from tests.component.faults import Call, FaultProxy, Rule
from tests.component.support import (
    Leftovers,
    aimed,
    call_log,
    calls_of,
    container,
    locks_released,
    outage_once_done,
    run_all,
    unavailable,
    where,
    wrong_answer,
)


@pytest.mark.parametrize("fault", [unavailable, outage_once_done], ids=lambda f: f.__name__)
async def test_a_delete_that_failed_can_be_finished(
    fault: Callable[[FaultProxy, Call], Rule],
    contd: ContainerClient,
    daemon: Daemon,
    proxy: FaultProxy,
    leftovers: Leftovers,
    ns: str,
    netns_name: str,
    rootfs: Path,
) -> None:
    await contd.run(ns, container(rootfs, netns_name, "probe"))
    since = len(proxy.calls)
    await contd.delete(ns, "probe")
    trace = calls_of(proxy, "Delete", since)
    assert trace, "a Delete made no containerd call"
    names = [f"c{index}" for index in range(len(trace))]
    await run_all(contd, ns, [container(rootfs, netns_name, cid) for cid in names])
    problems = []
    for index, cid in enumerate(names):
        rule = proxy.add(aimed(fault(proxy, trace[index]), trace, index, "Delete", cid))
        before = len(proxy.calls)
        answer = "success"
        try:
            await contd.delete(ns, cid)
        except CallError as exc:
            answer = exc.message
        finally:
            await proxy.outage_over()
        case = (
            f"fault at {where(trace, index)}, answer {answer!r} (calls: {call_log(proxy, before, 'Delete')})"
        )
        if not rule.applied:
            problems.append(f"{case}: the fault was never applied")
            continue
        # Not struck: the caller gave up on the call before containerd answered
        # it; the fault had no part in the answer, but what is left still counts.
        struck = bool(rule.struck)
        if answer == "success":
            left = await leftovers.wait_gone(ns, cid, timeout=5)
            if left:
                problems.append(f"{case}: left {', '.join(left)}")
            continue
        if struck and (wrong := wrong_answer(answer, fault)):
            problems.append(f"{case}: {wrong}")
        again = "success"
        with trio.move_on_after(15) as bound:
            try:
                await contd.delete(ns, cid)
            except CallError as exc:
                again = exc.message
        if bound.cancelled_caught:
            problems.append(f"{case}: the next Delete did not answer")
            continue
        left = await leftovers.wait_gone(ns, cid, timeout=5)
        if left:
            problems.append(f"{case}: the next Delete answered {again!r} and left {', '.join(left)}")
        elif again != "success" and not again.startswith(f"container {cid} not found"):
            problems.append(f"{case}: the next Delete answered {again!r}")
    assert not problems, "\n".join(problems)
    await locks_released(daemon)
    assert await leftovers.wait_no_shims(ns) == []
