"""The operator surface: ``contd`` as zinit runs it, the REPL and ``contdctl``."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest
import redis
import trio

from contd_trio import ctl
from contd_trio.app import Daemon, open_daemon
from contd_trio.config import Config
from contd_trio.module.client import ContainerClient
from contd_trio.module.types import Container, NetworkInfo
from contd_trio.zbus.client import open_client
from contd_trio.zbus.errors import CallError
from contd_trio.zbus.transport import parse_broker_url
from tests.helpers import STEADY, UNTIL_TERM, wait_until
from tests.integration.faultkit import run_in_flight
from tools import services

BIN = Path(sys.executable).parent
TICKING = "sh -c 'trap \"exit 0\" TERM; i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2 & wait; done'"
LOG_LINE = re.compile(r"^(DEBUG|INFO|WARNING|ERROR)\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \S.*$")


def start_contd(args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        return subprocess.Popen([str(BIN / "contd"), *args], stderr=log)


async def wait_exit(process: subprocess.Popen[bytes], timeout: float = 30) -> int:
    with trio.fail_after(timeout):
        while process.poll() is None:
            await trio.sleep(0.05)
    return process.returncode


async def test_the_seed_command_line_serves_and_stops_on_sigterm(
    broker: str,
    containerd: services.ContainerdService,
    tmp_path: Path,
    ns: str,
    netns_name: str,
    rootfs: Path,
) -> None:
    log_path = tmp_path / "contd.log"
    # The zinit unit's exact flags (single dash), pointed at the test services.
    daemon = start_contd(
        ["-broker", broker, "-root", str(tmp_path / "root"), "-containerd", str(containerd.address)], log_path
    )
    try:
        async with open_client(broker) as bus:
            contd = ContainerClient(bus, timeout=60)
            await bus.status("container", timeout=30)
            await contd.run(
                ns,
                Container(name="c1", rootfs=str(rootfs), network=NetworkInfo(netns_name), entrypoint=STEADY),
            )
            assert (await contd.inspect(ns, "c1")).task.status == "running"  # type: ignore[union-attr]
            with pytest.raises(CallError, match="not found"):
                await contd.inspect(ns, "nosuch")
            await contd.delete(ns, "c1")
        daemon.send_signal(signal.SIGTERM)
        assert await wait_exit(daemon) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
    lines = log_path.read_text().splitlines()
    assert all(LOG_LINE.match(line) for line in lines), [line for line in lines if not LOG_LINE.match(line)]
    assert "Traceback" not in log_path.read_text()  # expected errors carry no traceback
    run_line = next(line for line in lines if "request done" in line and "Run()" in line)
    assert f"ns={ns} id=c1" in run_line and "request=" in run_line and "duration=" in run_line
    failed = next(line for line in lines if "request failed" in line)
    assert "error=" in failed and "not found" in failed
    assert any("stopping signal=SIGTERM" in line for line in lines)


async def test_sigterm_during_a_slow_run(
    broker: str,
    containerd: services.ContainerdService,
    tmp_path: Path,
    ns: str,
    netns_name: str,
    rootfs: Path,
) -> None:
    common = [
        "-broker",
        broker,
        "-root",
        str(tmp_path / "root"),
        "-containerd",
        str(containerd.address),
        "-start-settle",
        "2s",
    ]
    spec = Container(name="slow", rootfs=str(rootfs), network=NetworkInfo(netns_name), entrypoint=STEADY)
    async with open_client(broker) as bus:
        contd = ContainerClient(bus, timeout=60)
        # With time to finish, the Run in flight completes, and the daemon exits 0.
        daemon = start_contd(common, tmp_path / "a.log")
        await bus.status("container", timeout=30)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(contd.run, ns, spec)
            await wait_until(lambda: run_in_flight(bus))
            daemon.send_signal(signal.SIGTERM)
        assert await wait_exit(daemon) == 0
        # Containers keep running without the daemon.
        assert services.ctr(containerd.address, "tasks", "list", "-q", namespace=ns).split() == ["slow"]
        # Without time enough (its 2 s settle window against 500 ms of grace),
        # the Run is cancelled, rolled back and answered; exit 0 still.
        daemon = start_contd([*common, "-shutdown-grace", "500ms"], tmp_path / "b.log")
        await bus.status("container", timeout=30)
        await contd.delete(ns, "slow")
        spec.name = "slow2"

        async def stop_during_the_run() -> None:
            await wait_until(lambda: run_in_flight(bus))
            daemon.send_signal(signal.SIGTERM)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(stop_during_the_run)
            with pytest.raises(CallError, match="cancelled: the daemon is shutting down"):
                await contd.run(ns, spec)
        assert await wait_exit(daemon) == 0
    assert services.ctr(containerd.address, "containers", "list", "-q", namespace=ns).split() == []
    assert not (tmp_path / "root" / "logs" / ns / "slow2.log").exists()


async def test_a_second_signal_cuts_the_grace_short(
    broker: str,
    containerd: services.ContainerdService,
    tmp_path: Path,
    ns: str,
    netns_name: str,
    rootfs: Path,
) -> None:
    log_path = tmp_path / "contd.log"
    root = tmp_path / "root"
    daemon = start_contd(
        [
            *("-broker", broker, "-root", str(root), "-containerd", str(containerd.address)),
            *("-start-settle", "30s", "-shutdown-grace", "60s"),
        ],
        log_path,
    )
    spec = Container(name="slow", rootfs=str(rootfs), network=NetworkInfo(netns_name), entrypoint=STEADY)
    try:
        async with open_client(broker) as bus, trio.open_nursery() as nursery:
            await bus.status("container", timeout=30)
            # Its answer may never come: the second signal stops everything at once.
            nursery.start_soon(ContainerClient(bus, timeout=60).run, ns, spec)
            await wait_until(lambda: run_in_flight(bus))
            daemon.send_signal(signal.SIGTERM)
            await wait_until(lambda: "stopping signal=SIGTERM" in log_path.read_text())
            daemon.send_signal(signal.SIGTERM)
            # Well before the Run's 30 s settle window (and the 60 s of grace) would end.
            assert await wait_exit(daemon, timeout=15) == 0
            nursery.cancel_scope.cancel()
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert "stopping now signal=SIGTERM" in log_path.read_text()
    # Cut short, the Run was still rolled back.
    assert services.ctr(containerd.address, "containers", "list", "-q", namespace=ns).split() == []
    assert not (root / "logs" / ns / "slow.log").exists()


async def test_a_run_past_the_request_timeout_is_answered_and_rolled_back(
    daemon_config: Config,
    broker: str,
    containerd: services.ContainerdService,
    ns: str,
    netns_name: str,
    rootfs: Path,
) -> None:
    config = dataclasses.replace(daemon_config, request_timeout=1.0, start_settle=5.0)
    spec = Container(name="slow", rootfs=str(rootfs), network=NetworkInfo(netns_name), entrypoint=STEADY)
    async with open_daemon(config), open_client(broker) as bus:
        contd = ContainerClient(bus, timeout=30)
        with pytest.raises(CallError, match=r"^\[container@0\.0\.1\]\.Run\(\) timed out after 1s$"):
            await contd.run(ns, spec)
        assert services.ctr(containerd.address, "containers", "list", "-q", namespace=ns).split() == []
        assert not (config.root / "logs" / ns / "slow.log").exists()
        assert await contd.list_containers(ns) == []  # and it serves on


async def test_start_up_before_redis_and_containerd_exist(
    tmp_path: Path, ns: str, netns_name: str, rootfs: Path
) -> None:
    run_dir = tmp_path / "late"
    broker_sock = run_dir / "redis.sock"
    containerd_sock = run_dir / "containerd" / "containerd.sock"
    log_path = tmp_path / "contd.log"
    daemon = start_contd(
        [
            "-broker",
            f"unix://{broker_sock}",
            "-root",
            str(tmp_path / "root"),
            "-containerd",
            str(containerd_sock),
        ],
        log_path,
    )
    redis_service = containerd = None
    try:
        await wait_until(lambda: "waiting for redis" in log_path.read_text())
        redis_service = services.start_redis(run_dir)
        await wait_until(lambda: "waiting for containerd" in log_path.read_text())
        containerd = await trio.to_thread.run_sync(services.start_containerd, run_dir)
        async with open_client(redis_service.url) as bus:
            status = await bus.status("container", timeout=30)
            assert [str(o) for o in status.objects] == ["container@0.0.1"]
            contd = ContainerClient(bus, timeout=60)
            await contd.run(
                ns,
                Container(name="c1", rootfs=str(rootfs), network=NetworkInfo(netns_name), entrypoint=STEADY),
            )
            await contd.delete(ns, "c1")
        daemon.send_signal(signal.SIGTERM)
        assert await wait_exit(daemon) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
        if containerd is not None:
            services.reap_containerd(containerd.address)
            containerd.stop()
        if redis_service is not None:
            redis_service.stop()


async def test_a_signal_while_waiting_for_services_stops_at_once(tmp_path: Path) -> None:
    log_path = tmp_path / "contd.log"
    daemon = start_contd(
        ["-broker", f"unix://{tmp_path}/none.sock", "-root", str(tmp_path / "root")], log_path
    )
    await wait_until(lambda: "waiting for redis" in log_path.read_text())
    daemon.send_signal(signal.SIGTERM)
    assert await wait_exit(daemon, timeout=10) == 0


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [(["-nope"], "unrecognized arguments: -nope"), (["-timeout", "soon"], "invalid duration 'soon'")],
)
async def test_bad_flags_exit_2_with_one_line(argv: list[str], complaint: str) -> None:
    result = await trio.run_process(
        [str(BIN / "contd"), *argv], capture_stdout=True, capture_stderr=True, check=False
    )
    assert result.returncode == 2
    assert result.stderr.decode().count("\n") == 1 and complaint in result.stderr.decode()


async def test_version_and_help() -> None:
    result = await trio.run_process([str(BIN / "contd"), "--version"], capture_stdout=True)
    assert result.stdout.decode().startswith("contd ")
    result = await trio.run_process([str(BIN / "contd"), "--help"], capture_stdout=True)
    for flag in (
        "-broker",
        "-root",
        "-containerd",
        "-workers",
        "-timeout",
        "-corex",
        "-restart-delay",
        "-restart-limit",
        "-restart-window",
        "-start-settle",
        "-log-max-size",
        "-log-level",
        "-shutdown-grace",
    ):
        assert flag in result.stdout.decode()


def test_the_zinit_unit_runs_the_seed_command_line() -> None:
    from contd_trio import cli

    unit = (Path(__file__).resolve().parents[2] / "etc" / "zinit" / "contd.yaml").read_text()
    exec_line = next(line for line in unit.splitlines() if line.startswith("exec:"))
    assert exec_line == "exec: contd -broker unix:///var/run/redis.sock -root /var/cache/modules/containerd"
    config = cli.parse_args(exec_line.split()[2:])
    assert str(config.root) == "/var/cache/modules/containerd"
    assert "  - containerd" in unit and "  - boot" in unit


# -- the REPL ------------------------------------------------------------------------------


async def test_the_repl_driven_through_a_pipe(
    daemon: Daemon, broker: str, ns: str, netns_name: str, rootfs: Path
) -> None:
    script = f"""
net = NetworkInfo({netns_name!r})
c = Container(name="r1", rootfs={str(rootfs)!r}, network=net, entrypoint={STEADY!r})
print(await contd.run({ns!r}, c))
info = await contd.inspect({ns!r}, "r1")
print(info.task.status, info.entrypoint == c.entrypoint)
print(await contd.list_containers({ns!r}))
print([o for o in (await bus.status("container")).objects])
await contd.inspect({ns!r}, "nosuch")
await contd.delete({ns!r}, "r1")
print("done")
"""
    result = await trio.run_process(
        [sys.executable, "-m", "contd_trio.repl", "-broker", broker],
        stdin=script.encode(),
        capture_stdout=True,
        capture_stderr=True,
    )
    out, err = result.stdout.decode(), result.stderr.decode()
    assert out.splitlines() == [
        "r1",
        "running True",
        "['r1']",
        "[ObjectID(name='container', version='0.0.1')]",
        "done",
    ]
    assert f"CallError: container nosuch not found in namespace {ns}" in err
    assert "Traceback" not in err


async def test_ctrl_c_in_the_repl_cancels_the_running_command(daemon: Daemon, broker: str) -> None:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "contd_trio.repl", "-broker", broker],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None and process.stderr is not None
    out = Collected(process.stdout)
    err = Collected(process.stderr)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(out.read)
            nursery.start_soon(err.read)
            await process.stdin.send_all(b'print("sleeping", flush=True); await trio.sleep(60)\n')
            await wait_until(lambda: "sleeping" in out.text)
            process.send_signal(signal.SIGINT)
            await wait_until(lambda: "cancelled" in err.text)
            # The console carries on with the next line.
            await process.stdin.send_all(b'print("after", flush=True)\n')
            await process.stdin.aclose()
            with trio.fail_after(15):
                assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
    assert out.text.splitlines() == ["sleeping", "after"]
    assert err.text.strip() == "cancelled"


class Collected:
    """What a process writes on one of its pipes."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.chunks: list[bytes] = []

    async def read(self) -> None:
        async with self.stream:
            while chunk := await self.stream.receive_some():
                self.chunks.append(bytes(chunk))

    @property
    def text(self) -> str:
        return b"".join(self.chunks).decode()


# -- contdctl ------------------------------------------------------------------------------


def ctl_command(broker: str | None, *args: str) -> list[str]:
    """contdctl's command line; with no ``broker``, it comes from $CONTD_BROKER."""
    return [sys.executable, "-m", "contd_trio.ctl", *(["-broker", broker] if broker else []), *args]


async def contdctl(
    broker: str | None, *args: str, check: bool = True, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    result = await trio.run_process(
        ctl_command(broker, *args),
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        env={**os.environ, **(env or {})},
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"contdctl {' '.join(args)} exited {result.returncode}: {result.stderr.decode()}"
        )
    return result.returncode, result.stdout.decode(), result.stderr.decode()


EVENTS_CHANNEL = "container.container@0.0.1.Events"


class Follower:
    """A contdctl command that runs until stopped, its output collected."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.chunks: list[bytes] = []
        self.done = trio.Event()

    @classmethod
    async def start(cls, broker: str | None, *args: str, env: dict[str, str] | None = None) -> Follower:
        process = await trio.lowlevel.open_process(
            ctl_command(broker, *args), stdout=subprocess.PIPE, env={**os.environ, **(env or {})}
        )
        follower = cls(process)
        trio.lowlevel.spawn_system_task(follower._read)
        return follower

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async with self.process.stdout:
            while chunk := await self.process.stdout.receive_some():
                self.chunks.append(bytes(chunk))
        self.done.set()

    @property
    def output(self) -> str:
        return b"".join(self.chunks).decode()

    async def wait(self, timeout: float = 15) -> int:
        with trio.fail_after(timeout):
            code = await self.process.wait()
            await self.done.wait()
        return code

    async def interrupt(self) -> str:
        """Ctrl-C: it leaves with exit code 130; returns what it printed."""
        self.process.send_signal(signal.SIGINT)
        assert await self.wait() == 130
        return self.output


async def contdctl_json(broker: str, *args: str) -> Any:
    _, out, _ = await contdctl(broker, args[0], "--json", *args[1:])
    return json.loads(out)


async def concurrently(*calls: Awaitable[Any]) -> list[Any]:
    """The results of ``calls`` run at once, in order (each contdctl is a
    Python start-up: one after the other, they made this file slow)."""
    results: list[Any] = [None] * len(calls)

    async def one(index: int, call: Awaitable[Any]) -> None:
        results[index] = await call

    async with trio.open_nursery() as nursery:
        for index, call in enumerate(calls):
            nursery.start_soon(one, index, call)
    return results


async def test_contdctl_every_command_in_both_modes(
    daemon: Daemon, broker: str, ns: str, netns_name: str, rootfs: Path, tmp_path: Path
) -> None:
    script = f"sh -c 'echo hello from c1; {UNTIL_TERM}'"
    share = tmp_path / "share"  # not tmp_path: it holds the daemon's root, which no container may see
    share.mkdir()
    from_flags = [
        *("--name", "c1", "--rootfs", str(rootfs), "--netns", netns_name, "--entrypoint", script),
        *("--env", "A=1", "--mount", f"{share}:/mnt", "--workdir", "/tmp", "--cpu", "1"),
        *("--memory", "128M", "--shutdown-timeout", "5s"),
    ]
    json_spec = tmp_path / "c2.json"
    json_spec.write_text(
        json.dumps(
            {
                "Name": "c2",
                "RootFS": str(rootfs),
                "Network": {"Namespace": netns_name},
                "Entrypoint": TICKING,
                "Memory": "64M",
                "ShutdownTimeout": "2s",
            }
        )
    )
    toml_spec = tmp_path / "c3.toml"
    toml_spec.write_text(
        f'Name = "c3"\nRootFS = "{rootfs}"\nEntrypoint = {json.dumps(STEADY)}\n'
        f'[Network]\nNamespace = "{netns_name}"\n'
    )
    (_, out, _), run_json, _ = await concurrently(
        contdctl(broker, "run", "--ns", ns, *from_flags),
        contdctl_json(broker, "run", "--ns", ns, "--file", str(json_spec)),
        contdctl(broker, "run", "--ns", ns, "--file", str(toml_spec)),
    )
    assert out.strip() == "c1" and run_json == {"ID": "c2"}

    (
        (_, inspect_c1, _),
        inspect_c2,
        (_, ls_out, _),
        ls_json,
        (_, ls_json_first, _),
        (_, ns_out, _),
        ns_json,
        (_, exec_out, _),
        exec_json,
        (exec_code, _, exec_err),
        (_, logs_out, _),
        (_, logs_json_lines, _),
        (_, status_out, _),
        status_json,
    ) = await concurrently(
        contdctl(broker, "inspect", ns, "c1"),
        contdctl_json(broker, "inspect", ns, "c2"),
        contdctl(broker, "ls", ns),
        contdctl_json(broker, "ls", ns),
        contdctl(broker, "--json", "ls", ns),  # --json before the command too
        contdctl(None, "ns", env={"CONTD_BROKER": broker}),  # the broker from the environment
        contdctl_json(broker, "ns"),
        contdctl(broker, "exec", ns, "c1", "--", "sh", "-c", "test $A = 1"),
        contdctl_json(broker, "exec", ns, "c1", "--", "true"),
        contdctl(broker, "exec", ns, "c1", "--timeout", "5s", "--", "sh", "-c", "exit 4", check=False),
        contdctl(broker, "logs", ns, "c1"),
        contdctl(broker, "--json", "logs", ns, "c1"),
        contdctl(broker, "status"),
        contdctl_json(broker, "status"),
    )
    assert re.search(r"^Status\s+running$", inspect_c1, re.M)
    assert re.search(r"^Memory\s+134217728$", inspect_c1, re.M)
    assert re.search(r"^ShutdownTimeout\s+5s$", inspect_c1, re.M)
    assert re.search(r"^Mounts\s+\S+:/mnt$", inspect_c1, re.M)
    assert inspect_c2["Memory"] == 64 << 20 and inspect_c2["ShutdownTimeout"] == 2 * 10**9
    assert inspect_c2["Status"] == "running"
    assert ls_out.splitlines()[0].split() == ["ID", "STATUS", "PID", "RESTARTS", "ENTRYPOINT"]
    assert [line.split()[:2] for line in ls_out.splitlines()[1:]] == [
        ["c1", "running"],
        ["c2", "running"],
        ["c3", "running"],
    ]
    assert ls_json == json.loads(ls_json_first) == ["c1", "c2", "c3"]
    assert ns in ns_out.splitlines() and ns in ns_json
    logs_json = [json.loads(line) for line in logs_json_lines.splitlines()]
    assert exec_out == "" and exec_json["ExitCode"] == 0
    assert exec_code == 4 and exec_err == ""  # the process's own code; it wrote nothing
    assert logs_out == "hello from c1\n"
    assert [{**line, "Time": "-"} for line in logs_json] == [
        {"Time": "-", "Stream": "stdout", "Line": "hello from c1"}
    ]
    assert status_out.startswith("module container: objects container@0.0.1; workers")
    assert "WORKER  STATE" in status_out
    assert status_json["Objects"] == [{"Name": "container", "Version": "0.0.1"}]
    assert len(status_json["Workers"]) == 64

    # events and logs --follow run until stopped: start them (seen subscribed), act, then read them.
    bus = redis.Redis(**parse_broker_url(broker).redis_kwargs())
    from_env = {"CONTD_BROKER": broker}
    subscribers = bus.pubsub_numsub(EVENTS_CHANNEL)[0][1]
    followers: dict[str, Follower] = {}
    try:
        followers["events"] = await Follower.start(broker, "events", "--ns", ns)
        followers["events-json"] = await Follower.start(broker, "--json", "events", "--ns", ns)
        followers["logs"] = await Follower.start(None, "logs", ns, "c2", "--follow", env=from_env)
        await wait_until(lambda: bus.pubsub_numsub(EVENTS_CHANNEL)[0][1] == subscribers + 2)
        # logs --follow prints what c2 writes from now on.
        written = (daemon.config.root / "logs" / ns / "c2.log").read_text().splitlines()
        later = f"tick {int(written[-1].split()[-1]) + 2}\n"
        await wait_until(lambda: later in followers["logs"].output)
        _, signalled = await concurrently(
            contdctl(broker, "signal-delete", ns, "c3"), contdctl_json(broker, "signal-delete", ns, "c2")
        )
        assert signalled == {"Signalled": "c2"}
        await wait_until(lambda: all(f"{ns}/{c}  exited" in followers["events"].output for c in ("c2", "c3")))
        (_, out, _), deleted = await concurrently(
            contdctl(broker, "delete", ns, "c2"), contdctl_json(broker, "delete", ns, "c3")
        )
        assert out.strip() == f"deleted {ns}/c2" and deleted == {"Deleted": "c3"}
        # logs --follow ends by itself once its container is deleted.
        assert await followers["logs"].wait() == 0
        follow_out = followers["logs"].output
        assert follow_out.startswith("tick ") and later in follow_out
        for name in ("events", "events-json"):
            await wait_until(lambda name=name: followers[name].output.count("deleted") == 2)
        events_out = await followers["events"].interrupt()
        kinds = [line.split()[1:3] for line in events_out.splitlines()]
        assert [f"{ns}/c3", "exited"] in kinds and [f"{ns}/c2", "deleted"] in kinds
        events = [json.loads(line) for line in (await followers["events-json"].interrupt()).splitlines()]
        assert {"Namespace": ns, "ID": "c3", "Kind": "deleted"}.items() <= next(
            e for e in events if e["ID"] == "c3" and e["Kind"] == "deleted"
        ).items()
    finally:
        for follower in followers.values():
            if follower.process.returncode is None:
                follower.process.kill()

    (code, _, err), (usage_code, _, usage_err), _ = await concurrently(
        contdctl(broker, "delete", ns, "c2", check=False),
        contdctl(broker, "run", "--ns", ns, "--name", "x", check=False),
        contdctl(broker, "delete", ns, "c1"),
    )
    assert code == 1 and f"container c2 not found in namespace {ns}" in err
    assert usage_code == 2 and "needs --name and --rootfs" in usage_err


@pytest.mark.parametrize(
    ("flags", "complaint"),
    [
        ([], "run needs --name and --rootfs (or --file)"),
        (["--mount", "/tmp"], "--mount '/tmp': expecting SRC:DST"),
        (["--mount", ":/mnt"], "--mount ':/mnt': expecting SRC:DST"),
        (["--env", "NOEQUALS"], "--env 'NOEQUALS': expecting KEY=VALUE"),
        (["--memory", "256iB"], "invalid size '256iB': use bytes (268435456) or a unit (256M, 1G)"),
        (
            ["--shutdown-timeout", "soon"],
            "invalid duration 'soon': use seconds (300) or a Go duration (5m, 30s, 1m30s, 250ms)",
        ),
    ],
)
def test_contdctl_refuses_a_bad_run_command_line_with_exit_2(
    broker: str, flags: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # In this process (contdctl's main, as its entry point calls it): a process each is slow.
    complete = ["--name", "x", "--rootfs", "/tmp"] if flags else []
    assert ctl.main(["-broker", broker, "run", "--ns", "n", *complete, *flags]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"contdctl: {complaint}\n"
