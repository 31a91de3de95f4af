"""What every part of the benchmark shares: figures, statistics, the
private services and a ``contd`` process started on them."""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tools import services

ROOT = Path(__file__).resolve().parent.parent.parent
#: A quiet container: it does nothing, so many of them load nothing.
IDLE = "sleep 1000000"


@dataclass
class Figure:
    """One row of the table: our figure, the reference's, and the target."""

    part: str
    name: str
    unit: str
    ours: float
    reference: float | None = None
    reference_name: str = ""
    target: str = ""
    #: Every run's value of ours (the figure is their median).
    runs: list[float] = field(default_factory=list)
    reference_runs: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.reference is None or not self.reference:
            return None
        return self.ours / self.reference


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def p50(values: Sequence[float]) -> float:
    return percentile(values, 0.5)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def repeated(repeat: int, measure: Callable[[], float]) -> list[float]:
    """``measure()`` ``repeat`` times."""
    return [measure() for _ in range(repeat)]


@dataclass
class Bench:
    """The private services and files of one part of the benchmark."""

    run_dir: Path
    rootfs: Path
    netns: str
    redis: services.RedisService
    containerd: services.ContainerdService


@contextlib.contextmanager
def bench_services(prefix: str) -> Iterator[Bench]:
    """A private Redis and containerd, a busybox rootfs and a network
    namespace; everything containerd runs is removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{prefix}-") as tmp, services.network_namespace() as netns:
        run_dir = Path(tmp)
        rootfs = services.build_busybox_rootfs(run_dir / "rootfs")
        with services.running_services(run_dir) as (redis_service, containerd):
            try:
                yield Bench(run_dir, rootfs, netns, redis_service, containerd)
            finally:
                services.reap_containerd(containerd.address)


def start_contd(bench: Bench, *flags: str, log: Path | None = None) -> subprocess.Popen[bytes]:
    """``contd`` on the bench's services (its stderr to ``log`` when given)."""
    command = services.contd_command(bench.redis, bench.containerd, bench.run_dir / "root", *flags)
    stderr = open(log, "ab") if log is not None else None  # noqa: SIM115 - the child keeps it
    try:
        return subprocess.Popen(command, cwd=ROOT, stderr=stderr)
    finally:
        if stderr is not None:
            stderr.close()


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def uss_kib(pid: int) -> int:
    """Unique memory: Private_Clean + Private_Dirty."""
    total = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            total += int(line.split()[1])
    return total


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:g} s")
        time.sleep(0.01)


def machine() -> dict[str, str]:
    ctr_version = subprocess.run(
        [services.CTR, "--version"], capture_output=True, text=True, check=False
    ).stdout.split()
    redis_version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=False
    ).stdout.split()
    return {
        "python": sys.version.split()[0],
        "cpus": str(os.cpu_count()),
        "containerd": ctr_version[-1] if ctr_version else "?",
        "redis": next((w.split("=")[1] for w in redis_version if w.startswith("v=")), "?"),
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
