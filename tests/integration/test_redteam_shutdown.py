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

import signal
import uuid
from pathlib import Path

import redis
import trio

from contd_trio.module.names import MODULE, OBJECT
from contd_trio.zbus import codec
from tests.integration.faultkit import ContdProcess, within
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
