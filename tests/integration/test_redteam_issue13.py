"""Red team: the operator methods of issue 13 (ExecOutput, LogsFrom,
LogsTail, Stats, Update) and their contdctl commands, called as a hostile
caller would: every argument is a tenant's value.

Each test failed on the code as merged (see the red team's report); those
whose fix was small and local pass now, as regression tests.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import trio

from contd_trio.app import Daemon, open_daemon
from contd_trio.config import Config
from contd_trio.module.client import ContainerClient
from contd_trio.module.types import Container, NetworkInfo
from contd_trio.zbus.client import open_client
from contd_trio.zbus.errors import CallError
from tests.helpers import STEADY, UNTIL_TERM, cgroup_value, wait_until
from tests.integration.test_operator import contdctl
from tools import services

#: Words no contdctl output may carry: a Python traceback.
TRACEBACK = "Traceback (most recent call last)"


def container(rootfs: Path, netns: str, name: str = "c1", **fields: Any) -> Container:
    fields.setdefault("entrypoint", STEADY)
    return Container(name=name, rootfs=str(rootfs), network=NetworkInfo(netns), **fields)


async def test_logs_from_refuses_a_cursor_into_the_middle_of_a_line(
    contd: ContainerClient, ns: str, netns_name: str, rootfs: Path
) -> None:
    """A cursor is ``<stream id>:<offset>``, and the stream id is in every
    answer: a caller can forge one that points anywhere in the log. One
    pointing into a line was served as if a line started there: the CRI
    prefix cut, so a "line" without time or stream whose text is the rest of
    the real line's prefix (``11-30T07:33:27.7Z stdout F aaa``), or that
    starts in the middle of a UTF-8 character. The README says a cursor no
    chunk gave is an error; a caller gets forged lines instead. Only the
    byte before the offset need be read to know."""
    script = 'sh -c \'echo first; printf "h\\303\\251llo\\n"; ' + UNTIL_TERM + "'"
    await contd.run(ns, container(rootfs, netns_name, entrypoint=script))
    await wait_until(lambda: _count_lines(contd, ns, 2))
    first = await contd.logs_from(ns, "c1", "", 1)
    stream_id, offset = first.cursor.split(":")
    start = int(offset)
    # The right cursor gives the second line whole.
    second = await contd.logs_from(ns, "c1", first.cursor, 1)
    assert [line.text for line in second.lines] == ["héllo"]
    end = int(second.cursor.split(":")[1])
    refused = []
    for forged in [1, 5, start - 1, start + 1, start + 40, end - 3, end - 1]:
        try:
            chunk = await contd.logs_from(ns, "c1", f"{stream_id}:{forged}", 1)
        except CallError as exc:
            assert "middle of a line" in str(exc)
            refused.append(forged)
        else:
            print(f"offset {forged} gave {chunk.lines}")
    assert refused == [1, 5, start - 1, start + 1, start + 40, end - 3, end - 1]
    # Line starts stay good cursors, and so does the end.
    assert [line.text for line in (await contd.logs_from(ns, "c1", f"{stream_id}:0", 1)).lines] == ["first"]
    assert (await contd.logs_from(ns, "c1", second.cursor)).lines == []
    await contd.delete(ns, "c1")


async def _count_lines(contd: ContainerClient, ns: str, count: int) -> bool:
    return len((await contd.logs_tail(ns, "c1", -1)).lines) >= count


async def test_fifty_exec_outputs_at_once_on_one_container_all_answer(
    contd: ContainerClient, ns: str, netns_name: str, rootfs: Path
) -> None:
    """50 ExecOutput calls at once on one container (the daemon serves 16
    requests at once by default, 64 in this test's daemon; several callers
    may well exec into one container): 20 at once took 1.6 s, but with 50
    the container's runc shim stalled them all and nearly every call failed
    after 30 s with containerd's bare ``context deadline exceeded`` (47 of
    50 here), although each runs ``echo``. Other containers were not
    slowed, so it is the shim that cannot take that many at once; a tenant
    can make every exec into its container fail. The runner now lets 16
    execs of a container run at once and queues the rest (within each
    request's deadline): the 50 answer in about 5 s."""
    await contd.run(ns, container(rootfs, netns_name))
    answers: dict[int, Any] = {}

    async def one(index: int) -> None:
        try:
            done = await contd.exec_output(ns, "c1", "sh", "-c", f"echo {index}", timeout=60)
            answers[index] = (done.exit_code, done.stdout)
        except CallError as exc:
            answers[index] = str(exc)

    started = time.monotonic()
    async with trio.open_nursery() as nursery:
        for index in range(50):
            nursery.start_soon(one, index)
    failed = {i: a for i, a in answers.items() if a != (0, f"{i}\n".encode())}
    assert not failed, f"{len(failed)} of 50 failed after {time.monotonic() - started:.1f} s: {failed}"
    await contd.delete(ns, "c1")


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        # Values past what the wire's 64-bit integers hold: a TypeError from the codec.
        (("exec", "{ns}", "c1", "--timeout", "10000000000h", "--", "true"), 125, "--timeout"),
        (("logs", "{ns}", "c1", "--tail", "99999999999999999999999"), 2, "--tail"),
        (("update", "{ns}", "c1", "--cpu", "99999999999999999999999"), 2, "64 bits"),
        (("update", "{ns}", "c1", "--memory", "99999999999999999999999G"), 2, "64 bits"),
        # str.isdigit() says yes, int() says no: a ValueError.
        (("logs", "{ns}", "c1", "--tail", "²"), 2, "--tail"),
        # Local midnight of year 1 is before year 1 in UTC east of Greenwich.
        (("logs", "{ns}", "c1", "--since", "0001-01-01T00:00:00"), 2, "--since"),
    ],
)
async def test_contdctl_bad_numbers_are_usage_errors_not_tracebacks(
    daemon: Daemon, broker: str, ns: str, args: tuple[str, ...], code: int, words: str
) -> None:
    """contdctl sent these on and crashed with a Python traceback and exit
    code 1 (exec's 1 is even a process's exit code: a script cannot tell a
    failed command from contdctl's own failure); a bad command line is exit
    code 2 (exec: 125) with one line naming the flag."""
    got_code, _, err = await contdctl(
        broker, *(a.format(ns=ns) for a in args), check=False, env={"TZ": "Asia/Tokyo"}
    )
    assert TRACEBACK not in err, err
    assert got_code == code, err
    assert err.startswith("contdctl: ") and words in err, err


def _memory_limit(ns: str, cid: str) -> int:
    return int(cgroup_value(ns, cid, "memory", "memory.limit_in_bytes", "memory.max"))


async def test_containerd_killed_mid_update_leaves_the_cgroup_and_the_record_agreeing(
    daemon_config: Config,
    private_containerd: services.ContainerdService,
    broker: str,
    netns_name: str,
    rootfs: Path,
) -> None:
    """Update changes the task's cgroup first, then the stored spec, and
    puts the old limits back on the task when the spec cannot be stored:
    "the two never differ". But when containerd dies between the two (here
    it is SIGKILLed the moment runc has written the new limit), the spec's
    update fails and so does the putting back (containerd is gone): the
    caller gets an error, Inspect says 64 MiB, and the container runs with
    96 MiB for good, since nothing looks again once containerd is back (a
    crash restart then quietly goes back to 64 MiB). A tenant's limit that
    the node's records do not show is a limit nobody accounts for.

    Fixed: when the task may have changed and the spec may not say so
    (``update_task`` lost containerd, or ``update_spec`` failed and the
    shielded put-back did too), the janitor, under the container's lock,
    applies the stored spec's limits to the task once containerd is back:
    idempotent, so right whatever Updates came since."""
    ns = f"t{uuid.uuid4().hex[:10]}"
    config = dataclasses.replace(daemon_config, containerd_socket=private_containerd.address)
    async with open_daemon(config), open_client(broker) as bus:
        contd = ContainerClient(bus, timeout=60)
        await contd.run(ns, container(rootfs, netns_name, memory=64 << 20))
        assert _memory_limit(ns, "c1") == 64 << 20

        def kill_once_applied() -> bool:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if _memory_limit(ns, "c1") == 96 << 20:
                    private_containerd.kill()
                    return True
            return False

        answer: list[str] = []

        async def update() -> None:
            try:
                await contd.update(ns, "c1", memory=96 << 20)
                answer.append("ok")
            except CallError as exc:
                answer.append(str(exc))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(update)
            killed = await trio.to_thread.run_sync(kill_once_applied)
        assert killed, "the cgroup never took the new limit"
        private_containerd.start_again()

        async def agree() -> bool:
            try:
                recorded = (await contd.inspect(ns, "c1")).memory
            except CallError:
                return False  # the daemon is still reconnecting
            return recorded == _memory_limit(ns, "c1")

        try:
            await wait_until(agree, timeout=30, interval=0.5)
        except trio.TooSlowError:
            recorded = (await contd.inspect(ns, "c1")).memory
            pytest.fail(
                f"Update answered {answer}; Inspect says memory {recorded}, "
                f"the cgroup {_memory_limit(ns, 'c1')}, 30 s after containerd is back"
            )
        finally:
            with trio.move_on_after(60):
                await contd.delete(ns, "c1")
