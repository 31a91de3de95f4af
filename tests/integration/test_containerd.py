"""The containerd client against the real containerd + runc of the fixtures."""

from __future__ import annotations

import contextlib
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing

from contd_trio import errors
from contd_trio.containerd import channel as channel_module
from contd_trio.containerd import spec as oci
from contd_trio.containerd.channel import open_channel
from contd_trio.containerd.client import Containerd
from contd_trio.containerd.events import Event, Gap, TaskExit, TaskStart
from tools import services


def busybox_spec(ns: str, cid: str, rootfs: Path, *args: str) -> dict[str, Any]:
    spec = oci.default_spec(ns, cid)
    spec["root"] = {"path": str(rootfs)}
    spec["process"]["args"] = list(args)
    spec["process"]["env"] = ["PATH=/bin"]
    return spec


@pytest.fixture
async def ctd(containerd: services.ContainerdService) -> AsyncIterator[Containerd]:
    async with open_channel(containerd.address) as channel:
        yield Containerd(channel)


async def remove(ctd: Containerd, ns: str, cid: str) -> None:
    """Best-effort removal of a test container and its task."""
    with contextlib.suppress(errors.NotFound):
        await ctd.kill(ns, cid, signal.SIGKILL)
        await ctd.wait(ns, cid, timeout=10)
    with contextlib.suppress(errors.NotFound):
        await ctd.delete_task(ns, cid)
    with contextlib.suppress(errors.NotFound):
        await ctd.delete_container(ns, cid)


async def test_version(ctd: Containerd) -> None:
    version, revision = await ctd.version()
    assert version.split(".")[0] in ("1", "2", "v1", "v2")
    assert revision


async def test_namespaces(ctd: Containerd, ns: str) -> None:
    await ctd.ensure_namespace(ns)
    await ctd.ensure_namespace(ns)  # already there: fine
    assert ns in await ctd.list_namespaces()


async def test_creating_a_container_makes_its_namespace(ctd: Containerd, busybox_rootfs: Path) -> None:
    """What Run relies on to skip Namespaces.Create."""
    fresh = f"fresh{uuid.uuid4().hex[:8]}"
    assert fresh not in await ctd.list_namespaces()
    await ctd.create_container(fresh, "c1", busybox_spec(fresh, "c1", busybox_rootfs, "true"))
    try:
        assert fresh in await ctd.list_namespaces()
        assert [record.id for record in await ctd.list_containers(fresh)] == ["c1"]
    finally:
        await ctd.delete_container(fresh, "c1")


async def test_container_life_cycle(ctd: Containerd, ns: str, busybox_rootfs: Path) -> None:
    spec = busybox_spec(ns, "c1", busybox_rootfs, "sleep", "60")
    created = await ctd.create_container(ns, "c1", spec, labels={"a": "1"})
    assert created.id == "c1" and created.labels == {"a": "1"} and created.runtime == "io.containerd.runc.v2"
    got = await ctd.get_container(ns, "c1")
    assert got.spec == spec
    assert got.created_at_ns > 0
    assert [c.id for c in await ctd.list_containers(ns)] == ["c1"]
    assert [c.id for c in await ctd.list_containers(ns, filters=['labels."a"==2'])] == []
    updated = await ctd.update_labels(ns, "c1", {"b": "2"})
    assert updated.labels == {"a": "1", "b": "2"}
    assert (await ctd.update_labels(ns, "c1", {"a": ""})).labels == {"b": "2"}
    with pytest.raises(errors.AlreadyExists, match='container "c1"'):
        await ctd.create_container(ns, "c1", spec)
    await ctd.delete_container(ns, "c1")
    with pytest.raises(errors.NotFound) as caught:
        await ctd.get_container(ns, "c1")
    assert str(caught.value).endswith(": not found")  # containerd's words, meaning kept
    with pytest.raises(errors.NotFound):
        await ctd.delete_container(ns, "c1")


async def test_task_life_cycle_with_a_log_file(
    ctd: Containerd, ns: str, busybox_rootfs: Path, tmp_path: Path
) -> None:
    log = tmp_path / "c2.log"
    script = "echo out; echo err >&2; trap 'exit 3' TERM; while true; do sleep 0.1; done"
    await ctd.create_container(ns, "c2", busybox_spec(ns, "c2", busybox_rootfs, "sh", "-c", script))
    try:
        pid = await ctd.create_task(ns, "c2", stdout=f"file://{log}", stderr=f"file://{log}")
        assert pid > 0
        assert (await ctd.get_process(ns, "c2")).status == "created"
        async with trio.open_nursery() as nursery:
            exits = []

            async def wait_exit() -> None:
                exits.append(await ctd.wait(ns, "c2"))

            nursery.start_soon(wait_exit)  # Wait before Start, as containerd's docs ask
            assert await ctd.start(ns, "c2") == pid
            state = await ctd.get_process(ns, "c2")
            assert state.status == "running" and state.pid == pid
            assert pid in await ctd.pids(ns, "c2")
            with trio.fail_after(10):
                while "err" not in (log.read_text() if log.exists() else ""):
                    await trio.sleep(0.05)
            await ctd.kill(ns, "c2", signal.SIGTERM)
        assert exits[0].exit_status == 3
        assert sorted(log.read_text().splitlines()) == ["err", "out"]  # two pipes: either order
        deleted = await ctd.delete_task(ns, "c2")
        assert deleted.exit_status == 3
        with pytest.raises(errors.NotFound):
            await ctd.get_process(ns, "c2")
    finally:
        await remove(ctd, ns, "c2")


async def test_exec_a_second_process(ctd: Containerd, ns: str, busybox_rootfs: Path) -> None:
    spec = busybox_spec(ns, "c3", busybox_rootfs, "sleep", "60")
    await ctd.create_container(ns, "c3", spec)
    try:
        await ctd.create_task(ns, "c3")
        await ctd.start(ns, "c3")
        process = oci.process_spec(["sh", "-c", "exit 7"], ["PATH=/bin"], "/", spec)
        await ctd.exec_process(ns, "c3", "e1", process)
        async with trio.open_nursery() as nursery:
            exits = []

            async def wait_exit() -> None:
                exits.append(await ctd.wait(ns, "c3", "e1"))

            nursery.start_soon(wait_exit)
            await trio.lowlevel.checkpoint()
            await ctd.start(ns, "c3", "e1")
        assert exits[0].exit_status == 7
        await ctd.delete_process(ns, "c3", "e1")
        assert (await ctd.get_process(ns, "c3")).status == "running"  # the container is untouched
    finally:
        await remove(ctd, ns, "c3")


async def test_start_and_exit_events(ctd: Containerd, ns: str, busybox_rootfs: Path) -> None:
    filters = [f'namespace=={ns},topic~="^/tasks/"', f'namespace=={ns},topic=="/containers/create"']
    async with ctd.watch_events(filters) as events:
        spec = busybox_spec(ns, "c4", busybox_rootfs, "sh", "-c", "exit 3")
        await ctd.create_container(ns, "c4", spec)
        try:
            # containerd registers a subscriber after the call is made: its own
            # event for the container is the sign that nothing later is missed.
            with trio.fail_after(10):
                created = await events.__anext__()
            assert isinstance(created, Event) and created.topic == "/containers/create"
            await ctd.create_task(ns, "c4")
            pid = await ctd.start(ns, "c4")
            seen: list[Event] = []
            with trio.fail_after(10):
                async for event in events:
                    assert isinstance(event, Event)
                    seen.append(event)
                    if event.topic == "/tasks/exit":
                        break
        finally:
            await remove(ctd, ns, "c4")
    assert [e.topic for e in seen] == ["/tasks/create", "/tasks/start", "/tasks/exit"]
    start, exit_ = seen[1].payload, seen[2].payload
    assert isinstance(start, TaskStart) and start.container_id == "c4" and start.pid == pid
    assert isinstance(exit_, TaskExit) and exit_.id == exit_.container_id == "c4" and exit_.exit_status == 3
    assert all(e.namespace == ns and e.container_id == "c4" for e in seen)


async def test_a_connection_near_its_last_stream_id_is_replaced(
    ctd: Containerd, ns: str, busybox_rootfs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP/2 numbers a connection's streams up to 2**31 - 1, one per call:
    h2 refuses every call after that, and without a new connection every
    call would fail from then on. Getting there takes a billion calls, so
    this test moves the connection's stream counter (h2's
    ``highest_outbound_stream_id``) to two ids before the end: injected
    state, on a real containerd connection."""
    monkeypatch.setattr(channel_module, "RETIRED_CLOSE_AFTER_SECONDS", 0.0)
    filters = [f'namespace=={ns},topic=="/containers/create"']
    async with ctd.watch_events(filters) as events:
        grpc = ctd.channel._channel
        assert grpc is not None
        first = grpc._protocol
        assert first is not None
        h2_connection = first.connection._connection
        h2_connection.highest_outbound_stream_id = h2_connection.HIGHEST_ALLOWED_STREAM_ID - 4
        for _ in range(5):
            await ctd.version()
        assert grpc._protocol is not first
        # The subscription made on the old connection goes on there.
        assert not first.handler.connection_lost
        await ctd.create_container(ns, "c9", busybox_spec(ns, "c9", busybox_rootfs, "true"))
        try:
            with trio.fail_after(10):
                created = await events.__anext__()
            assert isinstance(created, Event) and created.topic == "/containers/create"
            assert events.resubscriptions == 0
        finally:
            await ctd.delete_container(ns, "c9")
    # Its last stream ended: the next call closes it.
    await ctd.version()
    assert first.handler.connection_lost


async def test_a_cancelled_call_really_stops(ctd: Containerd, ns: str, busybox_rootfs: Path) -> None:
    await ctd.create_container(ns, "c5", busybox_spec(ns, "c5", busybox_rootfs, "sleep", "60"))
    try:
        await ctd.create_task(ns, "c5")
        await ctd.start(ns, "c5")
        started = trio.current_time()
        with trio.move_on_after(0.3) as scope:
            await ctd.wait(ns, "c5")  # would wait a minute
        assert scope.cancelled_caught
        assert trio.current_time() - started < 2
        # The channel is fine afterwards, and the task was not touched.
        assert (await ctd.get_process(ns, "c5")).status == "running"
        # A call's own timeout shorter than the caller's deadline ends it as DeadlineExceeded.
        with pytest.raises(errors.DeadlineExceeded):
            await ctd.wait(ns, "c5", timeout=0.3)
    finally:
        await remove(ctd, ns, "c5")


async def test_containerd_restarted_mid_test(
    private_containerd: services.ContainerdService, ns: str, busybox_rootfs: Path
) -> None:
    async with open_channel(private_containerd.address) as channel:
        ctd = Containerd(channel)
        await ctd.create_container(ns, "c6", busybox_spec(ns, "c6", busybox_rootfs, "sleep", "60"))
        await ctd.create_task(ns, "c6")
        pid = await ctd.start(ns, "c6")
        async with ctd.watch_events([f"namespace=={ns}"]) as events:
            in_flight: list[BaseException] = []

            async def wait_in_flight() -> None:
                try:
                    await ctd.wait(ns, "c6")
                except errors.Unavailable as exc:
                    in_flight.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(wait_in_flight)
                # Every task blocked: the Wait went out and waits for its answer.
                await trio.testing.wait_all_tasks_blocked()
                private_containerd.kill()
            assert len(in_flight) == 1  # the call in flight failed as Unavailable
            with pytest.raises(errors.Unavailable, match="unavailable"):
                await ctd.version()
            await trio.to_thread.run_sync(private_containerd.start_again)
            # The client reconnects on its own, and the task survived (its shim did).
            assert (await ctd.get_process(ns, "c6")).pid == pid
            with trio.fail_after(30):
                gap = await events.__anext__()
            assert isinstance(gap, Gap)
            assert events.resubscriptions == 1
            # The new subscription is live once it delivers an event of ours.
            await ctd.update_labels(ns, "c6", {"probe": "1"})
            with trio.fail_after(10):
                async for event in events:
                    if isinstance(event, Event) and event.topic == "/containers/update":
                        break
            await ctd.kill(ns, "c6", signal.SIGKILL)
            with trio.fail_after(10):
                async for event in events:
                    if isinstance(event, Event) and event.topic == "/tasks/exit":
                        break
        await ctd.delete_task(ns, "c6")
        await ctd.delete_container(ns, "c6")
