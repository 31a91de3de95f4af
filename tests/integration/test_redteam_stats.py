"""Red team: the stats monitors meet tenants' stats endpoints.

A stats monitor is a task of the daemon: what it opens and reads is the
daemon's. Each endpoint here is a tenant's ``Stats`` entry, accepted by
validation.

Each test fails on the code as it is (see the report of the red team pass).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
import trio

from contd_trio.module.client import ContainerClient
from contd_trio.module.types import Container, NetworkInfo, Stats
from contd_trio.zbus.errors import CallError
from tests.helpers import STEADY
from tools import services

#: A TCP server that answers the first command with a reply that never
#: ends (a status line without CRLF, 1 MiB at a time), and says on stdout
#: how much each connection took: ``sent <conn> <bytes>``, ``closed <conn> <bytes>``.
ENDLESS_REPLY = r"""
import itertools, socket, threading
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", 0))
server.listen(64)
print(server.getsockname()[1], flush=True)
def answer(conn, index):
    sent = 0
    try:
        conn.recv(65536)
        conn.sendall(b"+")
        chunk = b"x" * (1 << 20)
        while True:
            conn.sendall(chunk)
            sent += len(chunk)
            if sent % (8 << 20) == 0:
                print("sent", index, sent, flush=True)
    except OSError:
        pass
    print("closed", index, sent, flush=True)
for index in itertools.count():
    conn, _ = server.accept()
    threading.Thread(target=answer, args=(conn, index), daemon=True).start()
"""


@contextmanager
def endless_reply_server() -> Iterator[tuple[int, subprocess.Popen[str]]]:
    process = subprocess.Popen([sys.executable, "-c", ENDLESS_REPLY], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    try:
        yield int(process.stdout.readline()), process
    finally:
        process.kill()
        process.wait()
        process.stdout.close()


def container(rootfs: Path, netns: str, name: str, **fields: Any) -> Container:
    fields.setdefault("entrypoint", STEADY)
    return Container(name=name, rootfs=str(rootfs), network=NetworkInfo(netns), **fields)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_stats_entries_do_not_cost_the_daemon_a_socket_each(
    contd: ContainerClient,
    ns: str,
    netns_name: str,
    rootfs: Path,
    backend_redis: services.RedisService,
) -> None:
    """Up to 4,096 stats entries are accepted, and the monitor opens a Redis
    connection per entry (a transport each) and keeps them all: a handful of
    such containers use up the daemon's open files, and with them its
    connections to Redis and containerd. Either the entries are bounded (Run
    refuses, naming Stats) or the connections are shared."""
    entries = 1000
    last = f"s{entries - 1}"
    listener = redis.Redis(host="127.0.0.1", port=backend_redis.port)
    pubsub = listener.pubsub()
    pubsub.subscribe(last)
    try:
        before = open_fds()  # the daemon runs in this process
        stats = [Stats("redis", backend_redis.channel_url(f"s{i}")) for i in range(entries)]
        try:
            await contd.run(ns, container(rootfs, netns_name, "c1", stats=stats))
        except CallError as exc:
            assert "Stats" in exc.message or "stats" in exc.message, exc.message
            return
        try:
            # The monitor pushes to its entries in order: the last one's
            # sample means every entry has been served once.
            with trio.fail_after(60):
                while True:
                    message = await trio.to_thread.run_sync(pubsub.get_message, True, 0.5)
                    if message is not None and message["type"] == "message":
                        break
            during = open_fds()
        finally:
            await contd.delete(ns, "c1")
    finally:
        pubsub.close()
        listener.close()
    assert during - before <= 64, f"{entries} stats entries of one container opened {during - before} files"


async def test_a_stats_endpoint_cannot_make_the_daemon_buffer_without_bound(
    contd: ContainerClient, ns: str, netns_name: str, rootfs: Path
) -> None:
    """An endpoint whose reply never ends is read into the daemon's memory
    until the 10 s command timeout: about 140 MiB per monitor here, and each
    container with such an endpoint does it again after every backoff."""
    limit = 32 << 20
    with endless_reply_server() as (port, server):
        assert server.stdout is not None
        stats = [Stats("redis", f"redis://127.0.0.1:{port}/metrics")]
        await contd.run(ns, container(rootfs, netns_name, "c1", stats=stats))
        taken = 0
        try:
            # Until the daemon dropped the first connection, or took more
            # than the limit on it; a daemon that stops reading makes the
            # server stop sending, and the bound ends the wait.
            with trio.move_on_after(30):
                while taken <= limit:
                    line = await trio.to_thread.run_sync(server.stdout.readline, abandon_on_cancel=True)
                    kind, index, sent = line.split()
                    if index == "0":
                        taken = int(sent)
                        if kind == "closed":
                            break
        finally:
            await contd.delete(ns, "c1")
    assert taken <= limit, f"the daemon read at least {taken >> 20} MiB of one stats endpoint's reply"
