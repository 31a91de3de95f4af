"""The fault-injecting proxy the component tests use (``faults.FaultProxy``)
does what each fault says, against the real containerd: these tests keep
the component tests of our error handling honest."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from contd_trio import errors
from contd_trio.containerd.channel import open_channel
from contd_trio.containerd.client import (
    EVENTS_SUBSCRIBE,
    NAMESPACES_CREATE,
    NAMESPACES_LIST,
    VERSION,
    Containerd,
    Gap,
)
from tests.component.faults import RPCS, FaultProxy, Status, calling_as


@pytest.fixture
async def through(proxy: FaultProxy) -> AsyncIterator[Containerd]:
    """A containerd client whose calls go through the proxy."""
    async with open_channel("/nonexistent/containerd.sock", grpc_channel=proxy.channel) as channel:
        yield Containerd(channel)


async def test_every_rpc_of_the_client_is_served() -> None:
    assert len(RPCS) >= 19
    assert EVENTS_SUBSCRIBE.path in RPCS and VERSION.path in RPCS


async def test_calls_go_through_and_are_recorded(through: Containerd, proxy: FaultProxy, ns: str) -> None:
    version, _ = await through.version()
    assert version
    with calling_as("me"):
        await through.ensure_namespace(ns)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(through.list_namespaces)
    assert ns in await through.list_namespaces()
    assert [(c.method, c.caller, c.outcome) for c in proxy.calls] == [
        ("Version/Version", "", "ok"),
        ("Namespaces/Create", "me", "ok"),
        ("Namespaces/List", "me", "ok"),  # a child task carries its parent's label
        ("Namespaces/List", "", "ok"),
    ]
    assert proxy.calls[1].namespace == ns


async def test_a_failure_reaches_the_caller_as_its_error(
    through: Containerd, proxy: FaultProxy, ns: str
) -> None:
    rule = proxy.fail(NAMESPACES_LIST, Status.NOT_FOUND, "nothing here: not found", nth=2)
    await through.list_namespaces()
    with pytest.raises(errors.NotFound, match="nothing here"):
        await through.list_namespaces()
    await through.list_namespaces()  # times=1: only the second call failed
    assert [c.number for c in rule.applied] == [2]


async def test_forward_then_fail_does_the_work(
    through: Containerd, real: Containerd, proxy: FaultProxy, ns: str
) -> None:
    proxy.fail(NAMESPACES_CREATE, Status.UNAVAILABLE, "gone", forward_first=True)
    with pytest.raises(errors.Unavailable):
        await through.ensure_namespace(ns)
    assert ns in await real.list_namespaces()


async def test_a_call_hangs_until_released(through: Containerd, proxy: FaultProxy) -> None:
    gate = proxy.hang(VERSION)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(through.version)
        call = await gate.wait_arrived()
        assert call in proxy.in_flight
        gate.release()
    assert call.outcome == "ok"


async def test_a_late_answer_was_done_before_it_came(
    through: Containerd, real: Containerd, proxy: FaultProxy, ns: str
) -> None:
    gate = proxy.hang(NAMESPACES_CREATE, forward_first=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(through.ensure_namespace, ns)
        await gate.wait_arrived()
        assert ns in await real.list_namespaces()
        gate.release()


async def test_a_hook_can_cancel_the_caller_at_that_call(through: Containerd, proxy: FaultProxy) -> None:
    with trio.CancelScope() as scope:
        proxy.hook(VERSION, lambda call: scope.cancel())
        await through.version()
    assert scope.cancelled_caught
    await proxy.wait_for(lambda: not proxy.in_flight)
    assert proxy.calls[-1].outcome in ("abandoned", "ok")


async def test_an_outage_breaks_calls_in_flight_and_new_ones_until_it_ends(
    through: Containerd, proxy: FaultProxy
) -> None:
    gate = proxy.hang(VERSION)
    async with trio.open_nursery() as nursery:

        async def held_call() -> None:
            with pytest.raises(errors.Unavailable, match=r"containerd at .* unavailable"):
                await through.version()

        nursery.start_soon(held_call)
        await gate.wait_arrived()
        proxy.begin_outage(0.2)
    with pytest.raises(errors.Unavailable):
        await through.list_namespaces()
    await proxy.outage_over()
    await through.list_namespaces()
    assert [c.outcome for c in proxy.calls] == ["reset", "reset", "ok"]


async def test_a_broken_event_stream_is_a_gap_and_is_closed_when_left(
    through: Containerd, real: Containerd, proxy: FaultProxy, ns: str
) -> None:
    async with through.watch_events() as events:
        await proxy.wait_for(lambda: len(proxy.open_streams()) == 1)
        await real.ensure_namespace(ns)
        first = await events.__anext__()
        assert not isinstance(first, Gap) and first.namespace == ns
        assert proxy.break_event_streams() == 1
        assert isinstance(await events.__anext__(), Gap)
        await proxy.wait_for(lambda: len(proxy.open_streams()) == 1)
    await proxy.wait_for(lambda: not proxy.open_streams())
    assert [c.outcome for c in proxy.calls if c.path == EVENTS_SUBSCRIBE.path] == ["reset", "abandoned"]
