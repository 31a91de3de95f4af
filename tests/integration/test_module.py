"""The container module on the real containerd, driven through zbus.

Each field of a Container is observed from inside the container where it can
be: the entrypoint prints what it sees, and the test reads it with Logs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from pathlib import Path
from typing import Any

import msgpack
import pytest
import redis
import trio
import trio.lowlevel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contd_trio.app import Daemon, open_daemon
from contd_trio.config import Config
from contd_trio.containerd.spec import DEFAULT_PATH
from contd_trio.module.client import ContainerClient
from contd_trio.module.container import EXEC_ERROR_OUTPUT_BYTES
from contd_trio.module.types import Container, MountInfo, NetworkInfo
from contd_trio.zbus import codec
from contd_trio.zbus.client import open_client
from contd_trio.zbus.errors import CallError
from contd_trio.zbus.transport import parse_broker_url
from tests.helpers import STEADY, UNTIL_TERM, cgroup_value, go_pack, wait_until
from tools import services

CAP_SYS_ADMIN_BIT = 1 << 21
COOPERATIVE = "sh -c 'trap \"exit 0\" TERM; while true; do sleep 0.1; done'"


def container(rootfs: Path, netns: str, name: str = "c1", **fields: Any) -> Container:
    fields.setdefault("entrypoint", STEADY)
    return Container(name=name, rootfs=str(rootfs), network=NetworkInfo(netns), **fields)


async def output_of(contd: ContainerClient, ns: str, cid: str, marker: str = "END") -> str:
    """The container's output once it printed ``marker``."""
    text = ""

    async def printed() -> bool:
        nonlocal text
        text = await contd.logs(ns, cid)
        return marker in text

    await wait_until(printed)
    return text


def containers_left(containerd: services.ContainerdService, ns: str) -> list[str]:
    return services.ctr(containerd.address, "containers", "list", "-q", namespace=ns, check=False).split()


async def test_run_inspect_list_logs_delete(
    contd: ContainerClient,
    daemon: Daemon,
    ns: str,
    netns_name: str,
    rootfs: Path,
    containerd: services.ContainerdService,
) -> None:
    script = (
        "sh -c 'echo hello; echo oops >&2; echo END; trap \"exit 0\" TERM; while true; do sleep 0.1; done'"
    )
    assert await contd.run(ns, container(rootfs, netns_name, entrypoint=script)) == "c1"
    assert await contd.list_containers(ns) == ["c1"]
    assert ns in await contd.list_ns()
    info = await contd.inspect(ns, "c1")
    assert info.name == "c1" and info.rootfs == str(rootfs) and info.network.namespace == netns_name
    assert info.entrypoint == script
    assert info.cpu == 1 and info.memory == 268435456 and info.shutdown_timeout_ns == 3 * 10**9
    assert info.task is not None and info.task.status == "running" and info.task.pid > 0
    assert info.created_at.seconds > 0
    text = await output_of(contd, ns, "c1")
    assert "hello\n" in text and "oops\n" in text
    log_file = daemon.config.root / "logs" / ns / "c1.log"
    # The file holds each line with the time it was read and its stream (CRI's log format).
    records = [line.split(" ", 3) for line in log_file.read_text().splitlines()]
    assert {line: (stream, tag) for _, stream, tag, line in records} == {
        "hello": ("stdout", "F"),
        "oops": ("stderr", "F"),
        "END": ("stdout", "F"),
    }
    assert [line for *_, line in records] == text.splitlines()
    started = trio.current_time()
    await contd.delete(ns, "c1")
    assert trio.current_time() - started < 2  # it left on SIGTERM, without waiting for the timeout
    assert await contd.list_containers(ns) == []
    assert containers_left(containerd, ns) == []
    assert not log_file.exists()
    with pytest.raises(CallError, match=f"^container c1 not found in namespace {ns}$"):
        await contd.inspect(ns, "c1")
    with pytest.raises(CallError, match=f"^container c1 not found in namespace {ns}$"):
        await contd.delete(ns, "c1")
    with pytest.raises(CallError, match=f"^container c1 not found in namespace {ns}$"):
        await contd.logs(ns, "c1")


async def test_delete_removes_the_log_and_its_rotated_file(
    daemon_config: Config, broker: str, ns: str, netns_name: str, rootfs: Path
) -> None:
    config = dataclasses.replace(daemon_config, log_max_bytes=4096)
    script = f"sh -c 'i=1; while [ $i -le 600 ]; do echo line $i; i=$((i+1)); done; echo END; {UNTIL_TERM}'"
    async with open_daemon(config), open_client(broker) as bus:
        contd = ContainerClient(bus, timeout=60)
        await contd.run(ns, container(rootfs, netns_name, entrypoint=script))
        log_file = config.root / "logs" / ns / "c1.log"
        rotated = log_file.with_name("c1.log.1")
        await output_of(contd, ns, "c1")
        assert rotated.exists() and log_file.exists()
        await contd.delete(ns, "c1")
        assert not log_file.exists() and not rotated.exists()
        assert list(log_file.parent.iterdir()) == []  # nor the index


async def test_fields_as_seen_from_inside(
    contd: ContainerClient, ns: str, netns_name: str, rootfs: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "hello.txt").write_text("from the host\n")
    script = (
        "sh -c 'echo A=$A; echo PATH=$PATH; echo PWD=$(pwd); cat /mnt/data/hello.txt; "
        "grep CapBnd /proc/self/status; ls /dev/fuse 2>&1; "
        'cat /proc/net/dev | grep -o probe[01] | sort | tr "\\n" " "; '
        f"echo; grep -c nameserver /etc/resolv.conf; echo END; {UNTIL_TERM}'"
    )
    await contd.run(
        ns,
        container(
            rootfs,
            netns_name,
            entrypoint=script,
            env=["A=1"],
            working_dir="/tmp",
            mounts=[MountInfo(str(data), "/mnt/data")],
            cpu=min(2, os.cpu_count() or 1),
            memory=64 << 20,
        ),
    )
    text = await output_of(contd, ns, "c1")
    assert "A=1\n" in text
    assert f"PATH={DEFAULT_PATH}\n" in text
    assert "PWD=/tmp\n" in text
    assert "from the host\n" in text
    assert "probe0 probe1" in text  # the veth pair of the namespace it joined
    assert "No such file or directory" in text  # no /dev/fuse without Elevated
    capbnd = int(text.split("CapBnd:")[1].split()[0], 16)
    assert not capbnd & CAP_SYS_ADMIN_BIT
    assert cgroup_value(ns, "c1", "memory", "memory.limit_in_bytes", "memory.max") == str(64 << 20)
    quota = cgroup_value(ns, "c1", "cpu", "cpu.cfs_quota_us", "cpu.max").split()[0]
    assert quota == str(100_000 * min(2, os.cpu_count() or 1))
    info = await contd.inspect(ns, "c1")
    # The daemon's own resolv.conf bind is not a user mount.
    assert info.mounts == [MountInfo(str(data), "/mnt/data", "bind", ["rbind"])]
    await contd.delete(ns, "c1")


async def test_default_memory_is_truly_256_mib(
    contd: ContainerClient, ns: str, netns_name: str, rootfs: Path
) -> None:
    await contd.run(ns, container(rootfs, netns_name))
    assert cgroup_value(ns, "c1", "memory", "memory.limit_in_bytes", "memory.max") == "268435456"
    quota = cgroup_value(ns, "c1", "cpu", "cpu.cfs_quota_us", "cpu.max").split()[0]
    assert quota == "100000"
    await contd.delete(ns, "c1")


async def test_elevated_gets_sys_admin_and_fuse(
    contd: ContainerClient, ns: str, netns_name: str, rootfs: Path
) -> None:
    script = f"sh -c 'grep CapBnd /proc/self/status; ls -l /dev/fuse; echo END; {UNTIL_TERM}'"
    await contd.run(ns, container(rootfs, netns_name, entrypoint=script, elevated=True))
    text = await output_of(contd, ns, "c1")
    capbnd = int(text.split("CapBnd:")[1].split()[0], 16)
    assert capbnd & CAP_SYS_ADMIN_BIT
    assert "/dev/fuse" in text and "No such file" not in text
    assert (await contd.inspect(ns, "c1")).elevated
    await contd.delete(ns, "c1")


async def test_interactive_runs_corex_as_pid_1(
    contd: ContainerClient, ns: str, netns_name: str, rootfs: Path
) -> None:
    await contd.run(ns, container(rootfs, netns_name, interactive=True, entrypoint=""))
    text = await output_of(contd, ns, "c1", marker="corex")
    assert "corex --ipv6 -d 7 --interface eth0" in text
    info = await contd.inspect(ns, "c1")
    assert info.interactive
    assert info.mounts == []  # neither corex nor resolv.conf are reported as user mounts
    await contd.delete(ns, "c1")


async def test_startup_toml_supplies_the_entrypoint(
    contd: ContainerClient, ns: str, netns_name: str, rootfs: Path
) -> None:
    (rootfs / ".startup.toml").write_text(
        """
[startup.entry]
name = "core.system"

[startup.entry.args]
name = "/bin/sh"
args = ["-c", "echo FROM=$FROM; echo B=$B; pwd; echo END; trap 'exit 0' TERM; sleep 1000 & wait"]
dir = "/etc"

[startup.entry.args.env]
FROM = "startup"
B = "startup"
"""
    )
    await contd.run(ns, container(rootfs, netns_name, entrypoint="", env=["B=request"]))
    text = await output_of(contd, ns, "c1")
    assert "FROM=startup\n" in text and "B=request\n" in text and "/etc\n" in text
    await contd.delete(ns, "c1")


async def test_delete_of_a_process_that_ignores_sigterm(
    contd: ContainerClient, ns: str, netns_name: str, rootfs: Path, containerd: services.ContainerdService
) -> None:
    stubborn = "sh -c 'trap \"\" TERM; while true; do sleep 0.1; done'"
    await contd.run(ns, container(rootfs, netns_name, entrypoint=stubborn, shutdown_timeout_ns=10**9))
    started = trio.current_time()
    await contd.delete(ns, "c1")
    took = trio.current_time() - started
    assert 1.0 <= took < 1.0 + 3.0
    assert containers_left(containerd, ns) == []


async def test_signal_delete(contd: ContainerClient, ns: str, netns_name: str, rootfs: Path) -> None:
    await contd.run(ns, container(rootfs, netns_name))
    await contd.signal_delete(ns, "c1")

    async def stopped() -> bool:
        task = (await contd.inspect(ns, "c1")).task
        return task is not None and task.status == "stopped"

    await wait_until(stopped)
    await contd.signal_delete(ns, "nosuch")  # unknown: not an error
    await contd.delete(ns, "c1")


async def test_an_exec_writing_without_end_stays_bounded_on_disk(
    contd: ContainerClient, daemon: Daemon, ns: str, netns_name: str, rootfs: Path
) -> None:
    """An exec's output goes through the log shim, which rotates: a process
    that writes and writes never fills the daemon's disk."""
    await contd.run(ns, container(rootfs, netns_name, entrypoint=STEADY))
    outputs = daemon.config.root / "exec" / ns
    written = 20 * 1024 * 1024

    def size(path: Path) -> int:
        # The log shim rotates (and Exec removes) files while they are listed.
        try:
            return path.stat().st_size if path.is_file() else 0
        except FileNotFoundError:
            return 0

    def on_disk() -> int:
        # Each container has a directory of its own under the namespace's.
        return sum(size(f) for f in outputs.rglob("*"))

    async def exec_it() -> None:
        with pytest.raises(CallError, match=r"timed out after 20s; output: (y\n?)+$"):
            await contd.exec_process(ns, "c1", "sh", "-c", f"yes | head -c {written}; sleep 60", timeout=20)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(exec_it)
        # Everything is written once the file stops growing (head is done).
        sizes: list[int] = []

        async def written_all() -> bool:
            sizes.append(on_disk())
            return len(sizes) > 5 and sizes[-1] == sizes[-5] > 0

        await wait_until(written_all, timeout=20, interval=0.1)
        assert on_disk() <= 2 * EXEC_ERROR_OUTPUT_BYTES + 4096
        nursery.cancel_scope.cancel()
    await contd.delete(ns, "c1")
    assert list(outputs.iterdir()) == []


async def test_exec(contd: ContainerClient, daemon: Daemon, ns: str, netns_name: str, rootfs: Path) -> None:
    await contd.run(ns, container(rootfs, netns_name, entrypoint=STEADY))
    own = sorted(await daemon.containerd.pids(ns, "c1"))
    assert len(own) == 2  # sh and its sleep
    outputs = daemon.config.root / "exec" / ns
    await contd.exec_process(ns, "c1", "sh", "-c", "test -d /tmp")
    with pytest.raises(CallError, match=r"non-zero exit code: 3; output: boom$"):
        await contd.exec_process(ns, "c1", "sh", "-c", "echo boom; exit 3")
    started = trio.current_time()
    with pytest.raises(CallError, match=r"timed out after 500ms; output: waiting$"):
        await contd.exec_process(ns, "c1", "sh", "-c", "echo waiting; exec sleep 30", timeout=0.5)
    assert trio.current_time() - started < 5
    # The timed-out process was killed and every exec process removed: the
    # task's processes are the container's own again, and no output file is left.
    assert sorted(await daemon.containerd.pids(ns, "c1")) == own
    assert list(outputs.iterdir()) == []
    with pytest.raises(CallError, match="exec needs a command"):
        await contd.exec_process(ns, "c1")
    for timeout in (0, -1):
        with pytest.raises(CallError, match="exec timeout must be positive"):
            await contd.exec_process(ns, "c1", "true", timeout=timeout)
    with pytest.raises(CallError, match=f"^container nosuch not found in namespace {ns}$"):
        await contd.exec_process(ns, "nosuch", "true")
    # A container whose task has stopped.
    await contd.signal_delete(ns, "c1")

    async def stopped() -> bool:
        task = (await contd.inspect(ns, "c1")).task
        return task is not None and task.status == "stopped"

    await wait_until(stopped)
    with pytest.raises(CallError, match=f"^container c1 in namespace {ns} is not running$"):
        await contd.exec_process(ns, "c1", "true")
    assert list(outputs.iterdir()) == []
    await contd.delete(ns, "c1")


async def test_logs_gives_the_last_100_lines(
    contd: ContainerClient, ns: str, netns_name: str, rootfs: Path
) -> None:
    script = f"sh -c 'i=1; while [ $i -le 150 ]; do echo line $i; i=$((i+1)); done; echo END; {UNTIL_TERM}'"
    await contd.run(ns, container(rootfs, netns_name, entrypoint=script))
    text = await output_of(contd, ns, "c1")
    lines = text.splitlines()
    assert len(lines) == 100
    assert lines[0] == "line 52" and lines[-2] == "line 150" and lines[-1] == "END"
    await contd.delete(ns, "c1")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rootfs": ""}, "rootfs"),
        ({"rootfs": "/nonexistent/rootfs"}, "is not an existing directory"),
        ({"rootfs": "/etc/hostname"}, "is not an existing directory"),
        ({"name": "bad name"}, "container name 'bad name' is not a valid identifier"),
        ({"name": "../escape"}, "is not a valid identifier"),
        ({"network": NetworkInfo("")}, "network namespace"),
        ({"network": NetworkInfo("../etc")}, "network namespace"),
        ({"network": NetworkInfo("nosuch-netns")}, "does not exist"),
        ({"mounts": [MountInfo("/nonexistent/src", "/mnt")]}, "does not exist"),
        ({"mounts": [MountInfo("/tmp", "relative")]}, "absolute"),
        ({"entrypoint": ""}, "entrypoint"),
        ({"entrypoint": "sh -c 'unclosed"}, "No closing quotation"),
        ({"cpu": (os.cpu_count() or 1) + 1}, "CPU"),
        ({"env": ["NOEQUALS"]}, "KEY=VALUE"),
    ],
)
async def test_validation_errors_create_nothing(
    contd: ContainerClient,
    ns: str,
    netns_name: str,
    rootfs: Path,
    containerd: services.ContainerdService,
    change: dict[str, Any],
    message: str,
) -> None:
    bad = dataclasses.replace(container(rootfs, netns_name), **change)
    with pytest.raises(CallError, match=message):
        await contd.run(ns, bad)
    assert ns not in await contd.list_ns()
    assert containers_left(containerd, ns) == []


async def test_bad_namespace_and_existing_name(
    contd: ContainerClient, ns: str, netns_name: str, rootfs: Path
) -> None:
    with pytest.raises(CallError, match="namespace 'a/b' is not a valid identifier"):
        await contd.run("a/b", container(rootfs, netns_name))
    with pytest.raises(CallError, match="namespace is required"):
        await contd.list_containers("")
    await contd.run(ns, container(rootfs, netns_name))
    with pytest.raises(CallError, match=f"^container c1 already exists in namespace {ns}$"):
        await contd.run(ns, container(rootfs, netns_name))
    assert (await contd.inspect(ns, "c1")).task.status == "running"  # type: ignore[union-attr]
    await contd.delete(ns, "c1")


async def test_50_concurrent_runs_then_deletes(
    contd: ContainerClient, ns: str, netns_name: str, rootfs: Path, containerd: services.ContainerdService
) -> None:
    names = [f"c{i}" for i in range(50)]
    async with trio.open_nursery() as nursery:
        for name in names:
            nursery.start_soon(contd.run, ns, container(rootfs, netns_name, name=name))
    assert sorted(await contd.list_containers(ns)) == sorted(names)
    async with trio.open_nursery() as nursery:
        for name in names:
            nursery.start_soon(contd.delete, ns, name)
    assert containers_left(containerd, ns) == []


async def test_a_run_cancelled_midway_leaves_nothing(
    daemon: Daemon, ns: str, netns_name: str, rootfs: Path, containerd: services.ContainerdService
) -> None:
    # Cancel at many points of Run's life, all before its start-settle window
    # can have ended: whatever it had made is removed.
    assert daemon.config.start_settle == 0.25
    logs = daemon.config.root / "logs" / ns
    for i, delay in enumerate([0.0005, 0.002, 0.005, 0.01, 0.02, 0.04, 0.08, 0.12, 0.2]):
        with trio.move_on_after(delay) as scope:
            await daemon.module.run(ns, container(rootfs, netns_name, name=f"c{i}"))
        assert scope.cancelled_caught, f"Run finished within {delay} s"
        assert containers_left(containerd, ns) == []
        assert services.ctr(containerd.address, "tasks", "list", "-q", namespace=ns).split() == []
        assert not (logs / f"c{i}.log").exists()


PROPAGATIONS = st.sampled_from(["", "private", "rprivate", "shared", "rslave"])
# Entrypoints written three ways, each leaving on SIGTERM (so Delete does not
# wait out the shutdown timeout).
ENTRYPOINTS = st.sampled_from(
    [COOPERATIVE, STEADY, """/bin/sh -c "trap 'exit 0' TERM; sleep 1000 & wait\""""]
)


async def test_inspect_gives_back_what_run_was_given(
    contd: ContainerClient, ns: str, netns_name: str, rootfs: Path, tmp_path: Path
) -> None:
    """Hypothesis drives the examples from a worker thread; each example's
    round trip runs on this test's event loop, against one daemon."""
    token = trio.lowlevel.current_trio_token()

    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        env=st.lists(st.from_regex(r"[A-Z]{1,6}=[a-z0-9 ]{0,6}", fullmatch=True), max_size=3),
        working_dir=st.sampled_from(["", "/", "/tmp", "/etc"]),
        mount_count=st.integers(0, 2),
        cpu=st.integers(0, os.cpu_count() or 1),
        memory=st.sampled_from([0, 32 << 20, 300 << 20]),
        elevated=st.booleans(),
        propagation=PROPAGATIONS,
        shutdown_ms=st.sampled_from([0, 500, 5000]),
        entrypoint=ENTRYPOINTS,
    )
    def example(
        env: list[str],
        working_dir: str,
        mount_count: int,
        cpu: int,
        memory: int,
        elevated: bool,
        propagation: str,
        shutdown_ms: int,
        entrypoint: str,
    ) -> None:
        sources = [tmp_path / f"m{i}" for i in range(mount_count)]
        for source in sources:
            source.mkdir(exist_ok=True)
        asked = container(
            rootfs,
            netns_name,
            name=f"p{uuid.uuid4().hex[:8]}",
            env=env,
            working_dir=working_dir,
            mounts=[MountInfo(str(s), f"/mnt/{s.name}") for s in sources],
            cpu=cpu,
            memory=memory,
            elevated=elevated,
            rootfs_propagation=propagation,
            shutdown_timeout_ns=shutdown_ms * 10**6,
            entrypoint=entrypoint,
        )
        # The documented defaults, stated here rather than asked of the code under test.
        expected = dataclasses.replace(
            asked,
            env=env if any(e.startswith("PATH=") for e in env) else [f"PATH={DEFAULT_PATH}", *env],
            mounts=[MountInfo(str(s), f"/mnt/{s.name}", "bind", ["rbind"]) for s in sources],
            cpu=cpu or 1,
            memory=memory or 268435456,
            shutdown_timeout_ns=(shutdown_ms or 3000) * 10**6,
            logs=[],
            stats=[],
        )
        got = trio.from_thread.run(round_trip, asked, trio_token=token)
        assert dataclasses.replace(got, task=None, created_at=expected.created_at) == expected
        assert got.created_at.seconds > 0
        assert got.task is not None and got.task.status == "running"

    async def round_trip(asked: Container) -> Container:
        await contd.run(ns, asked)
        got = await contd.inspect(ns, asked.name)
        await contd.delete(ns, asked.name)
        return got

    await trio.to_thread.run_sync(example)


GOLDEN = Path(__file__).resolve().parent.parent / "data" / "zbus-golden" / "go-container-v1.0.1.json"


async def test_go_shaped_payloads(
    daemon: Daemon, broker: str, ns: str, netns_name: str, rootfs: Path, tmp_path: Path
) -> None:
    """Drive the module with the bytes Go stubs send: Go field names, ints
    as int64/uint64, durations in ns, times as the timestamp extension. Only
    the namespace ("ns1" in the capture) and the Container's host paths are
    replaced, re-encoded the way Go encodes them."""
    r = redis.Redis(**parse_broker_url(broker).redis_kwargs())
    vectors = {v["name"]: v for v in json.loads(GOLDEN.read_text())["vectors"]}
    queue = "container.container@0.0.1"

    def go_request(vector_name: str, *, patch: dict[str, Any] | None = None) -> tuple[str, bytes]:
        request = msgpack.unpackb(bytes.fromhex(vectors[vector_name]["hex"]), raw=False, timestamp=0)
        if request["Inputs"]:
            assert msgpack.unpackb(request["Inputs"][0]) == "ns1"
            request["Inputs"][0] = go_pack(ns)
        if patch is not None:
            value = msgpack.unpackb(request["Inputs"][1], raw=False, timestamp=0)
            value.update(patch)
            request["Inputs"][1] = go_pack(value)
        return request["ReplyTo"], go_pack(request)

    async def call(reply_to: str, payload: bytes) -> codec.Response:
        r.delete(reply_to)
        r.rpush(queue, payload)
        got = None

        def answered() -> bool:
            nonlocal got
            got = r.lpop(reply_to)
            return got is not None

        await wait_until(answered, timeout=30)
        assert got is not None
        return codec.decode_response(got)

    data = tmp_path / "data"
    data.mkdir()
    patch = {
        "RootFS": str(rootfs),
        "Network": {"Namespace": netns_name},
        "Mounts": [{"Source": str(data), "Target": "/mnt"}],
        "Logs": None,
        "Stats": None,
        "Entrypoint": STEADY,
    }
    answer = await call(*go_request('request Run("ns1", Container{every field set})', patch=patch))
    assert answer.error is None and answer.output.error is None
    assert codec.unpack(answer.output.data or b"") == "c1"
    answer = await call(*go_request('request Inspect("ns1", ContainerID("c1"))'))
    inspected = codec.unpack(answer.output.data or b"")
    go_keys = set(codec.unpack(bytes.fromhex(vectors["a Go value: Container{} (zero value)"]["hex"])))
    assert go_keys <= set(inspected)  # every Go field, plus the extra task facts
    assert inspected["Name"] == "c1" and inspected["Elevated"] is True
    assert inspected["ShutdownTimeout"] == 5 * 10**9 and inspected["RootFsPropagation"] == "rshared"
    assert inspected["Mounts"] == [
        {"Source": str(data), "Target": "/mnt", "Type": "bind", "Options": ["rbind"]}
    ]
    assert isinstance(inspected["CreatedAt"], msgpack.Timestamp) and inspected["Status"] == "running"
    answer = await call(*go_request('request Exec("ns1", "c1", 5s, "/bin/sh", "-c", "exit 3")'))
    assert answer.error is None
    assert answer.output.error is not None and "non-zero exit code: 3" in answer.output.error
    answer = await call(*go_request("request ListNS()"))
    assert ns in codec.unpack(answer.output.data or b"")
    await daemon.module.delete(ns, "c1")


async def test_runs_in_their_settle_window_leave_the_one_worker_to_other_requests(
    daemon_config: Config, broker: str, ns: str, netns_name: str, rootfs: Path
) -> None:
    # One worker, a long settle window: each Run only waits in it, with its
    # worker slot lent back, so the other Runs and a List are served meanwhile.
    config = dataclasses.replace(daemon_config, workers=1, start_settle=8.0)
    async with open_daemon(config) as running, open_client(broker) as bus:
        contd = ContainerClient(bus, timeout=60)
        answered: list[str] = []

        async def run(name: str) -> None:
            answered.append(await contd.run(ns, container(rootfs, netns_name, name=name)))

        async with trio.open_nursery() as nursery:
            for name in ("c1", "c2", "c3"):
                nursery.start_soon(run, name)
            await wait_until(lambda: running.server.lending == 3, timeout=60)
            with trio.fail_after(10):
                # Every Run has made its container and waits; none has answered.
                assert await contd.list_containers(ns) == ["c1", "c2", "c3"]
            assert answered == [] and running.server.in_flight == 3
        assert sorted(answered) == ["c1", "c2", "c3"]
        assert running.server.in_flight == 0 and running.server.lending == 0
        for name in ("c1", "c2", "c3"):
            assert (await contd.inspect(ns, name)).task is not None
            await contd.delete(ns, name)


async def test_a_pending_container_left_in_the_way_is_replaced_by_the_next_run(
    daemon: Daemon, contd: ContainerClient, ns: str, netns_name: str, rootfs: Path
) -> None:
    """What a Run gave up on can land in containerd later (containerd frozen
    past the deadline finishes the create); until its removal comes, it must
    not make the name unusable. A container that is not pending still is
    AlreadyExists."""
    left = {"contd.managed": "true", "contd.pending": "true"}
    await daemon.ops.containerd.create_container(ns, "c1", {"ociVersion": "1.0.2"}, labels=left)
    assert await contd.run(ns, container(rootfs, netns_name)) == "c1"
    inspected = await contd.inspect(ns, "c1")
    assert inspected.task is not None and inspected.task.status == "running"
    with pytest.raises(CallError, match="already exists"):
        await contd.run(ns, container(rootfs, netns_name))
    await contd.delete(ns, "c1")
