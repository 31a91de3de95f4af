"""Containers made by an earlier daemon: their specs, as it wrote them
(``tests/data/legacy-specs``), read as it read them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from contd_trio.containerd.spec import read_spec
from contd_trio.module.types import Container, Logs, LogsRedis, MountInfo, NetworkInfo, Stats

LEGACY_SPECS = Path(__file__).resolve().parents[1] / "data" / "legacy-specs"
PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: What that daemon's Inspect reported for each (name and creation time come
#: from containerd's record, not the spec).
LEGACY_CONTAINERS = {
    "web": Container(
        rootfs="/var/cache/modules/flistd/mountpoint/web",
        env=[PATH, "PORT=8080", "GREETING=héllo wörld"],
        working_dir="/srv",
        network=NetworkInfo("ndmz-web"),
        mounts=[
            MountInfo("/var/cache/modules/storaged/volumes/web-data", "/data", "bind", ["rbind"]),
            MountInfo("/var/cache/modules/storaged/volumes/web-conf", "/etc/web", "bind", ["rbind", "ro"]),
            MountInfo("tmpfs", "/scratch", "tmpfs", ["size=64m", "mode=1777"]),
        ],
        entrypoint="/bin/server --port 8080 --motd 'hello there'",
        interactive=False,
        cpu=2,
        memory=512 << 20,
        logs=[
            Logs("redis", LogsRedis("redis://10.0.0.5:6379/web-stdout", "redis://10.0.0.5:6379/web-stderr"))
        ],
        stats=[Stats("redis", "redis://10.0.0.5:6379/web-stats")],
        elevated=False,
        rootfs_propagation="rslave",
        shutdown_timeout_ns=10_000_000_000,
    ),
    "shell": Container(
        rootfs="/var/cache/modules/flistd/mountpoint/shell",
        env=[PATH],
        working_dir="",
        network=NetworkInfo("ndmz-shell"),
        mounts=[],
        entrypoint="/bin/sh",
        interactive=True,
        cpu=1,
        memory=256 << 20,
        logs=[],
        stats=[],
        elevated=True,
        rootfs_propagation="",
        shutdown_timeout_ns=3_000_000_000,
    ),
}


def legacy_spec(name: str) -> dict[str, Any]:
    spec: dict[str, Any] = json.loads((LEGACY_SPECS / f"{name}.json").read_bytes())
    return spec


def test_the_legacy_specs_hold_the_legacy_annotations() -> None:
    for name in LEGACY_CONTAINERS:
        assert set(legacy_spec(name)["annotations"]) == {
            "shutdown_timeout",
            "contd.entrypoint",
            "contd.interactive",
            "contd.workdir",
            "contd.mounts",
            "contd.logs",
            "contd.stats",
        }


def test_a_legacy_spec_reads_as_it_did() -> None:
    for name, expected in LEGACY_CONTAINERS.items():
        assert read_spec(legacy_spec(name)) == expected, name
