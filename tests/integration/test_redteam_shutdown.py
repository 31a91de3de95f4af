"""Red team: SIGTERM while requests keep coming.

The README promises that on SIGTERM the daemon stops taking requests and
answers every request in flight. A request is in flight from the moment the
reader's Lua script (or BLPOP) took it out of Redis: stopping cancels the
reader inside that round trip, and what Redis handed over in it is dropped,
neither answered nor left in the queue for the next daemon.

Real Redis, real containerd, the daemon as a process of its own; requests
are pushed raw, so each one can be accounted for by its ReplyTo.

Each test fails on the code as it is (see the report of the red team pass).
"""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import redis
import trio

from contd_trio.module.names import MODULE, OBJECT
from contd_trio.zbus import codec
from contd_trio.zbus.client import open_client
from tests.integration.faultkit import (
    Callers,
    ContdProcess,
    answer_problems,
    container,
    fresh_namespace,
    within,
)
from tools import services

ROUNDS = 40
BATCH = 20
QUEUE = codec.queue_name(MODULE, OBJECT)


def request(reply_to: str) -> bytes:
    return codec.encode_request(
        codec.Request(id=reply_to, inputs=[], object=OBJECT, reply_to=reply_to, method="ListNS")
    )


async def test_no_request_taken_from_redis_is_dropped_at_sigterm(
    private_redis: services.RedisService, containerd: services.ContainerdService, tmp_path: Path
) -> None:
    bus = redis.Redis(unix_socket_path=str(private_redis.socket_path))
    lost: list[str] = []
    try:
        for round_ in range(ROUNDS):
            daemon = ContdProcess(
                private_redis, containerd, tmp_path / "root", tmp_path / "contd.log", "-shutdown-grace", "1"
            )
            daemon.start()
            try:
                assert await within(lambda: "serving" in daemon.log(), 30), daemon.tail()  # noqa: B023
                sent: list[str] = []
                signalled = False
                # Requests keep coming in batches, so that some always wait
                # (the reader is then inside a round trip that takes them),
                # before and after the signal, until the daemon has exited.
                while daemon.alive():
                    batch = [f"redteam.{uuid.uuid4()}" for _ in range(BATCH)]
                    bus.rpush(QUEUE, *(request(reply_to) for reply_to in batch))
                    sent.extend(batch)
                    if not signalled and len(sent) >= 100:
                        answered = sum(bus.exists(key) for key in sent)
                        if answered >= 50:
                            assert daemon.process is not None
                            daemon.process.send_signal(signal.SIGTERM)
                            signalled = True
                    await trio.sleep(0.001)
            finally:
                daemon.stop()
            queued = {codec.decode_request(payload).reply_to for payload in bus.lrange(QUEUE, 0, -1)}
            dropped = [key for key in sent if key not in queued and not bus.exists(key)]
            lost.extend(f"round {round_}: {key}" for key in dropped)
            bus.delete(QUEUE, *sent)
            if lost:
                break
    finally:
        bus.close()
    assert not lost, f"{len(lost)} requests taken from Redis and never answered: {lost[:5]}"


#: Runs in flight at the SIGTERM of the roll-back test.
RUNS_IN_FLIGHT = 50
#: How long containerd then stutters: frozen 0.6 s, running 0.1 s, so that
#: it answers each call within a second but rolls 50 Runs back in more than
#: the 2 s the roll-backs are sure to get.
STUTTER_SECONDS = 10.0


async def stutter(containerd: services.ContainerdService, seconds: float) -> None:
    assert containerd.process is not None
    pid = containerd.process.pid
    try:
        with trio.move_on_after(seconds):
            while True:
                os.kill(pid, signal.SIGSTOP)
                await trio.sleep(0.6)
                os.kill(pid, signal.SIGCONT)
                await trio.sleep(0.1)
    finally:
        os.kill(pid, signal.SIGCONT)


async def test_a_stop_rolls_back_every_run_it_cut_short_while_containerd_answers(
    private_redis: services.RedisService,
    private_containerd: services.ContainerdService,
    netns_name: str,
    rootfs: Path,
    tmp_path: Path,
) -> None:
    """SIGTERM with no grace while 50 Runs are in flight, containerd slow but
    answering (it stutters): the stopping daemon itself removes every
    container whose Run it answered with an error, although their roll-backs
    outlast the 2 s after the grace: the shields are lifted only for a
    containerd that stops answering."""
    ns = fresh_namespace()
    root, log_path = tmp_path / "root", tmp_path / "contd.log"
    daemon = ContdProcess(
        private_redis, private_containerd, root, log_path, "-shutdown-grace", "0", "-workers", "64"
    )
    names = [f"r{i}" for i in range(RUNS_IN_FLIGHT)]

    async def some_tasks_made() -> bool:
        listed = await trio.to_thread.run_sync(
            lambda: services.ctr(private_containerd.address, "tasks", "list", "-q", namespace=ns, check=False)
        )
        return len(listed.split()) >= 20

    daemon.start()
    try:
        assert await within(lambda: "serving" in daemon.log(), 30), daemon.tail()
        async with open_client(private_redis.url) as bus:
            callers = Callers(bus)
            async with trio.open_nursery() as nursery:
                for name in names:
                    callers.start(nursery, name, "Run", ns, container(rootfs, netns_name, name), timeout=60)
                # Some tasks exist, others are still being made.
                assert await within(some_tasks_made, 60)
                assert daemon.process is not None
                daemon.process.send_signal(signal.SIGTERM)
                nursery.start_soon(stutter, private_containerd, STUTTER_SECONDS)
                assert await within(lambda: not daemon.alive(), 45), daemon.tail()
    finally:
        daemon.stop()
    assert not answer_problems(callers, allowed=("ok", "error")), callers.report()
    assert "Traceback" not in daemon.log(), daemon.tail()
    left = set(services.ctr(private_containerd.address, "containers", "list", "-q", namespace=ns).split())
    assert left == callers.named("ok"), f"left but not answered ok: {sorted(left - callers.named('ok'))}"
