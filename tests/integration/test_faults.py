"""Real-process faults: containerd SIGKILLed or SIGSTOPped, the daemon
SIGKILLed, Redis restarted, while calls are in flight.

Real containerd, real Redis, real runc; nothing is injected into the daemon.
After each fault the test checks, from outside the daemon, that every caller
got an answer (or, for a killed daemon, that its retry works), that no answer
leaks an exception group or an internal error, and that containerd, the
daemon's root (``logs/``, ``exec/``) and the process table (runc shims,
container processes) hold exactly what the answers said: a Run answered
success runs, a Run answered anything else left nothing once reconciliation
has run, a Delete answered success left nothing.

Each scenario gathers every discrepancy before failing, so one run shows all
the ways the daemon strayed (see :class:`faultkit.Findings`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import signal
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pytest
import redis
import trio

from contd_trio.app import Daemon, open_daemon
from contd_trio.config import Config
from contd_trio.module.names import MODULE, OBJECT
from contd_trio.module.types import Container
from contd_trio.zbus import codec
from contd_trio.zbus.client import Client, open_client
from tests.helpers import wait_until
from tests.integration.faultkit import (
    STUBBORN,
    Callers,
    ContdProcess,
    Findings,
    answer_problems,
    ask,
    cgroup_processes,
    command_line,
    container,
    fresh_namespace,
    holdings,
    holdings_problems,
    run_in_flight,
    settled,
    within,
)
from tools import services

#: How long a caller waits for an answer before it counts as none.
CALL_TIMEOUT = 60.0
#: How long the daemon may take to make containerd, its root and the process
#: table match its answers once the fault is over (reconciliation included).
SETTLE_SECONDS = 15.0
#: The daemon's -reconcile-interval in these tests.
RECONCILE_SECONDS = 3.0
#: How far past the request deadline an answer may come: the shielded,
#: bounded clean-up a cancelled request still runs before it answers.
ANSWER_SLACK_SECONDS = 10.0
#: The longest containerd stays down after a SIGKILL (zinit would restart it about as fast).
OUTAGE_SECONDS = 2.0
#: A short deadline for the scenarios that outlast it.
SHORT_DEADLINE = 3.0


def observer(
    address: Path, root: Path, namespace: str, *, running: Iterable[str] = (), absent: Iterable[str] = ()
) -> Callable[[], list[str]]:
    """What differs between the answers and what is there (blocking: ``ctr``)."""
    running, absent = set(running), set(absent)
    return lambda: holdings_problems(holdings(address, root, namespace), running=running, absent=absent)


async def run_all(
    bus: Client, namespace: str, specs: dict[str, Container], timeout: float = CALL_TIMEOUT
) -> Callers:
    callers = Callers(bus)
    async with trio.open_nursery() as nursery:
        for name, spec in specs.items():
            callers.start(nursery, name, "Run", namespace, spec, timeout=timeout)
    return callers


async def delete_everything(bus: Client, namespace: str, names: list[str]) -> list[str]:
    """Delete through the daemon; a name it never made may answer "not found"."""
    callers = Callers(bus)
    async with trio.open_nursery() as nursery:
        for name in names:
            callers.start(nursery, name, "Delete", namespace, name, timeout=CALL_TIMEOUT)
    problems = answer_problems(callers)
    for name, answer in callers.answers.items():
        if answer.kind == "error" and "not found" not in answer.text:
            problems.append(f"{name}: Delete failed: {answer}")
    return problems


async def made_at_least(daemon: Daemon, namespace: str, count: int) -> bool:
    return len(await daemon.containerd.list_containers(namespace)) >= count


def start_again(service: services.ContainerdService) -> None:
    """Start a killed containerd again, from the test's own thread: a child
    started from a worker thread gets SIGTERM when that thread exits
    (``PR_SET_PDEATHSIG`` follows the thread), and trio retires idle worker
    threads after a few seconds. Blocks the test's loop for the ~0.1 s
    containerd takes to answer (as the kill blocks it for the few ms
    containerd takes to die: nothing runs between the kill and the restart)."""
    service.start_again()


async def outage(callers: Callers) -> None:
    """While containerd is down, as long as the calls in flight take to fail
    (at most ``OUTAGE_SECONDS``): the daemon meets a containerd that is not
    there, not only one that came back."""
    await within(lambda: not callers.unanswered(), OUTAGE_SECONDS)


@pytest.fixture
def private_config(daemon_config: Config, private_containerd: services.ContainerdService) -> Config:
    """The daemon on a containerd of the test's own, which it may kill; it
    reconciles every few seconds, so the periodic pass that catches what the
    event stream missed falls within ``SETTLE_SECONDS``."""
    return dataclasses.replace(
        daemon_config,
        containerd_socket=private_containerd.address,
        containerd_root=private_containerd.root,
        containerd_state=private_containerd.state,
        start_settle=0.5,
        restart_delay=0.3,
        reconcile_interval=RECONCILE_SECONDS,
    )


async def test_containerd_sigkilled_during_concurrent_runs(
    private_config: Config,
    private_containerd: services.ContainerdService,
    broker: str,
    netns_name: str,
    rootfs: Path,
) -> None:
    ns = fresh_namespace()
    names = [f"r{i}" for i in range(10)]
    specs = {name: container(rootfs, netns_name, name) for name in names}
    look = functools.partial(observer, private_containerd.address, private_config.root, ns)
    findings = Findings()
    async with open_daemon(private_config) as daemon, open_client(broker) as bus:
        callers = Callers(bus)
        reconciliations = daemon.supervisor.reconciliations
        async with trio.open_nursery() as nursery:
            for name in names:
                callers.start(nursery, name, "Run", ns, specs[name], timeout=CALL_TIMEOUT)
            await wait_until(functools.partial(made_at_least, daemon, ns, 3), 30)
            in_flight = callers.unanswered()  # before the kill: the failing calls answer at once
            private_containerd.kill()
            await outage(callers)
            start_again(private_containerd)
        assert in_flight, "every Run had answered before containerd was killed: nothing was tested"
        findings.add("answers", answer_problems(callers))
        findings.check(
            "reconciliation",
            await within(lambda: daemon.supervisor.reconciliations > reconciliations, 30),
            "no reconciliation within 30 s of containerd coming back",
        )
        succeeded = callers.named("ok")
        failed = set(names) - succeeded
        findings.add(
            "after reconciliation", await settled(look(running=succeeded, absent=failed), SETTLE_SECONDS)
        )
        retries = await run_all(bus, ns, {name: specs[name] for name in sorted(failed)})
        findings.add("retrying the Runs that failed", answer_problems(retries, allowed=("ok",)))
        findings.add("deleting everything", await delete_everything(bus, ns, names))
        findings.add("after deleting everything", await settled(look(absent=names), SETTLE_SECONDS))
    findings.assert_none(
        f"Runs in flight when containerd was killed: {in_flight}\nanswers:\n{callers.report()}"
        + (f"\nretries:\n{retries.report()}" if failed else "")
    )


async def test_containerd_sigkilled_during_concurrent_deletes(
    private_config: Config,
    private_containerd: services.ContainerdService,
    broker: str,
    netns_name: str,
    rootfs: Path,
) -> None:
    ns = fresh_namespace()
    # Half leave on SIGTERM at once; half ignore it, so their Deletes sit in
    # the shutdown grace when containerd dies.
    specs = {f"c{i}": container(rootfs, netns_name, f"c{i}") for i in range(3)} | {
        f"s{i}": container(rootfs, netns_name, f"s{i}", entrypoint=STUBBORN, shutdown_timeout_ns=2 * 10**9)
        for i in range(3)
    }
    names = sorted(specs)
    look = functools.partial(observer, private_containerd.address, private_config.root, ns)
    findings = Findings()
    async with open_daemon(private_config) as daemon, open_client(broker) as bus:
        runs = await run_all(bus, ns, specs)
        assert runs.named("ok") == set(names), runs.report()
        reconciliations = daemon.supervisor.reconciliations
        callers = Callers(bus)
        async with trio.open_nursery() as nursery:
            for name in names:
                callers.start(nursery, name, "Delete", ns, name, timeout=CALL_TIMEOUT)
            await wait_until(lambda: len(callers.answers) >= 1, 30)
            in_flight = callers.unanswered()  # before the kill: the failing calls answer at once
            private_containerd.kill()
            await outage(callers)
            start_again(private_containerd)
        assert in_flight, "every Delete had answered before containerd was killed: nothing was tested"
        findings.add("answers", answer_problems(callers))
        findings.check(
            "reconciliation",
            await within(lambda: daemon.supervisor.reconciliations > reconciliations, 30),
            "no reconciliation within 30 s of containerd coming back",
        )
        # A Delete answered success left nothing; one answered an error left
        # its container whole (or reconciliation finished it off).
        findings.add("after reconciliation", await settled(look(absent=callers.named("ok")), SETTLE_SECONDS))
        findings.add("retrying the Deletes", await delete_everything(bus, ns, names))
        findings.add("after the retries", await settled(look(absent=names), SETTLE_SECONDS))
    findings.assert_none(f"Deletes in flight when containerd was killed: {in_flight}\n{callers.report()}")


def exec_processes(namespace: str, container_id: str, argv: list[str]) -> list[int]:
    return [p for p in cgroup_processes(namespace).get(container_id, []) if command_line(p) == argv]


async def test_containerd_sigkilled_during_an_exec(
    private_config: Config,
    private_containerd: services.ContainerdService,
    broker: str,
    netns_name: str,
    rootfs: Path,
) -> None:
    ns = fresh_namespace()
    argv = ["sleep", "4242"]
    look = functools.partial(observer, private_containerd.address, private_config.root, ns)
    findings = Findings()
    async with open_daemon(private_config) as daemon, open_client(broker) as bus:
        run = await ask(bus, "Run", ns, container(rootfs, netns_name, "c1"), timeout=CALL_TIMEOUT)
        assert run.kind == "ok", run
        reconciliations = daemon.supervisor.reconciliations
        callers = Callers(bus)
        async with trio.open_nursery() as nursery:
            # Its own timeout (10 s) ends it either way; the caller waits longer.
            callers.start(nursery, "exec", "Exec", ns, "c1", 10 * 10**9, *argv, timeout=40)
            await wait_until(lambda: exec_processes(ns, "c1", argv), 15)
            private_containerd.kill()
            await outage(callers)
            start_again(private_containerd)
        findings.add("answer", answer_problems(callers, allowed=("error",)))
        findings.check(
            "reconciliation",
            await within(lambda: daemon.supervisor.reconciliations > reconciliations, 30),
            "no reconciliation within 30 s of containerd coming back",
        )
        findings.add("after reconciliation", await settled(look(running={"c1"}), SETTLE_SECONDS))
        findings.check(
            "after reconciliation",
            await within(lambda: not exec_processes(ns, "c1", argv), SETTLE_SECONDS),
            f"the exec process still runs in c1: {exec_processes(ns, 'c1', argv)}",
        )
        findings.add("deleting c1", await delete_everything(bus, ns, ["c1"]))
        findings.add("after deleting c1", await settled(look(absent={"c1"}), SETTLE_SECONDS))
    findings.assert_none(callers.report())


async def left_after_the_next_daemon(
    redis_service: services.RedisService,
    containerd: services.ContainerdService,
    root: Path,
    log_path: Path,
    namespace: str,
    *,
    absent: set[str],
) -> list[str]:
    """Start the next daemon on the same root: what still differs from
    ``absent`` containers once it has settled (what a stopped daemon left,
    it removes as it starts)."""
    daemon = ContdProcess(redis_service, containerd, root, log_path)
    daemon.start()
    try:
        assert await within(lambda: "serving" in daemon.log(), 30), daemon.tail()
        return await settled(observer(containerd.address, root, namespace, absent=absent), SETTLE_SECONDS)
    finally:
        daemon.stop()


#: How long SIGTERM may take to stop a daemon whose Run waits on a frozen
#: containerd: its 1 s grace, 2 s of settling, and room for a loaded machine;
#: the shielded create used to hold the stop for containerd's 30 s call timeout.
FROZEN_STOP_SECONDS = 15.0


async def test_a_frozen_containerd_does_not_hold_the_stop(
    private_redis: services.RedisService,
    private_containerd: services.ContainerdService,
    netns_name: str,
    rootfs: Path,
    tmp_path: Path,
) -> None:
    ns = fresh_namespace()
    root, log_path = tmp_path / "root", tmp_path / "contd.log"
    assert private_containerd.process is not None
    containerd_pid = private_containerd.process.pid
    first = ContdProcess(private_redis, private_containerd, root, log_path, "-shutdown-grace", "1")
    first.start()
    try:
        assert await within(lambda: "serving" in first.log(), 30), first.tail()
        async with open_client(private_redis.url) as bus:
            callers = Callers(bus)
            os.kill(containerd_pid, signal.SIGSTOP)
            try:
                async with trio.open_nursery() as nursery:
                    callers.start(
                        nursery,
                        "Run new",
                        "Run",
                        ns,
                        container(rootfs, netns_name, "new"),
                        timeout=CALL_TIMEOUT,
                    )

                    assert await within(lambda: run_in_flight(bus), 10), callers.report()
                    assert first.process is not None
                    first.process.send_signal(signal.SIGTERM)
                    signalled = trio.current_time()
                    stopped = await within(lambda: not first.alive(), FROZEN_STOP_SECONDS)
                    stop_seconds = trio.current_time() - signalled
            finally:
                os.kill(containerd_pid, signal.SIGCONT)
        assert stopped, f"the daemon did not stop within {FROZEN_STOP_SECONDS:g} s\n{first.tail()}"
        assert first.process is not None and first.process.returncode == 0, first.tail()
        assert not answer_problems(callers, allowed=("error",)), callers.report()
    finally:
        first.stop()
    # What the cut-off Run left (containerd may make its container after the
    # SIGCONT), the next daemon removes.
    problems = await left_after_the_next_daemon(
        private_redis, private_containerd, root, log_path, ns, absent={"new"}
    )
    assert not problems, f"stopped {stop_seconds:.1f} s after SIGTERM; {problems}"


async def stop_twice_while_frozen(
    daemon: ContdProcess,
    redis_service: services.RedisService,
    containerd: services.ContainerdService,
    namespace: str,
    rootfs: Path,
    netns: str,
    *,
    then: Sequence[signal.Signals] = (),
) -> bool:
    """Freeze containerd under a Run, send the daemon SIGTERM and, once it
    is stopping, SIGTERM again (and, once it stops at once, the signals
    ``then``); thaw containerd. Whether the daemon exited within
    :data:`FROZEN_STOP_SECONDS`."""
    assert containerd.process is not None and daemon.process is not None
    process = daemon.process
    async with open_client(redis_service.url) as bus:
        callers = Callers(bus)
        os.kill(containerd.process.pid, signal.SIGSTOP)
        try:
            async with trio.open_nursery() as nursery:
                spec = container(rootfs, netns, "new")
                # Its answer may never come: the second signal stops everything.
                callers.start(nursery, "Run new", "Run", namespace, spec, timeout=FROZEN_STOP_SECONDS)
                assert await within(lambda: run_in_flight(bus), 10), callers.report()
                process.send_signal(signal.SIGTERM)
                assert await within(lambda: "stopping signal=SIGTERM" in daemon.log(), 10), daemon.tail()
                process.send_signal(signal.SIGTERM)
                if then:
                    assert await within(lambda: "stopping now" in daemon.log(), 10), daemon.tail()
                for signum in then:
                    process.send_signal(signum)
                stopped = await within(lambda: not daemon.alive(), FROZEN_STOP_SECONDS)
                nursery.cancel_scope.cancel()
        finally:
            os.kill(containerd.process.pid, signal.SIGCONT)
    return stopped


async def test_a_second_signal_is_not_held_by_a_frozen_containerd(
    private_redis: services.RedisService,
    private_containerd: services.ContainerdService,
    netns_name: str,
    rootfs: Path,
    tmp_path: Path,
) -> None:
    """A second signal cancels the requests at once; their roll-backs get
    the same 2 s as after a grace, then their shields are lifted: a Run
    whose create waits on a frozen containerd does not hold the exit for a
    call's 30 s timeout (nor the 60 s grace)."""
    ns = fresh_namespace()
    root, log_path = tmp_path / "root", tmp_path / "contd.log"
    first = ContdProcess(private_redis, private_containerd, root, log_path, "-shutdown-grace", "60")
    first.start()
    try:
        assert await within(lambda: "serving" in first.log(), 30), first.tail()
        stopped = await stop_twice_while_frozen(
            first, private_redis, private_containerd, ns, rootfs, netns_name
        )
        assert stopped, f"the daemon did not stop within {FROZEN_STOP_SECONDS:g} s\n{first.tail()}"
        assert first.process is not None and first.process.returncode == 0, first.tail()
        assert "stopping now signal=SIGTERM" in first.log(), first.tail()
    finally:
        first.stop()
    problems = await left_after_the_next_daemon(
        private_redis, private_containerd, root, log_path, ns, absent={"new"}
    )
    assert not problems, problems


async def test_signals_after_the_second_are_not_left_to_kill_the_daemon_at_its_exit(
    private_redis: services.RedisService,
    private_containerd: services.ContainerdService,
    netns_name: str,
    rootfs: Path,
    tmp_path: Path,
) -> None:
    """An operator who presses Ctrl-C thrice (or zinit's SIGTERM after
    them): the stop is already as short as it gets, so a third signal
    changes nothing, and the daemon still exits 0. Signals nobody took out
    of Trio's receiver are raised again when it closes, where SIGTERM kills
    the process (SIGINT raises KeyboardInterrupt past the "stopped" line).
    containerd is frozen, so the stop lasts long enough to take them."""
    ns = fresh_namespace()
    root, log_path = tmp_path / "root", tmp_path / "contd.log"
    first = ContdProcess(private_redis, private_containerd, root, log_path, "-shutdown-grace", "60")
    first.start()
    try:
        assert await within(lambda: "serving" in first.log(), 30), first.tail()
        stopped = await stop_twice_while_frozen(
            first,
            private_redis,
            private_containerd,
            ns,
            rootfs,
            netns_name,
            then=(signal.SIGTERM, signal.SIGINT),
        )
        assert stopped, f"the daemon did not stop within {FROZEN_STOP_SECONDS:g} s\n{first.tail()}"
        assert first.process is not None and first.process.returncode == 0, first.tail()
        assert "stopped" in first.log().splitlines()[-1], first.tail()
        assert "Traceback" not in first.log(), first.tail()
    finally:
        first.stop()


async def test_roll_backs_that_fail_after_a_second_signal_do_not_crash_into_the_stopped_janitor(
    private_redis: services.RedisService,
    private_containerd: services.ContainerdService,
    netns_name: str,
    rootfs: Path,
    tmp_path: Path,
) -> None:
    """A second signal stops the janitor with everything else, while the
    roll-backs it cut short still run, shielded. containerd dies under them
    (SIGKILL while frozen: each call fails at once), so each hands its
    clean-up to the janitor, which is gone: that must be said in the log
    (the next daemon removes what is pending), not raised as a bug into the
    request ("Nursery is closed to new arrivals")."""
    ns = fresh_namespace()
    root, log_path = tmp_path / "root", tmp_path / "contd.log"
    first = ContdProcess(private_redis, private_containerd, root, log_path, "-shutdown-grace", "60")
    first.start()
    try:
        assert await within(lambda: "serving" in first.log(), 30), first.tail()
        async with open_client(private_redis.url) as bus:
            callers = Callers(bus)

            async def runs_in_flight() -> bool:
                status = await bus.status(MODULE, timeout=5)
                return [worker.state for worker in status.workers].count("busy") >= 3

            assert private_containerd.process is not None
            os.kill(private_containerd.process.pid, signal.SIGSTOP)
            try:
                async with trio.open_nursery() as nursery:
                    for name in ("a", "b", "c"):
                        spec = container(rootfs, netns_name, name)
                        callers.start(nursery, name, "Run", ns, spec, timeout=FROZEN_STOP_SECONDS)
                    assert await within(runs_in_flight, 10), callers.report()
                    assert first.process is not None
                    first.process.send_signal(signal.SIGTERM)
                    assert await within(lambda: "stopping signal=SIGTERM" in first.log(), 10), first.tail()
                    first.process.send_signal(signal.SIGTERM)
                    assert await within(lambda: "stopping now" in first.log(), 10), first.tail()
                    private_containerd.kill()
                    stopped = await within(lambda: not first.alive(), FROZEN_STOP_SECONDS)
                    # Answers may never come: the second signal stops everything.
                    nursery.cancel_scope.cancel()
            finally:
                if private_containerd.process.poll() is None:
                    os.kill(private_containerd.process.pid, signal.SIGCONT)
                else:
                    start_again(private_containerd)
        assert stopped, f"the daemon did not stop within {FROZEN_STOP_SECONDS:g} s\n{first.tail()}"
        assert first.process is not None and first.process.returncode == 0, first.tail()
        assert "Traceback" not in first.log(), first.tail()
        assert not [a for a in callers.answers.values() if "internal error" in a.text], callers.report()
    finally:
        first.stop()


async def test_a_run_whose_confirm_containerd_has_not_answered_is_removed_at_a_stop(
    private_redis: services.RedisService,
    private_containerd: services.ContainerdService,
    netns_name: str,
    rootfs: Path,
    tmp_path: Path,
) -> None:
    """The confirm (the pending label's removal) is what commits a Run.
    When containerd freezes with it unanswered and the daemon is told to
    stop, the Run answers "cancelled" and must remove its container: a
    confirm containerd carries out after it thaws leaves the container
    no longer pending, and no later daemon would take it for half-made.

    One worker, a 2 s settle window: the worker is free while the Run waits
    out the window (its slot is lent), after Start answered; containerd is
    frozen then, and the confirm goes out to it within the 3 s grace."""
    ns = fresh_namespace()
    root, log_path = tmp_path / "root", tmp_path / "contd.log"
    assert private_containerd.process is not None
    containerd_pid = private_containerd.process.pid
    first = ContdProcess(
        private_redis,
        private_containerd,
        root,
        log_path,
        *("-workers", "1", "-start-settle", "2", "-shutdown-grace", "3"),
    )
    first.start()
    try:
        assert await within(lambda: "serving" in first.log(), 30), first.tail()
        async with open_client(private_redis.url) as bus:
            callers = Callers(bus)
            seen_busy = False

            async def settling() -> bool:
                nonlocal seen_busy
                states = [worker.state for worker in (await bus.status(MODULE, timeout=5)).workers]
                seen_busy = seen_busy or "busy" in states
                return seen_busy and states == ["free"] and not callers.answers

            async with trio.open_nursery() as nursery:
                spec = container(rootfs, netns_name, "new")
                callers.start(nursery, "new", "Run", ns, spec, timeout=CALL_TIMEOUT)
                assert await within(settling, 30, 0.02), callers.report()
                os.kill(containerd_pid, signal.SIGSTOP)
                try:
                    assert first.process is not None
                    first.process.send_signal(signal.SIGTERM)
                    # containerd stays frozen past the grace and the 2 s
                    # after it, then thaws whether or not the daemon stopped.
                    stopped_while_frozen = await within(lambda: not first.alive(), 8)
                finally:
                    os.kill(containerd_pid, signal.SIGCONT)
                # Still bounded: by what the removal may take (CLEANUP_SECONDS).
                assert await within(lambda: not first.alive(), 30), first.tail()
                assert await within(lambda: not callers.unanswered(), 10), callers.report()
        assert first.process is not None and first.process.returncode == 0, first.tail()
        assert not answer_problems(callers, allowed=("error",)), callers.report()
        # Whether containerd carries out a confirm whose client left is a
        # race; giving up the removal while it may is the defect itself.
        assert not stopped_while_frozen, (
            "the daemon stopped while containerd still held the Run's confirm unanswered"
        )
    finally:
        first.stop()
    problems = await left_after_the_next_daemon(
        private_redis, private_containerd, root, log_path, ns, absent={"new"}
    )
    assert not problems, f"{callers.report()}\n{problems}"


async def test_containerd_stopped_for_longer_than_the_request_deadline(
    private_config: Config,
    private_containerd: services.ContainerdService,
    broker: str,
    netns_name: str,
    rootfs: Path,
) -> None:
    config = dataclasses.replace(private_config, request_timeout=SHORT_DEADLINE)
    ns = fresh_namespace()
    look = functools.partial(observer, private_containerd.address, config.root, ns)
    findings = Findings()
    assert private_containerd.process is not None
    containerd_pid = private_containerd.process.pid
    async with open_daemon(config) as daemon, open_client(broker) as bus:
        run = await ask(bus, "Run", ns, container(rootfs, netns_name, "old"), timeout=CALL_TIMEOUT)
        assert run.kind == "ok", run
        callers = Callers(bus)
        os.kill(containerd_pid, signal.SIGSTOP)
        stopped_at = trio.current_time()
        try:
            async with trio.open_nursery() as nursery:
                for name, method, args in [
                    ("Run new", "Run", (ns, container(rootfs, netns_name, "new"))),
                    ("Inspect old", "Inspect", (ns, "old")),
                    ("List", "List", (ns,)),
                    ("Logs old", "Logs", (ns, "old")),
                    ("Exec in old", "Exec", (ns, "old", 5 * 10**9, "true")),
                    ("Delete old", "Delete", (ns, "old")),
                ]:
                    callers.start(nursery, name, method, *args, timeout=CALL_TIMEOUT)
                taken = await within(lambda: daemon.server.in_flight + len(callers.answers) == 6, 10)
                findings.check("while stopped", taken, "the daemon did not take the 6 requests in 10 s")
                # Requests that need no containerd are still served meanwhile.
                status = await bus.status(MODULE, timeout=5)
                busy = [w.state for w in status.workers].count("busy")
                findings.check("while stopped", busy > 0, "the status shows no busy worker")
                await within(lambda: not callers.unanswered(), SHORT_DEADLINE + ANSWER_SLACK_SECONDS)
                stopped_for = trio.current_time() - stopped_at
                os.kill(containerd_pid, signal.SIGCONT)
        finally:
            os.kill(containerd_pid, signal.SIGCONT)
        assert stopped_for > SHORT_DEADLINE, "containerd was not stopped past the deadline"
        findings.add("answers", answer_problems(callers, allowed=("error",)))
        for name, answer in callers.answers.items():
            findings.check(
                "answers",
                answer.seconds <= SHORT_DEADLINE + ANSWER_SLACK_SECONDS,
                f"{name}: answered only after {answer.seconds:.1f} s, past the {SHORT_DEADLINE:g} s "
                f"deadline and its {ANSWER_SLACK_SECONDS:g} s clean-up slack",
            )
        new = {"new"}
        made = callers.answers["Run new"].kind == "ok"
        findings.add(
            "after SIGCONT",
            await settled(
                look(running=new if made else set(), absent=set() if made else new), SETTLE_SECONDS
            ),
        )
        findings.add("deleting old", await delete_everything(bus, ns, ["old"]))
        findings.add("after deleting old", await settled(look(absent={"old", "new"}), SETTLE_SECONDS))
    findings.assert_none(f"containerd stopped for {stopped_for:.1f} s\n{callers.report()}")


async def test_the_daemon_sigkilled_during_concurrent_runs(
    private_redis: services.RedisService,
    containerd: services.ContainerdService,
    ns: str,
    netns_name: str,
    rootfs: Path,
    corex: Path,
    tmp_path: Path,
) -> None:
    root = tmp_path / "contd-root"
    # A long settle window keeps every Run in flight for a second after its
    # container exists: the kill lands mid-Run.
    flags = (
        "-corex",
        str(corex),
        "-start-settle",
        "1s",
        "-restart-delay",
        "300ms",
        "-reconcile-interval",
        "3s",
    )
    daemon = ContdProcess(private_redis, containerd, root, tmp_path / "contd.log", *flags)
    queue = codec.queue_name(MODULE, OBJECT)
    bus_redis = redis.Redis(unix_socket_path=str(private_redis.socket_path))
    names = [f"r{i}" for i in range(10)]
    specs = {name: container(rootfs, netns_name, name) for name in names}
    look = functools.partial(observer, containerd.address, root, ns)
    findings = Findings()

    def containers_in_containerd() -> int:
        return len(services.ctr(containerd.address, "containers", "list", "-q", namespace=ns).split())

    daemon.start()
    try:
        async with open_client(private_redis.url) as bus:
            await bus.status(MODULE, timeout=30)
            callers = Callers(bus)

            async def drained() -> bool:
                # Every request taken and answered: the status answer leaves
                # after theirs, and the client reads answers in order.
                if bus_redis.llen(queue):
                    return False
                status = await bus.status(MODULE, timeout=5)
                return all(w.state == "free" for w in status.workers)

            async with trio.open_nursery() as nursery:
                for name in names:
                    callers.start(nursery, name, "Run", ns, specs[name], timeout=120)

                async def three_made() -> bool:
                    return await trio.to_thread.run_sync(containers_in_containerd) >= 3

                await wait_until(three_made, 30)
                daemon.kill()
                in_flight = callers.unanswered()
                daemon.start()
                findings.check(
                    "restart",
                    await within(lambda: "reconciling" in daemon.log(), 30),
                    "the new daemon logged no start-up reconciliation within 30 s",
                )
                await wait_until(drained, 60)
                # Whoever is still waiting asked the killed daemon: nobody will answer.
                nursery.cancel_scope.cancel()
            callers.mark_cancelled()
            assert in_flight, "every Run had answered before the daemon was killed: nothing was tested"
            findings.add("answers", answer_problems(callers, allowed=("ok", "error", "cancelled")))
            succeeded = callers.named("ok")
            unanswered = set(names) - succeeded
            findings.add(
                "after the new daemon's reconciliation",
                await settled(look(running=succeeded, absent=unanswered), SETTLE_SECONDS),
            )
            retries = await run_all(bus, ns, {name: specs[name] for name in sorted(unanswered)})
            findings.add(
                "retrying every Run that did not answer success", answer_problems(retries, allowed=("ok",))
            )
            findings.add("deleting everything", await delete_everything(bus, ns, names))
            findings.add("after deleting everything", await settled(look(absent=names), SETTLE_SECONDS))
    finally:
        daemon.stop()
    findings.assert_none(
        f"Runs in flight when the daemon was killed: {in_flight}\nanswers:\n{callers.report()}\n"
        f"retries:\n{retries.report()}\ndaemon log (tail):\n{daemon.tail()}"
    )


async def test_redis_restarted_with_calls_in_flight(
    daemon_config: Config,
    private_redis: services.RedisService,
    containerd: services.ContainerdService,
    ns: str,
    netns_name: str,
    rootfs: Path,
) -> None:
    # Runs stay in flight for their 2 s settle window, Execs for their 2 s
    # sleep, the Delete for its 2 s shutdown grace: Redis restarts meanwhile.
    config = dataclasses.replace(daemon_config, broker=private_redis.url, start_settle=2.0)
    look = functools.partial(observer, containerd.address, config.root, ns)
    findings = Findings()
    async with open_daemon(config) as daemon, open_client(private_redis.url) as bus:
        first = await run_all(
            bus,
            ns,
            {
                "x": container(rootfs, netns_name, "x"),
                "old": container(
                    rootfs, netns_name, "old", entrypoint=STUBBORN, shutdown_timeout_ns=2 * 10**9
                ),
            },
        )
        assert first.named("ok") == {"x", "old"}, first.report()
        callers = Callers(bus)
        async with trio.open_nursery() as nursery:
            for name in ("a", "b", "c"):
                callers.start(
                    nursery, f"Run {name}", "Run", ns, container(rootfs, netns_name, name), timeout=60
                )
            for i in range(2):
                callers.start(nursery, f"Exec {i}", "Exec", ns, "x", 10 * 10**9, "sleep", "2", timeout=60)
            callers.start(nursery, "Delete old", "Delete", ns, "old", timeout=60)
            await wait_until(lambda: daemon.server.in_flight == 6, 10)
            private_redis.restart()  # on this thread: see start_again
        # The server kept its answers and the client kept popping: all arrive.
        findings.add("answers", answer_problems(callers, allowed=("ok",)))
        findings.add(
            "after the restart",
            await settled(look(running={"a", "b", "c", "x"}, absent={"old"}), SETTLE_SECONDS),
        )
        findings.add("deleting everything", await delete_everything(bus, ns, ["a", "b", "c", "x"]))
        findings.add(
            "after deleting everything", await settled(look(absent={"a", "b", "c", "x"}), SETTLE_SECONDS)
        )
    findings.assert_none(callers.report())


async def test_delete_whose_shutdown_timeout_outlasts_the_request_deadline(
    daemon_config: Config,
    containerd: services.ContainerdService,
    broker: str,
    ns: str,
    netns_name: str,
    rootfs: Path,
) -> None:
    config = dataclasses.replace(daemon_config, request_timeout=SHORT_DEADLINE)
    look = functools.partial(observer, containerd.address, config.root, ns)
    findings = Findings()
    async with open_daemon(config), open_client(broker) as bus:
        stubborn = container(
            rootfs, netns_name, "stubborn", entrypoint=STUBBORN, shutdown_timeout_ns=60 * 10**9
        )
        run = await ask(bus, "Run", ns, stubborn, timeout=CALL_TIMEOUT)
        assert run.kind == "ok", run
        delete = await ask(bus, "Delete", ns, "stubborn", timeout=CALL_TIMEOUT)
        findings.check("answer", delete.kind == "ok", f"Delete answered {delete}")
        # The deadline bounds the whole Delete, SIGKILL and removal included
        # (one second for the trip through Redis).
        findings.check(
            "answer",
            delete.seconds <= SHORT_DEADLINE + 1.0,
            f"Delete answered after {delete.seconds:.1f} s, past the {SHORT_DEADLINE:g} s deadline",
        )
        findings.add("right after the answer", await trio.to_thread.run_sync(look(absent={"stubborn"})))
        if findings.problems:
            # How it looks a while later, for the report.
            findings.add(
                f"{SETTLE_SECONDS:g} s later", await settled(look(absent={"stubborn"}), SETTLE_SECONDS)
            )
    findings.assert_none()
