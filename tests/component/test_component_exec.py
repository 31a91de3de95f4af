"""Component test of our error handling, with faults injected at the
containerd channel (``faults.FaultProxy``); it complements the real-process
tests that kill containerd during an Exec.

Exec leaves nothing behind: whatever containerd call fails (adding the
process, starting it, waiting for it, killing it when it ran too long,
deleting it), the exec process is gone from containerd, the container runs
no more processes than before, and no ``<root>/exec/...`` output file is
left, once the answer is given and containerd answers again.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from contd_trio import errors
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
    unavailable,
    where,
    wrong_answer,
)

#: Runs past its Exec timeout, so Exec makes every call it has: add the
#: process, wait, start, look at it, kill it, wait, delete it.
EXEC_ARGS = ("sleep", "1000")
EXEC_TIMEOUT = 0.2


@pytest.mark.parametrize("fault", [unavailable, outage_once_done], ids=lambda f: f.__name__)
async def test_an_exec_that_failed_leaves_nothing(
    fault: Callable[[FaultProxy, Call], Rule],
    contd: ContainerClient,
    daemon: Daemon,
    proxy: FaultProxy,
    leftovers: Leftovers,
    ns: str,
    netns_name: str,
    rootfs: Path,
) -> None:
    await contd.run(ns, container(rootfs, netns_name, "c1"))
    since = len(proxy.calls)
    with pytest.raises(CallError, match="timed out") as clean:
        await contd.exec_process(ns, "c1", *EXEC_ARGS, timeout=EXEC_TIMEOUT)
    own_error = clean.value.message.split(" after ")[0]  # "exec sleep 1000 in c1: timed out"
    trace = calls_of(proxy, "Exec", since)
    assert trace, "an Exec made no containerd call"
    problems = []
    for index, call in enumerate(trace):
        pids = await leftovers.real.pids(ns, "c1")  # an earlier case's leak is not this one's
        rule = proxy.add(aimed(fault(proxy, call), trace, index, "Exec", "c1"))
        before = len(proxy.calls)
        answer = "success"
        try:
            await contd.exec_process(ns, "c1", *EXEC_ARGS, timeout=EXEC_TIMEOUT)
        except CallError as exc:
            answer = exc.message
        finally:
            await proxy.outage_over()
        case = f"fault at {where(trace, index)}, answer {answer!r} (calls: {call_log(proxy, before, 'Exec')})"
        if not rule.applied:
            problems.append(f"{case}: the fault was never applied")
            continue
        # Not struck: the caller gave up on the call before containerd answered
        # it; the fault had no part in the answer, but what is left still counts.
        if rule.struck and answer != "success" and (wrong := wrong_answer(answer, fault, own_error)):
            problems.append(f"{case}: {wrong}")
        exec_ids = {c.exec_id for c in proxy.calls[before:] if c.exec_id}
        # Cleaning up may have to wait for containerd (or be retried): a while.
        left = await leftovers.wait_execs_gone(ns, "c1", exec_ids, pids, timeout=5)
        if left:
            problems.append(f"{case}: left {', '.join(left)}")
    assert not problems, "\n".join(problems)
    await locks_released(daemon)


async def test_an_exec_of_a_missing_binary_leaves_no_output_file(
    contd: ContainerClient, proxy: FaultProxy, leftovers: Leftovers, ns: str, netns_name: str, rootfs: Path
) -> None:
    await contd.run(ns, container(rootfs, netns_name, "c1"))
    since = len(proxy.calls)
    with pytest.raises(CallError):
        await contd.exec_process(ns, "c1", "/bin/nope")
    (exec_id,) = {c.exec_id for c in proxy.calls[since:] if c.exec_id}
    for stream in ("stdout", "stderr"):
        output = leftovers.paths.exec_output(ns, "c1", exec_id, stream)
        assert not output.exists(), f"{output} was left behind"
    with pytest.raises(errors.NotFound):
        await leftovers.real.get_process(ns, "c1", exec_id)
    await contd.delete(ns, "c1")
    exec_dir = leftovers.paths.root / "exec" / ns
    assert not exec_dir.exists() or list(exec_dir.iterdir()) == [], "output files outlived the container"
