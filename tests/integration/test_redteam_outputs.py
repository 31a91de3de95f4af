"""Red team: a container's output is tenant data, and it is not bounded.

Errors quote "the last lines" of an exec's or an entrypoint's output, and
Logs gives "the last 100 lines"; a line is whatever the process wrote
before a newline, so a process that never writes one makes the daemon read
its whole output into memory and send it back in one answer. Exec output
goes to a ``file://`` of the runc shim, with no cap at all on its size.

Each test fails on the code as it is (see the report of the red team pass).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
import trio

from contd_trio.app import Daemon
from contd_trio.module.client import ContainerClient
from contd_trio.module.types import Container, NetworkInfo
from contd_trio.zbus.errors import CallError
from tests.helpers import STEADY, wait_until

#: The most an answer quoting a process's output may carry. Errors quote 10
#: lines; a few KiB would do, 64 KiB leaves room for any sensible design.
MAX_ANSWER_CHARS = 64 * 1024
#: What the test processes write, without a single newline.
FLOOD_BYTES = 4_000_000
FLOOD = f"head -c {FLOOD_BYTES} /dev/zero | tr '\\0' x"


def container(rootfs: Path, netns: str, name: str, **fields: Any) -> Container:
    fields.setdefault("entrypoint", STEADY)
    return Container(name=name, rootfs=str(rootfs), network=NetworkInfo(netns), **fields)


async def test_an_exec_error_quotes_a_bounded_tail_of_output_without_newlines(
    contd: ContainerClient, ns: str, netns_name: str, rootfs: Path
) -> None:
    await contd.run(ns, container(rootfs, netns_name, "c1"))
    with pytest.raises(CallError) as failed:
        await contd.exec_process(ns, "c1", "sh", "-c", f"{FLOOD}; exit 3", timeout=30)
    message = failed.value.message
    await contd.delete(ns, "c1")
    assert "non-zero exit code: 3" in message
    assert len(message) <= MAX_ANSWER_CHARS, (
        f"the Exec error carries {len(message)} characters of the process's output"
    )


async def test_a_run_error_quotes_a_bounded_tail_of_output_without_newlines(
    contd: ContainerClient, ns: str, netns_name: str, rootfs: Path
) -> None:
    entrypoint = f'sh -c "{FLOOD}; exit 3"'
    with pytest.raises(CallError) as failed:
        await contd.run(ns, container(rootfs, netns_name, "c1", entrypoint=entrypoint))
    message = failed.value.message
    assert "exited with status 3" in message
    assert len(message) <= MAX_ANSWER_CHARS, (
        f"the Run error carries {len(message)} characters of the entrypoint's output"
    )


async def test_logs_answers_a_bounded_tail_of_output_without_newlines(
    contd: ContainerClient, daemon: Daemon, ns: str, netns_name: str, rootfs: Path
) -> None:
    entrypoint = f"sh -c \"{FLOOD}; touch /flooded; trap 'exit 0' TERM; sleep 1000 & wait\""
    await contd.run(ns, container(rootfs, netns_name, "c1", entrypoint=entrypoint))
    log_file = daemon.config.root / "logs" / ns / "c1.log"

    def all_written() -> bool:
        # The log shim lets a line without a newline out in 64 KiB pieces.
        sizes = [p.stat().st_size for p in (log_file, log_file.with_name("c1.log.1")) if p.exists()]
        return (rootfs / "flooded").exists() and sum(sizes) >= FLOOD_BYTES - 64 * 1024

    await wait_until(all_written, timeout=30)
    text = await contd.logs(ns, "c1")
    await contd.delete(ns, "c1")
    assert len(text) <= MAX_ANSWER_CHARS, f"Logs answered {len(text)} characters for one unfinished line"


async def test_exec_output_on_disk_is_bounded(
    contd: ContainerClient, daemon: Daemon, ns: str, netns_name: str, rootfs: Path
) -> None:
    """An exec's output file lives in the daemon's root: a process that
    writes without end must not fill the node's disk before its timeout."""
    written = 32 * 1024 * 1024
    cap = 16 * 1024 * 1024
    await contd.run(ns, container(rootfs, netns_name, "c1"))
    exec_dir = daemon.config.root / "exec" / ns
    largest = 0
    answered = trio.Event()

    def largest_output() -> int:
        return max((p.stat().st_size for p in exec_dir.glob("c1.exec-*.out")), default=0)

    async def call() -> None:
        # It writes 32 MiB at once, then sits until its timeout kills it;
        # the answer (whatever it says) comes once its output file is done with.
        script = f"head -c {written} /dev/zero; sleep 1000"
        try:
            with contextlib.suppress(CallError):
                await contd.exec_process(ns, "c1", "sh", "-c", script, timeout=3)
        finally:
            answered.set()

    async def watch() -> None:
        nonlocal largest
        while not answered.is_set():
            largest = max(largest, await trio.to_thread.run_sync(largest_output))
            await trio.sleep(0.05)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(call)
        nursery.start_soon(watch)
    await contd.delete(ns, "c1")
    assert largest <= cap, f"an exec's output file grew to {largest} bytes in the daemon's root"
