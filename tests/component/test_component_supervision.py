"""Component test of our error handling, with faults injected at the
containerd channel (``faults.FaultProxy``); it complements the real-process
tests that kill containerd while the daemon supervises containers.

Supervision never dies: containerd failing during a crash restart, during
the finish-off of a container that was asked to go away, during
reconciliation, or its event stream breaking, never ends the daemon. It
keeps serving (its status object answers, a new Run works), and what it
could not do it does once containerd answers again: an exit seen while
calls failed still gets the container restarted.
"""

from __future__ import annotations

from pathlib import Path

import trio

from contd_trio import errors
from contd_trio.containerd.client import CONTAINERS_LIST, EVENTS_SUBSCRIBE, NAMESPACES_LIST, TASKS_LIST
from contd_trio.module.client import ContainerClient
from contd_trio.module.types import Container
from tests.component.faults import RPCS, Fail, FaultProxy, Rule, Status
from tests.component.support import (
    Leftovers,
    aimed,
    container,
    crash,
    run_all,
    serving,
    settled,
    unavailable,
    where,
)

#: Ignores SIGTERM: stopping it takes its whole ShutdownTimeout, then SIGKILL.
SIGTERM_IGNORED = "sh -c 'trap \"\" TERM; sleep 1000 & wait'"
SUPERVISOR = ""  # the supervisor's calls carry no caller label


async def wait_restarted(
    leftovers: Leftovers, ns: str, crashed: dict[str, int], timeout: float = 10.0
) -> list[str]:
    """Wait until each container of ``crashed`` (id: the pid that died)
    runs again; returns those that do not."""

    async def running_again(cid: str) -> bool:
        try:
            state = await leftovers.real.get_process(ns, cid)
        except errors.NotFound:
            return False
        return state.status == "running" and state.pid != crashed[cid]

    with trio.move_on_after(timeout):
        while [cid for cid in crashed if not await running_again(cid)]:
            await trio.sleep(0.05)
    return [cid for cid in crashed if not await running_again(cid)]


async def still_serving(contd: ContainerClient, ns: str, netns: str, rootfs: Path, name: str) -> None:
    """The daemon answers its status object and runs a new container."""
    await serving(contd)
    await contd.run(ns, container(rootfs, netns, name))


async def test_unavailable_during_a_crash_restart_is_retried(
    contd: ContainerClient, proxy: FaultProxy, leftovers: Leftovers, ns: str, netns_name: str, rootfs: Path
) -> None:
    await contd.run(ns, container(rootfs, netns_name, "probe"))
    await settled(proxy)
    since = len(proxy.calls)
    crashed = {"probe": await crash(leftovers.real, ns, "probe")}
    assert await wait_restarted(leftovers, ns, crashed) == []
    await settled(proxy)  # the restart's last calls
    trace = [c for c in proxy.calls[since:] if c.caller == SUPERVISOR and c.container_id == "probe"]
    assert trace, "a restart made no containerd call"
    subjects = [f"c{index}" for index in range(len(trace))]
    await run_all(contd, ns, [container(rootfs, netns_name, cid) for cid in subjects])
    rules = [
        proxy.add(aimed(unavailable(proxy, call), trace, i, SUPERVISOR, subjects[i]))
        for i, call in enumerate(trace)
    ]
    since = len(proxy.calls)
    crashed = {}

    async def crash_one(cid: str) -> None:
        crashed[cid] = await crash(leftovers.real, ns, cid)

    async with trio.open_nursery() as nursery:
        for cid in subjects:
            nursery.start_soon(crash_one, cid)
    not_restarted = await wait_restarted(leftovers, ns, crashed)
    problems = [
        f"Unavailable at {where(trace, i)} of a restart: never applied"
        for i, rule in enumerate(rules)
        if not rule.applied
    ] + [
        f"Unavailable at {where(trace, i)} of a restart: {cid} was not restarted"
        f" (calls: {_calls_for(proxy, since, cid)})"
        for i, cid in enumerate(subjects)
        if cid in not_restarted
    ]
    assert not problems, "\n".join(problems)
    await still_serving(contd, ns, netns_name, rootfs, "after")


async def test_unavailable_while_finishing_off_a_container_that_goes_away(
    contd: ContainerClient, proxy: FaultProxy, leftovers: Leftovers, ns: str, netns_name: str, rootfs: Path
) -> None:
    # SignalDelete marks it as going away; it ignores the SIGTERM and runs on
    # until reconciliation finishes it off (SIGTERM, its timeout, SIGKILL, delete).
    def stubborn(cid: str) -> Container:
        return container(rootfs, netns_name, cid, entrypoint=SIGTERM_IGNORED, shutdown_timeout_ns=200_000_000)

    await contd.run(ns, stubborn("probe"))
    await contd.signal_delete(ns, "probe")
    since = len(proxy.calls)
    assert proxy.break_event_streams() == 1  # a gap: reconciliation runs
    assert await leftovers.wait_gone(ns, "probe", timeout=10) == []
    trace = [c for c in proxy.calls[since:] if c.caller == SUPERVISOR and c.container_id == "probe"]
    assert trace, "finishing off made no containerd call"
    subjects = [f"c{index}" for index in range(len(trace))]
    await run_all(contd, ns, [stubborn(cid) for cid in subjects])
    for cid in subjects:
        await contd.signal_delete(ns, cid)
    rules = [
        proxy.add(aimed(unavailable(proxy, call), trace, i, SUPERVISOR, subjects[i]))
        for i, call in enumerate(trace)
    ]
    since = len(proxy.calls)
    assert proxy.break_event_streams() == 1
    with trio.move_on_after(10):
        await proxy.wait_for(lambda: all(rule.applied for rule in rules))
    # Once containerd answers again, the next reconciliation finishes them all.
    await proxy.wait_for(lambda: len(proxy.open_streams()) == 1)
    assert proxy.break_event_streams() == 1
    problems = [
        f"Unavailable at {where(trace, i)} of finishing off: never applied"
        for i, rule in enumerate(rules)
        if not rule.applied
    ] + [
        f"Unavailable at {where(trace, i)} of finishing off: left {', '.join(left)}"
        f" (calls: {_calls_for(proxy, since, cid)})"
        for i, cid in enumerate(subjects)
        if (left := await leftovers.wait_gone(ns, cid, timeout=10))
    ]
    assert not problems, "\n".join(problems)
    await still_serving(contd, ns, netns_name, rootfs, "after")


async def test_unavailable_during_reconciliation_does_not_end_supervision(
    contd: ContainerClient, proxy: FaultProxy, leftovers: Leftovers, ns: str, netns_name: str, rootfs: Path
) -> None:
    await contd.run(ns, container(rootfs, netns_name, "c1"))
    for rpc in (NAMESPACES_LIST, TASKS_LIST, CONTAINERS_LIST):
        rule = proxy.fail(rpc, Status.UNAVAILABLE, "connection refused", caller=SUPERVISOR)
        await proxy.wait_for(lambda: len(proxy.open_streams()) == 1)
        assert proxy.break_event_streams() == 1
        await proxy.wait_for(lambda: bool(rule.applied))  # noqa: B023  (waited for here)
        await serving(contd)
    # Supervision goes on: a crash is still seen and acted on.
    crashed = {"c1": await crash(leftovers.real, ns, "c1")}
    assert await wait_restarted(leftovers, ns, crashed) == []
    await still_serving(contd, ns, netns_name, rootfs, "after")


async def test_a_broken_event_stream_is_subscribed_again_and_exits_in_between_are_caught(
    contd: ContainerClient, proxy: FaultProxy, leftovers: Leftovers, ns: str, netns_name: str, rootfs: Path
) -> None:
    await contd.run(ns, container(rootfs, netns_name, "c1"))
    gate = proxy.hang(EVENTS_SUBSCRIBE)  # the next subscription waits for the test
    assert proxy.break_event_streams() == 1
    await gate.wait_arrived()
    crashed = {"c1": await crash(leftovers.real, ns, "c1")}  # the exit event is lost: nobody listens
    with trio.fail_after(10):
        while (await leftovers.real.get_process(ns, "c1")).status != "stopped":
            await trio.sleep(0.02)
    await serving(contd)
    gate.release()
    assert await wait_restarted(leftovers, ns, crashed) == []
    await still_serving(contd, ns, netns_name, rootfs, "after")


async def test_an_exit_seen_while_containerd_calls_fail_is_acted_on_once_they_work(
    contd: ContainerClient, proxy: FaultProxy, leftovers: Leftovers, ns: str, netns_name: str, rootfs: Path
) -> None:
    await contd.run(ns, container(rootfs, netns_name, "c1"))
    failing = [
        proxy.add(
            Rule(
                rpc,
                before=[Fail(Status.UNAVAILABLE, "connection refused")],
                forward=False,
                caller=SUPERVISOR,
                container="c1",
                times=None,
            )
        )
        for path, rpc in RPCS.items()
        if path != EVENTS_SUBSCRIBE.path
    ]
    since = len(proxy.calls)
    crashed = {"c1": await crash(leftovers.real, ns, "c1")}
    await proxy.wait_for(lambda: any(rule.applied for rule in failing))  # the exit was seen
    proxy.clear()  # containerd answers again; the event stream never broke
    not_restarted = await wait_restarted(leftovers, ns, crashed)
    assert not not_restarted, f"c1 was not restarted (calls: {_calls_for(proxy, since, 'c1')})"
    await still_serving(contd, ns, netns_name, rootfs, "after")


def _calls_for(proxy: FaultProxy, since: int, cid: str) -> str:
    calls = [c for c in proxy.calls[since:] if c.container_id == cid]
    return "; ".join(f"{c.method} {c.outcome}" for c in calls)
