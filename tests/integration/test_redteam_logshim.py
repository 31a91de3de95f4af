"""Red team: the log shim meets tenants' log backends.

The log shim runs on the host (a child of the runc shim, in the host's
network namespace and outside the container's cgroup), so what it holds
and whom it talks to is the node's, not the tenant's. Each backend here is
a tenant's ``Logs`` entry, accepted by validation.

Each test fails on the code as it is (see the report of the red team pass).
"""

from __future__ import annotations

import re
import select
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import trio

from contd_trio.app import Daemon
from contd_trio.module.client import ContainerClient
from contd_trio.module.types import Container, Logs, LogsRedis, NetworkInfo
from tests.helpers import wait_until
from tests.integration.faultkit import within
from tools import services

#: A TCP server that takes whatever comes, then answers without end and
#: without ever finishing a reply (no CRLF): a broken or hostile "Redis".
ENDLESS_ANSWER = r"""
import socket, threading
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", 0))
server.listen(64)
print(server.getsockname()[1], flush=True)
def answer(conn):
    try:
        conn.recv(65536)
        conn.sendall(b"+")
        chunk = b"x" * (1 << 20)
        while True:
            conn.sendall(chunk)
    except OSError:
        pass
while True:
    conn, _ = server.accept()
    threading.Thread(target=answer, args=(conn,), daemon=True).start()
"""


@contextmanager
def endless_answer_server(netns: str) -> Iterator[int]:
    """In the container's network namespace (with its loopback up), where
    its log shim reaches backends."""
    inside = ["ip", "netns", "exec", netns]
    subprocess.run([*inside, "ip", "link", "set", "lo", "up"], check=True)
    process = subprocess.Popen(
        [*inside, sys.executable, "-c", ENDLESS_ANSWER], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    try:
        yield int(process.stdout.readline())
    finally:
        process.kill()
        process.wait()
        process.stdout.close()


def container(rootfs: Path, netns: str, name: str, **fields: Any) -> Container:
    return Container(name=name, rootfs=str(rootfs), network=NetworkInfo(netns), **fields)


def redis_logs(url: str) -> list[Logs]:
    return [Logs("redis", LogsRedis(stdout=url, stderr=url))]


def logshim_pid(log_file: Path) -> int:
    """The log shim writing ``log_file``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"contd-logshim") for a in argv) and str(log_file).encode() in argv:
            return int(entry.name)
    raise AssertionError(f"no log shim writes {log_file}")


def peak_rss_mib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    raise AssertionError(f"no VmHWM for {pid}")


def last_line_number(log_file: Path) -> int:
    """The largest ``<n> `` a line's text starts with (after the shim's
    ``<time> <stream> <F|P> ``), in the tails of the log and its rotated file."""
    found = 0
    for path in (log_file, log_file.with_name(log_file.name + ".1")):
        try:
            with open(path, "rb") as f:
                f.seek(0, 2)
                f.seek(max(0, f.tell() - 256 * 1024))
                tail = f.read()
        except FileNotFoundError:
            continue
        numbers = [int(n) for n in re.findall(rb"(?:^|\n)(?:\S+ std(?:out|err) [FP] )?(\d+) ", tail)]
        found = max([found, *numbers])
    return found


#: Numbered lines, as fast as the shell can make them; leaves on SIGTERM.
def numbered_lines(payload: str, pause: str = "") -> str:
    return (
        'sh -c \'trap "exit 0" TERM; i=0; while true; do i=$((i+1)); '
        f'printf "%s " $i; {payload}; echo; {pause} done\''
    )


async def test_lines_kept_for_an_unreachable_backend_are_bounded_in_bytes(
    contd: ContainerClient, daemon: Daemon, ns: str, netns_name: str, rootfs: Path
) -> None:
    """The shim keeps up to 10,000 lines per channel while a backend is
    away, whatever their size: at 60 KB a line, 600 MB of the host's memory
    (outside the container's memory limit), per backend channel."""
    dead = f"redis://127.0.0.1:{services.free_loopback_port()}/out"
    entrypoint = numbered_lines('head -c 60000 /dev/zero | tr "\\0" x')
    spec = container(rootfs, netns_name, "c1", entrypoint=entrypoint, logs=redis_logs(dead))
    await contd.run(ns, spec)
    log_file = daemon.config.root / "logs" / ns / "c1.log"
    try:
        shim = logshim_pid(log_file)
        # 3,000 lines of 60 KB: 180 MB written while the backend was away.
        await wait_until(lambda: last_line_number(log_file) >= 3000, timeout=120, interval=0.2)
        peak = peak_rss_mib(shim)
    finally:
        await contd.delete(ns, "c1")
    assert peak <= 64, f"the log shim of c1 grew to {peak} MiB holding lines for an unreachable backend"


async def test_a_backend_that_never_finishes_its_answer_does_not_stop_the_log(
    contd: ContainerClient, daemon: Daemon, ns: str, netns_name: str, rootfs: Path
) -> None:
    """A backend that answers PUBLISH without end (no CRLF, ever) holds the
    shim in its reply loop forever: the container's later lines never reach
    its log file, and once the pipe is full the container blocks on write."""
    with endless_answer_server(netns_name) as port:
        logs = redis_logs(f"redis://127.0.0.1:{port}/out")
        entrypoint = numbered_lines("echo line", pause="sleep 0.05;")
        await contd.run(ns, container(rootfs, netns_name, "c1", entrypoint=entrypoint, logs=logs))
        log_file = daemon.config.root / "logs" / ns / "c1.log"
        try:
            logged = await within(lambda: last_line_number(log_file) >= 40, timeout=20, interval=0.2)
            reached = last_line_number(log_file)
        finally:
            await contd.delete(ns, "c1")
    assert logged, f"the log of c1 stopped at line {reached}: its log shim is stuck in a backend's answer"


async def test_a_log_backend_is_not_reached_from_the_hosts_network(
    contd: ContainerClient, daemon: Daemon, ns: str, netns_name: str, rootfs: Path
) -> None:
    """A service listening on the host's loopback is out of the container's
    reach (it has its own network namespace), yet naming it as a log backend
    makes the log shim, on the host, connect to it and write what the
    container prints: a tenant reaches host-local services."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        port = listener.getsockname()[1]
        logs = redis_logs(f"redis://127.0.0.1:{port}/out")
        entrypoint = numbered_lines("echo hello", pause="sleep 0.1;")
        await contd.run(ns, container(rootfs, netns_name, "c1", entrypoint=entrypoint, logs=logs))
        log_file = daemon.config.root / "logs" / ns / "c1.log"
        try:
            # Past line 3, the shim has tried to forward line 1 (it does so
            # right after writing it, before it reads more).
            await wait_until(lambda: last_line_number(log_file) >= 3, timeout=30, interval=0.1)
        finally:
            await contd.delete(ns, "c1")
        reached, _, _ = select.select([listener], [], [], 0)
    finally:
        listener.close()
    assert not reached, f"the log shim connected to 127.0.0.1:{port} of the host for the tenant"


async def test_a_full_log_disk_does_not_kill_the_log_shim_or_the_writer(
    contd: ContainerClient, daemon: Daemon, ns: str, netns_name: str, rootfs: Path
) -> None:
    """The log shim writes with ``os.write`` and lets ENOSPC end it. Once it
    is gone, the container's next write to stdout raises SIGPIPE: every
    process that logs (any but PID 1) dies, the container crashes, its
    restarts meet the same full disk, and it is given up. Any tenant can
    fill the daemon's root (an exec's output is not capped), and with it
    every container's log. Here the namespace's log directory is a 1 MiB
    tmpfs."""
    log_dir = daemon.config.root / "logs" / ns
    log_dir.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(log_dir)], check=True)
    try:
        # Waits for /go; then a child (not PID 1, which SIGPIPE would spare)
        # writes numbered 1 KB lines, counting them in /progress.
        writer = 'i=0; while true; do i=$((i+1)); echo "line $i $PAD"; echo $i > /progress; done'
        wait_for_go = "while [ ! -e /go ]; do sleep 0.05; done"
        entrypoint = f"sh -c 'trap \"exit 0\" TERM; {wait_for_go}; ({writer}) & wait; exit 7'"
        spec = container(rootfs, netns_name, "c1", entrypoint=entrypoint, env=["PAD=" + "x" * 1000])
        await contd.run(ns, spec)
        log_file = log_dir / "c1.log"
        progress = rootfs / "progress"

        async def lines_written() -> int:
            # /progress is rewritten without end: read until it is whole.
            while not (text := progress.read_text().strip()):
                await trio.sleep(0.01)
            return int(text)

        try:
            (rootfs / "go").touch()
            # The log's disk is full: the shim has met ENOSPC.
            await wait_until(lambda: log_file.stat().st_size >= (1 << 20) - 4096, timeout=30)
            reached = await lines_written()

            async def went_on() -> bool:
                return await lines_written() >= reached + 500

            kept_on = await within(went_on, timeout=15)
            last = await lines_written()
            info = await contd.inspect(ns, "c1")
        finally:
            await contd.delete(ns, "c1")
    finally:
        subprocess.run(["umount", str(log_dir)], check=False)
    assert kept_on, (
        f"the writer went from line {reached} (the log disk full) to line {last} "
        f"(it counts from 1 again when the container is restarted): {info.task}"
    )
    assert info.task is not None and info.task.restarts == 0, f"c1 crashed: {info.task}"
