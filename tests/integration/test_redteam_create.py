"""Red team of Run's create under its request deadline (commit d3c89c7).

Real containerd (a private one the test SIGSTOPs), real Redis, real runc;
nothing is injected into the daemon. containerd is frozen before a Run is
sent, so the Run's first containerd call, ``Containers.Create``, is in flight
when the freeze outlasts (or not) the request's deadline. Periodic
reconciliation is off (an hour), so what a failed Run leaves must be removed
by the Run itself or by the janitor, which is what the change relies on.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from contd_trio.app import open_daemon
from contd_trio.config import Config
from contd_trio.zbus.client import open_client
from tests.integration.faultkit import (
    Callers,
    Findings,
    answer_problems,
    ask,
    container,
    fresh_namespace,
    holdings,
    holdings_problems,
    settled,
    within,
)
from tools import services

#: The daemon's request deadline in these tests.
DEADLINE = 3.0
#: How far past the deadline a Run may answer: the 2 s it looks for what
#: containerd made all the same, and scheduling.
ANSWER_SLACK = 4.0
#: How long containerd has, once thawed, to hold exactly what the answers say.
SETTLE_SECONDS = 20.0
CALL_TIMEOUT = 60.0


@pytest.fixture
def frozen_config(daemon_config: Config, private_containerd: services.ContainerdService) -> Config:
    return dataclasses.replace(
        daemon_config,
        containerd_socket=private_containerd.address,
        containerd_root=private_containerd.root,
        containerd_state=private_containerd.state,
        request_timeout=DEADLINE,
        start_settle=0.3,
        reconcile_interval=3600.0,
    )


def observer(
    address: Path, root: Path, namespace: str, *, running: set[str], absent: set[str]
) -> Callable[[], list[str]]:
    return lambda: holdings_problems(holdings(address, root, namespace), running=running, absent=absent)


@pytest.mark.parametrize("frozen_for", [1.5, DEADLINE, 2 * DEADLINE])
async def test_run_whose_create_meets_a_frozen_containerd(
    frozen_config: Config,
    private_containerd: services.ContainerdService,
    broker: str,
    netns_name: str,
    rootfs: Path,
    frozen_for: float,
) -> None:
    """containerd SIGSTOPped while Run's create is in flight, for less than,
    about, and more than the deadline. The Run answers within the deadline
    and its slack; once thawed, containerd holds the container only if the
    Run answered success; a Run of the same name right after answers
    success or "already exists", and the name becomes usable again."""
    ns = fresh_namespace()
    look = functools.partial(observer, private_containerd.address, frozen_config.root, ns)
    findings = Findings()
    assert private_containerd.process is not None
    pid = private_containerd.process.pid
    async with open_daemon(frozen_config) as daemon, open_client(broker) as bus:
        callers = Callers(bus)
        os.kill(pid, signal.SIGSTOP)
        try:
            async with trio.open_nursery() as nursery:
                callers.start(
                    nursery, "Run", "Run", ns, container(rootfs, netns_name, "c"), timeout=CALL_TIMEOUT
                )
                taken = await within(lambda: daemon.server.in_flight == 1, 10)
                findings.check("frozen", taken, "the daemon did not take the Run in 10 s")
                # The fault's length is what is being tested, not a wait for something.
                await trio.sleep(frozen_for)
                os.kill(pid, signal.SIGCONT)
        finally:
            os.kill(pid, signal.SIGCONT)
        first = callers.answers["Run"]
        findings.add("first Run", answer_problems(callers))
        findings.check(
            "first Run",
            first.seconds <= DEADLINE + ANSWER_SLACK,
            f"answered after {first.seconds:.1f} s, past the {DEADLINE:g} s deadline"
            f" and {ANSWER_SLACK:g} s slack",
        )
        made = first.kind == "ok"
        if not made:
            # Right after the failed one: success, or a clear "already exists".
            again = await ask(bus, "Run", ns, container(rootfs, netns_name, "c"), timeout=CALL_TIMEOUT)
            findings.check(
                "second Run",
                again.kind == "ok" or (again.kind == "error" and "already exists" in again.text),
                f"neither success nor 'already exists': {again}",
            )
            made = again.kind == "ok"
        findings.add(
            "after thawing",
            await settled(
                look(running={"c"} if made else set(), absent=set() if made else {"c"}), SETTLE_SECONDS
            ),
        )
        janitor_done = await within(lambda: daemon.ops.janitor.pending == 0, SETTLE_SECONDS)
        findings.check("janitor", janitor_done, f"{daemon.ops.janitor.pending} clean-up jobs still pending")
        if not made:
            last = await ask(bus, "Run", ns, container(rootfs, netns_name, "c"), timeout=CALL_TIMEOUT)
            findings.check("name reusable", last.kind == "ok", f"a later Run of the name failed: {last}")
        delete = await ask(bus, "Delete", ns, "c", timeout=CALL_TIMEOUT)
        findings.check("delete", delete.kind == "ok", f"Delete failed: {delete}")
        findings.add("after delete", await settled(look(running=set(), absent={"c"}), SETTLE_SECONDS))
    findings.assert_none(f"containerd frozen for {frozen_for:g} s\n{callers.report()}")


async def test_thirty_runs_while_containerd_is_frozen_for_five_seconds(
    frozen_config: Config,
    private_containerd: services.ContainerdService,
    broker: str,
    netns_name: str,
    rootfs: Path,
) -> None:
    """20 Runs of distinct names and 10 of one name, sent while containerd
    is SIGSTOPped for 5 s (past the deadline). Each answers within the
    deadline and its slack; once thawed containerd holds exactly the Runs
    that answered success, the janitor has no work left, and every name
    that was not made can be Run again."""
    ns = fresh_namespace()
    findings = Findings()
    assert private_containerd.process is not None
    pid = private_containerd.process.pid
    distinct = [f"d{i}" for i in range(20)]
    async with open_daemon(frozen_config) as daemon, open_client(broker) as bus:
        callers = Callers(bus)
        os.kill(pid, signal.SIGSTOP)
        try:
            async with trio.open_nursery() as nursery:
                for name in distinct:
                    spec = container(rootfs, netns_name, name)
                    callers.start(nursery, name, "Run", ns, spec, timeout=CALL_TIMEOUT)
                for i in range(10):
                    spec = container(rootfs, netns_name, "same")
                    callers.start(nursery, f"same#{i}", "Run", ns, spec, timeout=CALL_TIMEOUT)
                taken = await within(lambda: daemon.server.in_flight + len(callers.answers) == 30, 10)
                findings.check("frozen", taken, "the daemon did not take the 30 Runs in 10 s")
                await trio.sleep(5.0)  # the fault's length
                os.kill(pid, signal.SIGCONT)
        finally:
            os.kill(pid, signal.SIGCONT)
        findings.add("answers", answer_problems(callers))
        for name, answer in callers.answers.items():
            findings.check(
                "answers",
                answer.seconds <= DEADLINE + ANSWER_SLACK,
                f"{name}: answered after {answer.seconds:.1f} s",
            )
        made = {name for name in distinct if callers.answers[name].kind == "ok"}
        if any(callers.answers[f"same#{i}"].kind == "ok" for i in range(10)):
            made.add("same")
        everything = {*distinct, "same"}
        look = observer(
            private_containerd.address, frozen_config.root, ns, running=made, absent=everything - made
        )
        findings.add("after thawing", await settled(look, SETTLE_SECONDS))
        janitor_done = await within(lambda: daemon.ops.janitor.pending == 0, SETTLE_SECONDS)
        findings.check("janitor", janitor_done, f"{daemon.ops.janitor.pending} clean-up jobs still pending")
        again = Callers(bus)
        async with trio.open_nursery() as nursery:
            for name in sorted(everything - made):
                again.start(
                    nursery, name, "Run", ns, container(rootfs, netns_name, name), timeout=CALL_TIMEOUT
                )
        for name, answer in again.answers.items():
            findings.check("names reusable", answer.kind == "ok", f"{name}: a later Run failed: {answer}")
        deletes = Callers(bus)
        async with trio.open_nursery() as nursery:
            for name in sorted(everything):
                deletes.start(nursery, name, "Delete", ns, name, timeout=CALL_TIMEOUT)
        findings.add("deletes", answer_problems(deletes, allowed=("ok",)))
        gone = observer(private_containerd.address, frozen_config.root, ns, running=set(), absent=everything)
        findings.add("after deletes", await settled(gone, SETTLE_SECONDS))
    findings.assert_none(callers.report())


async def test_containerd_killed_with_a_create_in_flight(
    frozen_config: Config,
    private_containerd: services.ContainerdService,
    broker: str,
    netns_name: str,
    rootfs: Path,
) -> None:
    """containerd SIGKILLed (while frozen, so the Run's create is surely in
    flight and unanswered), then started again: the Run answers an error
    within its deadline and slack, nothing is left once containerd is back,
    the janitor's work is done, and the name can be Run again."""
    ns = fresh_namespace()
    findings = Findings()
    assert private_containerd.process is not None
    async with open_daemon(frozen_config) as daemon, open_client(broker) as bus:
        callers = Callers(bus)
        os.kill(private_containerd.process.pid, signal.SIGSTOP)
        async with trio.open_nursery() as nursery:
            callers.start(nursery, "Run", "Run", ns, container(rootfs, netns_name, "c"), timeout=CALL_TIMEOUT)
            taken = await within(lambda: daemon.server.in_flight == 1, 10)
            findings.check("frozen", taken, "the daemon did not take the Run in 10 s")
            private_containerd.kill()
            private_containerd.start_again()
        first = callers.answers["Run"]
        findings.add("first Run", answer_problems(callers, allowed=("error",)))
        findings.check("first Run", first.seconds <= DEADLINE + ANSWER_SLACK, f"answered late: {first}")
        look = observer(private_containerd.address, frozen_config.root, ns, running=set(), absent={"c"})
        findings.add("after restart", await settled(look, SETTLE_SECONDS))
        janitor_done = await within(lambda: daemon.ops.janitor.pending == 0, SETTLE_SECONDS)
        findings.check("janitor", janitor_done, f"{daemon.ops.janitor.pending} clean-up jobs still pending")
        again = await ask(bus, "Run", ns, container(rootfs, netns_name, "c"), timeout=CALL_TIMEOUT)
        findings.check("name reusable", again.kind == "ok", f"a later Run failed: {again}")
        delete = await ask(bus, "Delete", ns, "c", timeout=CALL_TIMEOUT)
        findings.check("delete", delete.kind == "ok", f"Delete failed: {delete}")
    findings.assert_none(callers.report())


async def test_the_daemon_stopped_while_its_janitor_waits_for_a_frozen_containerd(
    frozen_config: Config,
    private_containerd: services.ContainerdService,
    broker: str,
    netns_name: str,
    rootfs: Path,
) -> None:
    """A Run fails on a frozen containerd and leaves the janitor waiting;
    the daemon is stopped meanwhile. It stops within a bound (the janitor's
    wait does not hold it), and the next daemon leaves nothing of the Run
    once containerd is thawed, whatever containerd made of the create."""
    ns = fresh_namespace()
    findings = Findings()
    assert private_containerd.process is not None
    pid = private_containerd.process.pid
    try:
        async with open_daemon(frozen_config) as daemon, open_client(broker) as bus:
            os.kill(pid, signal.SIGSTOP)
            run = await ask(bus, "Run", ns, container(rootfs, netns_name, "c"), timeout=CALL_TIMEOUT)
            findings.check("Run", run.kind == "error", f"a Run on a frozen containerd: {run}")
            findings.check("janitor", daemon.ops.janitor.pending == 1, "no clean-up job left to the janitor")
            stopping_at = trio.current_time()
        stopped_in = trio.current_time() - stopping_at
        findings.check("stop", stopped_in < 15, f"the daemon took {stopped_in:.1f} s to stop")
    finally:
        os.kill(pid, signal.SIGCONT)
    async with open_daemon(frozen_config), open_client(broker) as bus:
        look = observer(private_containerd.address, frozen_config.root, ns, running=set(), absent={"c"})
        findings.add("next daemon", await settled(look, SETTLE_SECONDS))
        again = await ask(bus, "Run", ns, container(rootfs, netns_name, "c"), timeout=CALL_TIMEOUT)
        findings.check("name reusable", again.kind == "ok", f"a later Run failed: {again}")
        delete = await ask(bus, "Delete", ns, "c", timeout=CALL_TIMEOUT)
        findings.check("delete", delete.kind == "ok", f"Delete failed: {delete}")
    findings.assert_none()
