"""Memory per container of the log design: USS of each log shim, 20 containers.

Starts a private Redis and containerd and ``contd``, runs 20 busybox
containers that print a line every 0.1 s (half of them also forwarding
their output to a Redis channel), then reads the unique memory (USS:
Private_Clean + Private_Dirty of /proc/PID/smaps_rollup) of every
``contd-logshim`` process, next to the runc shim's own for scale.

Usage:

    .venv/bin/python tools/bench_memory.py [--containers 20]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio_asyncio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from contd_trio.module.client import ContainerClient  # noqa: E402
from contd_trio.module.types import Container, Logs, LogsRedis, NetworkInfo  # noqa: E402
from contd_trio.zbus.client import open_client  # noqa: E402
from tools import services  # noqa: E402

CHATTY = "sh -c 'i=0; while true; do i=$((i+1)); echo line $i; sleep 0.1; done'"


def uss_kib(pid: int) -> int:
    total = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            total += int(line.split()[1])
    return total


def pids_of(marker: bytes) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


async def run_containers(
    broker: str, rootfs: Path, netns: str, count: int, backend: services.RedisService
) -> None:
    async with open_client(broker) as bus:
        contd = ContainerClient(bus, timeout=120)
        await bus.status("container", timeout=30)
        for i in range(count):
            logs = [Logs("redis", LogsRedis(backend.channel_url(f"out{i}"), backend.channel_url(f"err{i}")))]
            await contd.run(
                "bench",
                Container(
                    name=f"m{i}",
                    rootfs=str(rootfs),
                    network=NetworkInfo(netns),
                    entrypoint=CHATTY,
                    logs=logs if i % 2 else None,
                ),
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-mem-") as tmp, services.network_namespace() as netns:
        run_dir = Path(tmp)
        rootfs = services.build_busybox_rootfs(run_dir / "rootfs")
        # In the containers' network namespace: the log shims reach backends from there.
        backend = services.start_redis(run_dir, name="backend", port=6379, netns=netns)
        try:
            with services.running_services(run_dir) as (redis_service, containerd):
                daemon = subprocess.Popen(
                    services.contd_command(
                        redis_service, containerd, run_dir / "root", "-log-level", "warning"
                    ),
                    cwd=ROOT,
                )
                try:
                    trio_asyncio.run(
                        run_containers, redis_service.url, rootfs, netns, args.containers, backend
                    )
                    time.sleep(3)  # let them write and forward for a while
                    # Only this run's: other suites on the machine have shims too.
                    ours = set(pids_of(str(run_dir).encode()))
                    shims = [p for p in pids_of(b"contd-logshim") if p in ours]
                    forwarding = set(pids_of(b"--stdout.0"))
                    runc_shims = services.shim_pids(containerd.address)
                    logshim = [uss_kib(p) for p in shims]
                    by_kind = {
                        "forwarding": [uss_kib(p) for p in shims if p in forwarding],
                        "file only": [uss_kib(p) for p in shims if p not in forwarding],
                    }
                    runc = [uss_kib(p) for p in runc_shims]
                    daemon_uss = uss_kib(daemon.pid)
                finally:
                    daemon.terminate()
                    daemon.wait(30)
                    services.reap_containerd(containerd.address)
        finally:
            backend.stop()
    print(f"{args.containers} containers, {len(shims)} log shims (half forwarding to Redis)")
    mean, most = statistics.mean(logshim) / 1024, max(logshim) / 1024
    print(f"contd-logshim USS: mean {mean:.2f} MiB, max {most:.2f} MiB")
    for kind, sizes in by_kind.items():
        if sizes:
            print(f"  {kind} ({len(sizes)}): mean {statistics.mean(sizes) / 1024:.2f} MiB")
    print(f"runc shim USS (for scale): mean {statistics.mean(runc) / 1024:.2f} MiB")
    print(f"contd itself: {daemon_uss / 1024:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
