"""Helpers shared by the integration tests."""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
from pathlib import Path

import msgpack
import trio

#: The end of a container script that waits until SIGTERM and then leaves.
#: A shell (or sleep) as PID 1 ignores SIGTERM unless it traps it, and every
#: Delete would then wait out the container's shutdown timeout.
UNTIL_TERM = 'trap "exit 0" TERM; sleep 1000 & wait'
#: An entrypoint of two processes that stay as they are (sh and its sleep,
#: nothing forked meanwhile) and leave at once on SIGTERM.
STEADY = f"sh -c '{UNTIL_TERM}'"


async def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05) -> None:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` (sync or async) until true; fail after ``timeout``."""
    with trio.fail_after(timeout):
        while True:
            result = predicate()
            if hasattr(result, "__await__"):
                result = await result
            if result:
                return
            await trio.sleep(interval)


def cgroup_value(namespace: str, container_id: str, controller: str, v1_file: str, v2_file: str) -> str:
    """A cgroup setting of a container, on cgroup v1 or v2 hosts."""
    v1 = Path("/sys/fs/cgroup") / controller / namespace / container_id / v1_file
    if v1.exists():
        return v1.read_text().strip()
    return (Path("/sys/fs/cgroup") / namespace / container_id / v2_file).read_text().strip()


def go_pack(value: object) -> bytes:
    """msgpack as Go's vmihailenco/msgpack v4 writes it: every integer as
    int64 (0xd3), or uint64 (0xcf) past int64's range."""
    if isinstance(value, bool) or not isinstance(value, int | list | dict):
        return msgpack.packb(value, use_bin_type=True)
    if isinstance(value, int):
        return b"\xd3" + struct.pack(">q", value) if value < 2**63 else b"\xcf" + struct.pack(">Q", value)
    if isinstance(value, list):
        head = bytes([0x90 | len(value)]) if len(value) < 16 else b"\xdc" + struct.pack(">H", len(value))
        return head + b"".join(go_pack(v) for v in value)
    head = bytes([0x80 | len(value)]) if len(value) < 16 else b"\xde" + struct.pack(">H", len(value))
    return head + b"".join(go_pack(k) + go_pack(v) for k, v in value.items())


def start_log_shim(
    shim: Path, arguments: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[subprocess.Popen[bytes], int, int, int]:
    """Start the installed log shim as containerd's runc shim does: the
    container's stdout on fd 3, its stderr on fd 4, the ready pipe on fd 5,
    and nothing else past fd 2 (Go's ExtraFiles); its stderr piped. Returns
    the process and our ends of the three pipes (stdout and stderr to write,
    the ready pipe to read)."""
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    ready_read, ready_write = os.pipe()

    def fds_3_to_5() -> None:
        # Out of the way first: the pipes may themselves be fds 3 to 5.
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in (out_read, err_read, ready_write)]
        for source, target in zip(high, (3, 4, 5), strict=True):
            os.dup2(source, target)  # inheritable

    process = subprocess.Popen(
        [str(shim), *arguments],
        close_fds=True,
        pass_fds=(3, 4, 5),
        preexec_fn=fds_3_to_5,
        env=env,
        cwd=cwd,
        stderr=subprocess.PIPE,
    )
    for fd in (out_read, err_read, ready_write):
        os.close(fd)
    return process, out_write, err_write, ready_read
