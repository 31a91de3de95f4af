"""The container module's values against Go-encoded bytes."""

from __future__ import annotations

import json
from pathlib import Path

import msgpack
import pytest

from contd_trio.module.types import (
    CONTAINER,
    Container,
    Logs,
    LogsRedis,
    MountInfo,
    NetworkInfo,
    Stats,
    TaskState,
)
from contd_trio.zbus import codec
from contd_trio.zbus.gotypes import ArgumentTypeError

GOLDEN = Path(__file__).resolve().parent.parent / "data" / "zbus-golden" / "go-container-v1.0.1.json"
VECTORS = {v["name"]: v for v in json.loads(GOLDEN.read_text())["vectors"]}

FULL = Container(
    name="c1",
    rootfs="/tmp/rootfs",
    env=["A=1"],
    working_dir="/tmp",
    network=NetworkInfo("n1"),
    mounts=[MountInfo("/data", "/mnt")],
    entrypoint="/bin/sleep 100",
    interactive=False,
    cpu=1,
    memory=268435456,
    logs=[Logs("redis", LogsRedis("redis://127.0.0.1:6379/out", "redis://127.0.0.1:6379/err"))],
    stats=[Stats("redis", "redis://127.0.0.1:6379/stats")],
    elevated=True,
    created_at=msgpack.Timestamp(1700000000, 123456789),
    rootfs_propagation="rshared",
    shutdown_timeout_ns=5_000_000_000,
)


def test_go_full_container_decodes_field_for_field() -> None:
    raw = bytes.fromhex(
        VECTORS["a Go value: Container{every field set}, as Inspect's Output.Data would carry it"]["hex"]
    )
    assert CONTAINER.decode(codec.unpack(raw)) == FULL


def test_our_full_container_is_the_go_map() -> None:
    raw = bytes.fromhex(
        VECTORS["a Go value: Container{every field set}, as Inspect's Output.Data would carry it"]["hex"]
    )
    assert codec.unpack(codec.pack(FULL)) == codec.unpack(raw)


def test_go_zero_container() -> None:
    raw = bytes.fromhex(VECTORS["a Go value: Container{} (zero value)"]["hex"])
    assert CONTAINER.decode(codec.unpack(raw)) == Container()
    assert codec.unpack(codec.pack(Container())) == codec.unpack(raw)


def test_run_requests_from_go() -> None:
    for name in (
        'request Run("ns1", Container{minimal 0-OS fields})',
        'request Run("ns1", Container{every field set})',
    ):
        request = codec.decode_request(bytes.fromhex(VECTORS[name]["hex"]))
        assert codec.unpack(request.inputs[0]) == "ns1"
        container = CONTAINER.decode(codec.unpack(request.inputs[1]))
        assert (
            container.name == "c1"
            and container.memory == 268435456
            and container.shutdown_timeout_ns == 5 * 10**9
        )
        assert codec.unpack(codec.pack(container)) == codec.unpack(request.inputs[1])


def test_inspect_extras_are_extra_keys() -> None:
    value = codec.unpack(codec.pack(Container(name="c", task=TaskState(status="running", pid=42))))
    assert value["Status"] == "running" and value["Pid"] == 42 and value["Restarts"] == 0
    assert CONTAINER.decode(value) == Container(name="c")  # as a Go decoder: extras ignored


def test_seed_mount_type_and_options() -> None:
    mount = MountInfo("/a", "/b", "tmpfs", ["size=1m"])
    assert MountInfo.from_go(codec.unpack(codec.pack(mount))) == mount
    assert codec.unpack(codec.pack(MountInfo("/a", "/b"))) == {"Source": "/a", "Target": "/b"}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"CPU": "two"}, "CPU: expecting uint got string"),
        ({"Memory": -1}, "Memory: expecting uint64 got -1"),
        ({"Mounts": [{"Source": 3}]}, r"Mounts\[0\].Source: expecting string got int"),
        ({"Network": "n1"}, "Network: expecting pkg.NetworkInfo got string"),
        ({"Env": "A=1"}, r"Env: expecting \[\]string got string"),
        ("c1", "expecting pkg.Container got string"),
    ],
)
def test_bad_fields_are_named(value: object, message: str) -> None:
    with pytest.raises(ArgumentTypeError, match=message):
        CONTAINER.decode(value)
