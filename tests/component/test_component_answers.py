"""Component test of our error handling, with faults injected at the
containerd channel (``faults.FaultProxy``); it complements the real-process
tests that kill and stop containerd.

Every container method answers a failing containerd with exactly one error
of the daemon's tree: never ``internal error: ExceptionGroup ...``. When
containerd goes away mid-call the answer says so (``containerd ...
unavailable``); when runc refuses an exec, the answer is Exec's own error
with runc's reason. (Run, Delete and Exec with containerd going away are
in their own tests, ``test_component_run``, ``_delete`` and ``_exec``.)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from contd_trio.containerd.client import TASKS_START
from contd_trio.module.client import ContainerClient
from contd_trio.zbus.errors import CallError
from tests.component.faults import Fail, FaultProxy, Rule, Status
from tests.component.support import (
    aimed,
    assert_one_error,
    call_log,
    calls_of,
    container,
    outage,
    run_all,
    where,
    wrong_answer,
)

Invoke = Callable[[ContainerClient, str, str], Awaitable[object]]

#: The methods not tested elsewhere with containerd going away mid-call
#: (Run, Delete and Exec are: test_component_run, _delete, _exec).
METHODS: dict[str, Invoke] = {
    "Inspect": lambda contd, ns, cid: contd.inspect(ns, cid),
    "SignalDelete": lambda contd, ns, cid: contd.signal_delete(ns, cid),
    "List": lambda contd, ns, cid: contd.list_containers(ns),
    "ListNS": lambda contd, ns, cid: contd.list_ns(),
    "Logs": lambda contd, ns, cid: contd.logs(ns, cid),
}
#: Methods after which the container is not the same: each try gets a new one.
CHANGING = {"SignalDelete"}

RUNC_EXEC_FAILURE = (
    "OCI runtime exec failed: exec failed: unable to start container process: "
    'exec: "nope": executable file not found in $PATH: unknown'
)


@pytest.mark.parametrize("method", list(METHODS))
async def test_containerd_going_away_mid_call_is_one_unavailable_error(
    method: str, contd: ContainerClient, proxy: FaultProxy, ns: str, netns_name: str, rootfs: Path
) -> None:
    invoke = METHODS[method]
    await contd.run(ns, container(rootfs, netns_name, "probe"))
    since = len(proxy.calls)
    await invoke(contd, ns, "probe")
    trace = calls_of(proxy, method, since)
    assert trace, f"{method} made no containerd call"
    subjects = [f"c{index}" for index in range(len(trace))] if method in CHANGING else ["shared"]
    await run_all(contd, ns, [container(rootfs, netns_name, cid) for cid in subjects])
    problems = []
    for index, call in enumerate(trace):
        cid = subjects[index] if method in CHANGING else subjects[0]
        rule = proxy.add(aimed(outage(proxy, call), trace, index, method, cid))
        answer = "success"
        before = len(proxy.calls)
        try:
            await invoke(contd, ns, cid)
        except CallError as exc:
            answer = exc.message
        finally:
            await proxy.outage_over()
        case = (
            f"containerd gone at {where(trace, index)}, answer {answer!r}"
            f" (calls: {call_log(proxy, before, method)})"
        )
        if not rule.applied:
            problems.append(f"{case}: the fault was never applied")
            continue
        if not rule.struck:
            continue  # the caller gave up on the call before containerd answered it
        if answer == "success":
            pass  # containerd came back in time and the daemon tried again: fine
        elif wrong := wrong_answer(answer, outage):
            problems.append(f"{case}: {wrong}")
    assert not problems, "\n".join(problems)


async def test_a_runc_failure_at_any_exec_call_is_one_error(
    contd: ContainerClient, proxy: FaultProxy, ns: str, netns_name: str, rootfs: Path
) -> None:
    await contd.run(ns, container(rootfs, netns_name, "c1"))
    since = len(proxy.calls)
    await contd.exec_process(ns, "c1", "true")
    trace = calls_of(proxy, "Exec", since)
    problems = []
    for index, call in enumerate(trace):
        refused = Fail(Status.UNKNOWN, RUNC_EXEC_FAILURE)
        rule = proxy.add(aimed(Rule(call.rpc, before=[refused], forward=False), trace, index, "Exec"))
        answer = "success"
        try:
            await contd.exec_process(ns, "c1", "true")
        except CallError as exc:
            answer = exc.message
        case = f"runc failure at {where(trace, index)}, answer {answer!r}"
        if not rule.applied:
            problems.append(f"{case}: the fault was never applied")
            continue
        if not rule.struck:
            continue  # the caller gave up on the call before containerd answered it
        if "ExceptionGroup" in answer or "internal error" in answer:
            problems.append(f"{case}: not one error of the daemon's tree")
    assert not problems, "\n".join(problems)


async def test_an_exec_of_a_missing_binary_says_why(
    contd: ContainerClient, ns: str, netns_name: str, rootfs: Path
) -> None:
    await contd.run(ns, container(rootfs, netns_name, "c1"))
    with pytest.raises(CallError) as failure:
        await contd.exec_process(ns, "c1", "/bin/nope", "--flag")
    message = failure.value.message
    assert_one_error(message)
    assert message.startswith("exec /bin/nope --flag in c1"), message
    assert "no such file or directory" in message or "executable file not found" in message, message


async def test_a_start_refused_by_runc_is_an_exec_error_with_runcs_reason(
    contd: ContainerClient, proxy: FaultProxy, ns: str, netns_name: str, rootfs: Path
) -> None:
    await contd.run(ns, container(rootfs, netns_name, "c1"))
    rule = proxy.fail(TASKS_START, Status.UNKNOWN, RUNC_EXEC_FAILURE, caller="Exec", exec_process=True)
    with pytest.raises(CallError) as failure:
        await contd.exec_process(ns, "c1", "nope")
    assert rule.applied
    message = failure.value.message
    assert_one_error(message)
    assert message.startswith("exec nope in c1"), message
    assert 'exec: "nope": executable file not found in $PATH' in message, message
