"""Stats: a container's metrics read from a fake cgroup tree, v1 and v2."""

from __future__ import annotations

from pathlib import Path

import pytest

from contd_trio.module.stats import read_metrics

KEYS = {"timestamp", "memory_usage", "memory_limit", "memory_cache", "cpu_usage", "pids_current"}


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v1(tmp_path: Path) -> None:
    write(tmp_path / "memory/ns1/c1/memory.usage_in_bytes", "1048576\n")
    write(tmp_path / "memory/ns1/c1/memory.limit_in_bytes", "67108864\n")
    write(tmp_path / "memory/ns1/c1/memory.stat", "cache 10\nrss 20\ntotal_cache 4096\ntotal_rss 8192\n")
    write(tmp_path / "cpuacct/ns1/c1/cpuacct.usage", "123456789\n")
    write(tmp_path / "pids/ns1/c1/pids.current", "3\n")
    metrics = read_metrics("ns1", "c1", tmp_path)
    assert metrics is not None and set(metrics) == KEYS
    assert metrics["timestamp"] > 0
    assert {k: v for k, v in metrics.items() if k != "timestamp"} == {
        "memory_usage": 1048576,
        "memory_limit": 67108864,
        "memory_cache": 4096,
        "cpu_usage": 123456789,
        "pids_current": 3,
    }


def test_cgroup_v2(tmp_path: Path) -> None:
    write(tmp_path / "ns1/c1/cgroup.procs", "42\n43\n")
    write(tmp_path / "ns1/c1/memory.current", "2097152\n")
    write(tmp_path / "ns1/c1/memory.max", "268435456\n")
    write(tmp_path / "ns1/c1/memory.stat", "anon 100\nfile 8192\nkernel 5\n")
    write(tmp_path / "ns1/c1/cpu.stat", "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n")
    write(tmp_path / "ns1/c1/pids.current", "2\n")
    metrics = read_metrics("ns1", "c1", tmp_path)
    assert metrics is not None and set(metrics) == KEYS
    assert {k: v for k, v in metrics.items() if k != "timestamp"} == {
        "memory_usage": 2097152,
        "memory_limit": 268435456,
        "memory_cache": 8192,
        "cpu_usage": 1_500_000,  # usage_usec in ns
        "pids_current": 2,
    }


def test_cgroup_v2_without_a_limit_or_some_files(tmp_path: Path) -> None:
    write(tmp_path / "ns1/c1/cgroup.procs", "")
    write(tmp_path / "ns1/c1/memory.max", "max\n")
    write(tmp_path / "ns1/c1/memory.stat", "garbage line\nfile notanumber\n")
    metrics = read_metrics("ns1", "c1", tmp_path)
    assert metrics is not None
    assert {k: v for k, v in metrics.items() if k != "timestamp"} == dict.fromkeys(KEYS - {"timestamp"}, 0)


@pytest.mark.parametrize("layout", ["nothing", "other container", "v2 parent only"])
def test_no_cgroup_no_metrics(tmp_path: Path, layout: str) -> None:
    if layout == "other container":
        write(tmp_path / "ns1/c2/cgroup.procs", "1\n")
        write(tmp_path / "memory/ns1/c2/memory.usage_in_bytes", "1\n")
    elif layout == "v2 parent only":
        write(tmp_path / "ns1/cgroup.procs", "")
    assert read_metrics("ns1", "c1", tmp_path) is None
