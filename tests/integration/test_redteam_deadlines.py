"""Red team: work a request does in a worker thread escapes its deadline.

Trio cannot cancel a thread, so whatever a method does in
``trio.to_thread.run_sync`` runs to its end past the request's deadline,
holding the request's worker slot (and one of Trio's worker threads) all
the while. Reading an output back (``logfiles.tail_lines``) looks for
newlines backwards and prepends 64 KiB chunks, so a newline-free output
costs time quadratic in its size: 16 MB take about 2 s, 32 MB 6 s, 128 MB
a minute and a half, and an exec's output has no size cap at all.

The daemon runs as a process of its own (``-timeout 10``), so the test can
stop it without waiting for the thread.

Each test fails on the code as it is (see the report of the red team pass).
"""

from __future__ import annotations

from pathlib import Path

from contd_trio.zbus.client import open_client
from tests.integration.faultkit import ContdProcess, ask, serving_with_c1
from tools import services

DEADLINE_SECONDS = 10.0
#: What a request may take past its deadline: the shielded, bounded clean-up
#: (an exec process killed and removed) before it answers.
SLACK_SECONDS = 10.0


async def test_an_exec_with_a_large_newline_free_output_is_answered_by_its_deadline(
    private_redis: services.RedisService,
    containerd: services.ContainerdService,
    tmp_path: Path,
    ns: str,
    netns_name: str,
    rootfs: Path,
) -> None:
    daemon = ContdProcess(
        private_redis, containerd, tmp_path / "root", tmp_path / "contd.log", "-timeout", "10"
    )
    daemon.start()
    try:
        async with open_client(private_redis.url) as bus:
            await serving_with_c1(daemon, bus, ns, rootfs, netns_name)
            # 128 MB at once, then it sits until its 2 s exec timeout kills it.
            script = "head -c 128000000 /dev/zero; sleep 1000"
            limit = DEADLINE_SECONDS + SLACK_SECONDS
            answer = await ask(bus, "Exec", ns, "c1", 2 * 10**9, "sh", "-c", script, timeout=limit + 5)
    finally:
        daemon.kill()
    assert answer.kind in ("ok", "error") and answer.seconds <= limit, (
        f"the Exec of a 128 MB newline-free output: {answer}"
    )
