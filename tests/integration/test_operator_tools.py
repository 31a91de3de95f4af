"""The operator tools of issue 13, on the real Redis and containerd:
ExecOutput, LogsFrom, LogsTail and Stats through zbus with the payloads Go
sends, and ``contdctl exec``, ``logs``, ``stats`` and the REPL's Ctrl-C as
a user drives them (a subprocess each, the REPL through a pty)."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import re
import select
import signal
import subprocess
import sys
import termios
import time
import uuid
from pathlib import Path
from typing import Any

import msgpack
import pytest
import redis
import trio

from contd_trio.app import Daemon, open_daemon
from contd_trio.config import Config
from contd_trio.module.client import ContainerClient
from contd_trio.module.types import Container, MountInfo, NetworkInfo
from contd_trio.zbus import codec
from contd_trio.zbus.client import open_client
from contd_trio.zbus.transport import parse_broker_url
from tests.helpers import STEADY, UNTIL_TERM, cgroup_value, go_pack, wait_until
from tests.integration.test_operator import Follower, contdctl, start_contd, wait_exit
from tools import services

QUEUE = "container.container@0.0.1"
#: Burns a little CPU in the container (an exec runs in its cgroup).
BURN = ["sh", "-c", "i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done"]


def container(rootfs: Path, netns: str, name: str = "c1", **fields: Any) -> Container:
    fields.setdefault("entrypoint", STEADY)
    return Container(name=name, rootfs=str(rootfs), network=NetworkInfo(netns), **fields)


class GoCaller:
    """Sends requests as a Go stub does: every value as Go's msgpack writes
    it (ints as int64, []byte as bin, times as the timestamp extension),
    and reads the answer off its own reply list."""

    def __init__(self, broker: str) -> None:
        self.redis = redis.Redis(**parse_broker_url(broker).redis_kwargs())

    async def call(self, method: str, *args: Any) -> codec.Response:
        reply_to = f"go.reply.{uuid.uuid4()}"
        request = {
            "ID": str(uuid.uuid4()),
            "Inputs": [go_pack(a) for a in args],
            "Object": {"Name": "container", "Version": "0.0.1"},
            "ReplyTo": reply_to,
            "Method": method,
        }
        self.redis.rpush(QUEUE, go_pack(request))
        got: Any = None

        def answered() -> bool:
            nonlocal got
            got = self.redis.lpop(reply_to)
            return got is not None

        await wait_until(answered, timeout=60)
        return codec.decode_response(got)

    async def result(self, method: str, *args: Any) -> Any:
        response = await self.call(method, *args)
        assert response.error is None and response.output.error is None, response
        return codec.unpack(response.output.data or b"\xc0")

    async def error(self, method: str, *args: Any) -> str:
        response = await self.call(method, *args)
        assert response.error is None and response.output.error is not None, response
        return response.output.error


async def test_the_new_methods_with_go_shaped_payloads(
    contd: ContainerClient, broker: str, ns: str, netns_name: str, rootfs: Path
) -> None:
    script = f"sh -c 'echo first; echo second >&2; echo third; {UNTIL_TERM}'"
    await contd.run(ns, container(rootfs, netns_name, entrypoint=script, memory=64 << 20))
    go = GoCaller(broker)
    five_seconds = 5 * 10**9

    # ExecOutput(ns, containerID string, timeout time.Duration, args ...string) (ExecOutput, error)
    done = await go.result("ExecOutput", ns, "c1", five_seconds, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert done == {
        "ExitCode": 3,
        "TimedOut": False,
        "Stdout": b"out\n",  # []byte: bin on the wire
        "Stderr": b"err\n",
        "StdoutTruncated": False,
        "StderrTruncated": False,
    }
    assert (await go.result("ExecOutput", ns, "c1", five_seconds, "true"))["ExitCode"] == 0
    missing = await go.result("ExecOutput", ns, "c1", five_seconds, "nosuch")
    assert missing["ExitCode"] == 127 and b"executable file not found" in missing["Stderr"]
    slow = await go.result("ExecOutput", ns, "c1", 300 * 10**6, "sh", "-c", "echo begun; exec sleep 30")
    assert (slow["ExitCode"], slow["TimedOut"], slow["Stdout"]) == (-1, True, b"begun\n")
    assert f"container nosuch not found in namespace {ns}" == await go.error(
        "ExecOutput", ns, "nosuch", five_seconds, "true"
    )

    # LogsTail(ns, containerID string, lines int, since time.Time) (LogChunk, error)
    async def everything() -> bool:
        chunk = await go.result("LogsTail", ns, "c1", -1, codec.GO_ZERO_TIME)
        return len(chunk["Lines"]) == 3

    await wait_until(everything)
    chunk = await go.result("LogsTail", ns, "c1", 2, codec.GO_ZERO_TIME)
    assert set(chunk) == {"Lines", "Cursor", "More", "Lost", "Reset"}
    assert sorted((line["Text"], line["Stream"]) for line in chunk["Lines"]) in (
        [("second", "stderr"), ("third", "stdout")],
        [("first", "stdout"), ("third", "stdout")],  # stdout and stderr are two pipes: either order
    )
    line = chunk["Lines"][-1]
    assert isinstance(line["Time"], msgpack.Timestamp) and line["Partial"] is False
    assert abs(line["Time"].to_unix() - time.time()) < 600  # when the shim read it
    assert (chunk["More"], chunk["Lost"], chunk["Reset"]) == (False, 0, False)
    later = msgpack.Timestamp.from_unix_nano(line["Time"].to_unix_nano() + 1)
    assert (await go.result("LogsTail", ns, "c1", -1, later))["Lines"] == []
    # Times past what a log can hold, or before 1970: nothing, and everything.
    assert (await go.result("LogsTail", ns, "c1", -1, msgpack.Timestamp(2**40, 0)))["Lines"] == []
    assert len((await go.result("LogsTail", ns, "c1", -1, msgpack.Timestamp(-(2**40), 0)))["Lines"]) == 3
    assert len((await go.result("LogsTail", ns, "c1", -(2**63), codec.GO_ZERO_TIME))["Lines"]) == 3
    assert len((await go.result("LogsFrom", ns, "c1", "", 2**63 - 1))["Lines"]) == 3

    # LogsFrom(ns, containerID string, cursor string, max int) (LogChunk, error)
    first = await go.result("LogsFrom", ns, "c1", "", 1)
    assert len(first["Lines"]) == 1 and first["More"] is True
    rest = await go.result("LogsFrom", ns, "c1", first["Cursor"], 0)
    assert len(rest["Lines"]) == 2 and rest["More"] is False
    assert rest["Cursor"] == chunk["Cursor"]  # the end, however it was reached
    assert (await go.result("LogsFrom", ns, "c1", rest["Cursor"], 0))["Lines"] == []
    assert "cursor 'nonsense'" in await go.error("LogsFrom", ns, "c1", "nonsense", 0)
    assert "max -1 is negative" in await go.error("LogsFrom", ns, "c1", "", -1)
    stream_id, end = rest["Cursor"].split(":")
    past = f"{stream_id}:{int(end) + 10**12}"
    assert "past the end of the output" in await go.error("LogsFrom", ns, "c1", past, 0)

    # Stats(ns, containerID string) (ContainerStats, error)
    before = await go.result("Stats", ns, "c1")
    assert set(before) == {"Time", "MemoryUsage", "MemoryLimit", "MemoryCache", "CPUUsage", "Pids"}
    assert (
        before["MemoryLimit"]
        == 64 << 20
        == int(cgroup_value(ns, "c1", "memory", "memory.limit_in_bytes", "memory.max"))
    )
    assert before["Pids"] == 2 and 0 < before["MemoryUsage"] < 64 << 20
    await contd.exec_output(ns, "c1", *BURN, timeout=30)
    after = await go.result("Stats", ns, "c1")
    assert after["CPUUsage"] > before["CPUUsage"] and after["Time"].to_unix() > before["Time"].to_unix()
    assert f"container nosuch not found in namespace {ns}" == await go.error("Stats", ns, "nosuch")

    # A container whose task has stopped: no cgroup, so no stats; its logs stay readable.
    await contd.signal_delete(ns, "c1")

    async def stopped() -> bool:
        task = (await contd.inspect(ns, "c1")).task
        return task is not None and task.status == "stopped"

    await wait_until(stopped)
    assert f"container c1 in namespace {ns} is not running" == await go.error("Stats", ns, "c1")
    assert len((await go.result("LogsFrom", ns, "c1", "", 0))["Lines"]) == 3
    await contd.delete(ns, "c1")


async def test_contdctl_exec_prints_the_output_and_exits_with_the_code(
    contd: ContainerClient, broker: str, ns: str, netns_name: str, rootfs: Path
) -> None:
    await contd.run(ns, container(rootfs, netns_name, env=["WHO=world"]))
    runs = [
        ("sh", "-c", 'echo "hello $WHO"; echo oops >&2'),
        ("sh", "-c", "echo some; exit 3"),
        ("nosuch",),
        ("/etc",),
    ]
    results = []
    for argv in runs:
        results.append(await contdctl(broker, "exec", ns, "c1", "--", *argv, check=False))
    (ok, out, err), (three, three_out, _), (missing, _, missing_err), (not_exec, _, not_exec_err) = results
    assert (ok, out, err) == (0, "hello world\n", "oops\n")
    assert (three, three_out) == (3, "some\n")
    assert missing == 127 and "executable file not found" in missing_err
    assert not_exec == 126 and "could not start" in not_exec_err
    code, _, err = await contdctl(
        broker, "exec", ns, "c1", "--timeout", "300ms", "--", "sleep", "30", check=False
    )
    assert code == 124 and "timed out after 300ms" in err
    code, _, err = await contdctl(broker, "exec", ns, "nosuch", "--", "true", check=False)
    assert code == 125 and f"container nosuch not found in namespace {ns}" in err
    code, _, err = await contdctl(broker, "exec", ns, "c1", check=False)
    assert code == 125 and "exec needs a command" in err
    code, out, _ = await contdctl(
        broker, "--json", "exec", ns, "c1", "--", "sh", "-c", "echo hi; exit 5", check=False
    )
    assert code == 5 and json.loads(out) == {
        "ExitCode": 5,
        "TimedOut": False,
        "Stdout": "hi\n",
        "Stderr": "",
        "StdoutTruncated": False,
        "StderrTruncated": False,
    }
    await contd.delete(ns, "c1")


async def test_contdctl_logs_tail_since_timestamps_and_json(
    contd: ContainerClient, broker: str, ns: str, netns_name: str, rootfs: Path
) -> None:
    script = f"sh -c 'for i in 1 2 3 4 5; do echo out $i; done; echo err 1 >&2; {UNTIL_TERM}'"
    await contd.run(ns, container(rootfs, netns_name, entrypoint=script))
    await wait_until(lambda: _has(contd, ns, "err 1"))
    (
        (_, out, err),
        (_, tail_out, tail_err),
        (_, stamped, stamped_err),
        (_, as_json, _),
        (_, since_future, _),
    ) = [
        await contdctl(broker, *args)
        for args in (
            ("logs", ns, "c1"),
            ("logs", ns, "c1", "--tail", "2"),
            ("logs", ns, "c1", "-t", "-n", "1"),
            ("--json", "logs", ns, "c1"),
            ("logs", ns, "c1", "--since", "2999-01-01T00:00:00Z"),
        )
    ]
    assert out == "".join(f"out {i}\n" for i in range(1, 6)) and err == "err 1\n"  # each to its own
    assert len((tail_out + tail_err).splitlines()) == 2
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (out 5|err 1)\n", stamped + stamped_err)
    records = [json.loads(line) for line in as_json.splitlines()]
    assert sorted(r["Line"] for r in records) == ["err 1", *(f"out {i}" for i in range(1, 6))]
    assert {r["Stream"] for r in records} == {"stdout", "stderr"}
    assert since_future == ""
    (_, recent, _), (_, all_since_10m, _) = [
        await contdctl(broker, "logs", ns, "c1", "--since", since) for since in ("1h", "10m")
    ]
    assert recent == all_since_10m == out
    code, _, err = await contdctl(broker, "logs", ns, "c1", "--since", "yesterday", check=False)
    assert code == 2 and "--since 'yesterday'" in err
    code, _, err = await contdctl(broker, "logs", ns, "nosuch", check=False)
    assert code == 1 and "not found" in err
    await contd.delete(ns, "c1")


async def _has(contd: ContainerClient, ns: str, text: str) -> bool:
    return text in await contd.logs(ns, "c1")


@pytest.fixture
def small_logs_contd(broker: str, containerd: services.ContainerdService, tmp_path: Path) -> list[str]:
    """The command line of a contd (run as a process, so a test can kill
    it) whose logs rotate every 16 KiB."""
    return [
        *("-broker", broker, "-root", str(tmp_path / "root"), "-containerd", str(containerd.address)),
        *("-containerd-root", str(containerd.root), "-containerd-state", str(containerd.state)),
        *("-log-max-size", "16K"),
    ]


async def test_logs_follow_across_rotations_and_a_daemon_killed_midway(
    small_logs_contd: list[str], broker: str, ns: str, netns_name: str, rootfs: Path, tmp_path: Path
) -> None:
    """``contdctl logs -f`` prints every line once and in order while the
    log rotates many times and the daemon is killed (SIGKILL) and started
    again between two bursts of output."""
    share = tmp_path / "share"
    share.mkdir()
    burst = "while [ $i -le {end} ]; do echo line $i; i=$((i+1)); [ $((i % 20)) = 0 ] && sleep 0.05; done"
    script = (
        'sh -c \'trap "exit 0" TERM; echo ready; i=1; '
        "while [ ! -e /share/go ]; do sleep 0.05; done; "
        f"{burst.format(end=1500)}; "
        "while [ ! -e /share/again ]; do sleep 0.05; done; "
        f"{burst.format(end=3000)}; sleep 1000 & wait'"
    )
    spec = Container(
        name="talker",
        rootfs=str(rootfs),
        network=NetworkInfo(netns_name),
        entrypoint=script,
        mounts=[MountInfo(str(share), "/share")],
    )
    daemon = start_contd(small_logs_contd, tmp_path / "contd-1.log")
    follower = None
    try:
        async with open_client(broker) as bus:
            contd = ContainerClient(bus, timeout=60)
            await bus.status("container", timeout=30)
            await contd.run(ns, spec)
            follower = await Follower.start(broker, "logs", "-f", ns, "talker")
            await wait_until(lambda: "ready\n" in follower.output)
            (share / "go").touch()
            await wait_until(lambda: "line 1500\n" in follower.output, timeout=60)
            daemon.send_signal(signal.SIGKILL)
            await wait_exit(daemon)
            daemon = start_contd(small_logs_contd, tmp_path / "contd-2.log")
            await bus.status("container", timeout=30)
            (share / "again").touch()
            await wait_until(lambda: "line 3000\n" in follower.output, timeout=60)
            log_dir = tmp_path / "root" / "logs" / ns
            index = (log_dir / "talker.log.idx").read_text().split()
            assert min(int(pair.split(":")[1]) for pair in index[2:]) > 100_000  # rotated many times
            await contd.delete(ns, "talker")
            assert await follower.wait() == 0  # it ends once the container is deleted
        printed = follower.output.splitlines()
        assert printed == ["ready", *(f"line {i}" for i in range(1, 3001))]
    finally:
        if follower is not None and follower.process.returncode is None:
            follower.process.kill()
        daemon.kill()
        await wait_exit(daemon)


async def test_fifty_followers_each_get_every_line_once(
    daemon_config: Config, broker: str, ns: str, netns_name: str, rootfs: Path
) -> None:
    config = dataclasses.replace(daemon_config, log_max_bytes=64 * 1024)
    script = (
        'sh -c \'trap "exit 0" TERM; i=1; while [ $i -le 2000 ]; do echo line $i; i=$((i+1)); '
        "[ $((i % 50)) = 0 ] && sleep 0.05; done; sleep 1000 & wait'"
    )
    async with open_daemon(config), open_client(broker) as bus:
        contd = ContainerClient(bus, timeout=60)
        await contd.run(ns, container(rootfs, netns_name, entrypoint=script))
        got: list[list[str]] = [[] for _ in range(50)]

        async def follow(mine: list[str]) -> None:
            cursor = ""
            while len(mine) < 2000:
                chunk = await contd.logs_from(ns, "c1", cursor)
                assert chunk.lost == 0 and not chunk.reset
                mine.extend(line.text for line in chunk.lines)
                cursor = chunk.cursor
                if not chunk.more:
                    await trio.sleep(0.1)

        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                for mine in got:
                    nursery.start_soon(follow, mine)
        expected = [f"line {i}" for i in range(1, 2001)]
        assert all(mine == expected for mine in got)
        await contd.delete(ns, "c1")


async def test_logs_of_a_container_whose_log_files_were_removed(
    contd: ContainerClient, daemon: Daemon, ns: str, netns_name: str, rootfs: Path
) -> None:
    script = (
        "sh -c 'trap \"exit 0\" TERM; i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.1 & wait; done'"
    )
    await contd.run(ns, container(rootfs, netns_name, entrypoint=script))
    chunk = await contd.logs_from(ns, "c1")
    log_dir = daemon.config.root / "logs" / ns
    for each in log_dir.iterdir():
        each.unlink()
    assert await contd.logs(ns, "c1") == ""
    after = await contd.logs_from(ns, "c1", chunk.cursor)
    assert after.lines == [] and after.reset  # nothing is kept: nothing given, and said so
    assert (await contd.logs_tail(ns, "c1", 10)).lines == []
    assert (await contd.inspect(ns, "c1")).task.status == "running"  # type: ignore[union-attr]
    await contd.delete(ns, "c1")


async def test_contdctl_stats(
    contd: ContainerClient, broker: str, ns: str, netns_name: str, rootfs: Path
) -> None:
    await contd.run(ns, container(rootfs, netns_name, memory=64 << 20))
    await contd.run(ns, container(rootfs, netns_name, name="c2", memory=128 << 20))
    (_, one, _), (_, table_out, _) = [
        await contdctl(broker, *args)
        for args in (("--json", "stats", ns, "c1", "--no-stream"), ("stats", ns, "--no-stream"))
    ]
    sample = json.loads(one)
    assert sample["ID"] == "c1" and sample["MemoryLimit"] == 64 << 20 and sample["Pids"] == 2
    assert sample["CPUPercent"] is not None and 0 < sample["MemoryPercent"] < 100
    header, *rows = table_out.splitlines()
    assert header.split("  ")[0] == "ID" and "MEM USAGE / LIMIT" in header and "PIDS" in header
    assert [row.split()[0] for row in rows] == ["c1", "c2"]
    assert "/ 64MiB" in rows[0] and "/ 128MiB" in rows[1]
    # CPU time grows with work done in the container.
    before = json.loads((await contdctl(broker, "--json", "stats", ns, "c1", "--no-stream"))[1])
    await contd.exec_output(ns, "c1", *BURN, timeout=30)
    after = json.loads((await contdctl(broker, "--json", "stats", ns, "c1", "--no-stream"))[1])
    assert after["CPUUsage"] > before["CPUUsage"]
    # Streaming: a table again and again, until Ctrl-C.
    streaming = await Follower.start(broker, "stats", ns)
    await wait_until(lambda: streaming.output.count("MEM USAGE / LIMIT") >= 2, timeout=30)
    assert "c1" in await streaming.interrupt()
    # A container named twice is shown once.
    _, twice, _ = await contdctl(broker, "stats", ns, "c2", "c1", "c2", "--no-stream")
    assert [row.split()[0] for row in twice.splitlines()[1:]] == ["c2", "c1"]
    code, _, err = await contdctl(broker, "stats", ns, "nosuch", "--no-stream", check=False)
    assert code == 1 and "nosuch not found" in err
    await contd.delete(ns, "c1")
    await contd.delete(ns, "c2")


async def test_contdctl_takes_paths_from_the_callers_directory(
    contd: ContainerClient, broker: str, ns: str, netns_name: str, rootfs: Path, tmp_path: Path
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "hello.txt").write_text("from the host\n")
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "c2.json").write_text(
        json.dumps(
            {
                "Name": "c2",
                "RootFS": "../rootfs",
                "Network": {"Namespace": netns_name},
                "Entrypoint": STEADY,
                "Mounts": [{"Source": "../data", "Target": "/data"}],
            }
        )
    )
    assert rootfs == tmp_path / "rootfs"
    relative_rootfs = "rootfs"
    result = await trio.run_process(
        [
            *(sys.executable, "-m", "contd_trio.ctl", "-broker", broker, "run", "--ns", ns, "--name", "c1"),
            *("--rootfs", relative_rootfs, "--netns", netns_name, "--entrypoint", STEADY),
            *("--mount", "data:/data"),
        ],
        cwd=tmp_path,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    result = await trio.run_process(
        [
            sys.executable,
            "-m",
            "contd_trio.ctl",
            "-broker",
            broker,
            "run",
            "--ns",
            ns,
            "--file",
            "specs/c2.json",
        ],
        cwd=tmp_path,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    for name in ("c1", "c2"):
        info = await contd.inspect(ns, name)
        assert info.rootfs == str(rootfs)
        assert [m.source for m in info.mounts or []] == [str(tmp_path / "data")]
        done = await contd.exec_output(ns, name, "cat", "/data/hello.txt")
        assert done.stdout == b"from the host\n"
        await contd.delete(ns, name)


async def test_ctrl_c_at_a_continuation_prompt_discards_the_input(
    daemon: Daemon, broker: str, tmp_path: Path
) -> None:
    """Through a pty, as a person types: Ctrl-C at ``...`` drops what was
    typed (the next line is not appended to it), and Ctrl-C while a command
    runs cancels it."""
    master, slave = os.openpty()

    def take_the_terminal() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # ^C on it then signals the REPL

    process = subprocess.Popen(
        [sys.executable, "-m", "contd_trio.repl", "-broker", broker],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        preexec_fn=take_the_terminal,
        env={**os.environ, "HOME": str(tmp_path)},  # its history file goes there
    )
    os.close(slave)
    screen = bytearray()

    async def shown(text: bytes, times: int = 1) -> bool:
        readable = await trio.to_thread.run_sync(_readable, master)
        if readable:
            with contextlib.suppress(OSError):  # the REPL has left
                screen.extend(os.read(master, 4096))
        return screen.count(text) >= times

    async def expect(text: bytes, times: int = 1, timeout: float = 10) -> None:
        try:
            await wait_until(lambda: shown(text, times), timeout=timeout)
        except trio.TooSlowError:
            raise AssertionError(f"{text!r} not shown; the screen: {bytes(screen)!r}") from None

    try:
        await expect(b">>> ", timeout=30)
        os.write(master, b"if True:\r")
        await expect(b"... ")
        os.write(master, b"    x = (1,\r")
        await expect(b"... ", 2)
        os.write(master, b"\x03")
        await expect(b"KeyboardInterrupt")
        await expect(b">>> ", 2)  # each line typed at a prompt: readline, not the terminal, reads it
        os.write(master, b"print(6 * 7)\r")
        await expect(b"42")
        await expect(b">>> ", 3)
        os.write(master, b'print("slee" "ping"); await trio.sleep(60)\r')
        await expect(b"sleeping")  # it runs
        os.write(master, b"\x03")
        await expect(b"cancelled")
        await expect(b">>> ", 4)
        os.write(master, b"print(await contd.list_ns() is not None)\r")
        await expect(b"True")
        await expect(b">>> ", 5)
        os.write(master, b"\x04")  # Ctrl-D leaves
        with trio.fail_after(15):
            while process.poll() is None:
                await shown(b"")
        assert process.returncode == 0
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
    assert b"SyntaxError" not in screen and b"Traceback" not in screen


def _readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0.05)[0])


def memory_limit(ns: str, cid: str) -> int:
    return int(cgroup_value(ns, cid, "memory", "memory.limit_in_bytes", "memory.max"))


def cpu_quota(ns: str, cid: str) -> int:
    return int(cgroup_value(ns, cid, "cpu", "cpu.cfs_quota_us", "cpu.max").split()[0])


async def test_update_changes_the_limits_live_and_a_crash_restart_keeps_them(
    daemon_config: Config, broker: str, ns: str, netns_name: str, rootfs: Path
) -> None:
    config = dataclasses.replace(daemon_config, restart_delay=0.2)
    async with open_daemon(config), open_client(broker) as bus:
        contd = ContainerClient(bus, timeout=60)
        go = GoCaller(broker)
        await contd.run(ns, container(rootfs, netns_name, memory=64 << 20, cpu=1))
        pid = (await contd.inspect(ns, "c1")).task.pid  # type: ignore[union-attr]
        assert (memory_limit(ns, "c1"), cpu_quota(ns, "c1")) == (64 << 20, 100_000)

        # Update(ns, containerID string, cpu uint, memory uint64) error, as Go sends it.
        response = await go.call("Update", ns, "c1", 2, 96 << 20)
        assert response.error is None and response.output.error is None, response
        assert (memory_limit(ns, "c1"), cpu_quota(ns, "c1")) == (96 << 20, 200_000)
        info = await contd.inspect(ns, "c1")
        assert (info.memory, info.cpu, info.task.pid) == (96 << 20, 2, pid)  # type: ignore[union-attr]
        # 0 leaves a limit as it is; contdctl does the same.
        _, out, _ = await contdctl(broker, "update", ns, "c1", "--memory", "80M")
        assert out == f"updated {ns}/c1\n"
        assert (memory_limit(ns, "c1"), cpu_quota(ns, "c1")) == (80 << 20, 200_000)

        # What Run refuses, Update refuses, and nothing changes.
        refused = {
            (0, 4096): "memory 4096 is below the minimum of 6291456 bytes (6 MiB)",
            (0, 2**64 - 1): f"memory {2**64 - 1} is more than the largest limit",
            (10_000, 0): "cpu 10000 is more than the",
            (2**64 - 1, 0): f"cpu {2**64 - 1} is more than the",
            (0, 0): "update needs a new cpu or memory",
        }
        for (cpu, memory), words in refused.items():
            message = await go.error("Update", ns, "c1", cpu, memory)
            assert message.startswith(words), message
        assert "not found" in await go.error("Update", ns, "nosuch", 1, 0)
        assert "not a valid identifier" in await go.error("Update", ns, "../x", 1, 0)
        code, _, err = await contdctl(broker, "update", ns, "c1", "--cpu", "-1", check=False)
        assert code == 2 and "--cpu -1 is negative" in err
        # The kernel refuses a limit below what the container uses: said in runc's words.
        fill = 'x=$(head -c 30000000 /dev/zero | tr "\\0" a); echo full'
        hog = f"sh -c '{fill}; {UNTIL_TERM}'"
        await contd.run(ns, container(rootfs, netns_name, name="hog", entrypoint=hog, memory=256 << 20))
        await wait_until(lambda: _has_line(contd, ns, "hog", "full"))
        message = await go.error("Update", ns, "hog", 0, 8 << 20)
        assert "cannot take the new limits" in message and "unable to set memory limit" in message
        assert memory_limit(ns, "hog") == 256 << 20 and (await contd.inspect(ns, "hog")).memory == 256 << 20
        assert (memory_limit(ns, "c1"), cpu_quota(ns, "c1")) == (80 << 20, 200_000)

        # A crash: supervision starts it again from the stored spec, new limits included.
        os.kill(pid, signal.SIGKILL)

        async def restarted() -> bool:
            task = (await contd.inspect(ns, "c1")).task
            return task is not None and task.status == "running" and task.pid != pid and task.restarts == 1

        await wait_until(restarted, timeout=30)
        assert (memory_limit(ns, "c1"), cpu_quota(ns, "c1")) == (80 << 20, 200_000)
        info = await contd.inspect(ns, "c1")
        assert (info.memory, info.cpu) == (80 << 20, 2)

        # One that is going away is left alone.
        await contd.signal_delete(ns, "hog")
        assert "going away" in await go.error("Update", ns, "hog", 1, 0)
        await contd.delete(ns, "hog")
        await contd.delete(ns, "c1")


async def _has_line(contd: ContainerClient, ns: str, cid: str, text: str) -> bool:
    return text in (await contd.logs(ns, cid)).splitlines()
