"""A request's strings: not valid UTF-8, or too large, is refused by name."""

from __future__ import annotations

import dataclasses

import pytest

from contd_trio.errors import InvalidArgument
from contd_trio.module.types import Container, Logs, LogsRedis, MountInfo, NetworkInfo, Stats
from contd_trio.module.untrusted import MAX_BACKENDS, MAX_ITEMS, MAX_TEXT_BYTES, check_args, check_container

BAD = b"\xff\xfe".decode("utf-8", "surrogateescape")  # what our decoder makes of Go's bytes

FULL = Container(
    name="c",
    rootfs="/r",
    env=["A=1", "B=2"],
    working_dir="/w",
    network=NetworkInfo("n"),
    mounts=[MountInfo("/s", "/t", "bind", ["ro"])],
    entrypoint="sh",
    logs=[Logs("redis", LogsRedis("redis://h/o", "redis://h/e"))],
    stats=[Stats("redis", "redis://h/s")],
    rootfs_propagation="private",
)


def _with(field: str, value: str) -> Container:
    c = dataclasses.replace(
        FULL,
        env=list(FULL.env or ()),
        mounts=[dataclasses.replace(m, options=list(m.options or ())) for m in FULL.mounts or ()],
        logs=[dataclasses.replace(entry, data=dataclasses.replace(entry.data)) for entry in FULL.logs or ()],
        stats=[dataclasses.replace(s) for s in FULL.stats or ()],
        network=dataclasses.replace(FULL.network),
    )
    setters = {
        "Name": lambda: setattr(c, "name", value),
        "RootFS": lambda: setattr(c, "rootfs", value),
        "Env[1]": lambda: c.env.__setitem__(1, value),  # type: ignore[union-attr]
        "WorkingDir": lambda: setattr(c, "working_dir", value),
        "Network.Namespace": lambda: setattr(c.network, "namespace", value),
        "Mounts[0].Source": lambda: setattr(c.mounts[0], "source", value),  # type: ignore[index]
        "Mounts[0].Target": lambda: setattr(c.mounts[0], "target", value),  # type: ignore[index]
        "Mounts[0].Type": lambda: setattr(c.mounts[0], "type", value),  # type: ignore[index]
        "Mounts[0].Options[0]": lambda: c.mounts[0].options.__setitem__(0, value),  # type: ignore[index,union-attr]
        "Entrypoint": lambda: setattr(c, "entrypoint", value),
        "Logs[0].Type": lambda: setattr(c.logs[0], "type", value),  # type: ignore[index]
        "Logs[0].Data.Stdout": lambda: setattr(c.logs[0].data, "stdout", value),  # type: ignore[index]
        "Logs[0].Data.Stderr": lambda: setattr(c.logs[0].data, "stderr", value),  # type: ignore[index]
        "Stats[0].Type": lambda: setattr(c.stats[0], "type", value),  # type: ignore[index]
        "Stats[0].Endpoint": lambda: setattr(c.stats[0], "endpoint", value),  # type: ignore[index]
        "RootFsPropagation": lambda: setattr(c, "rootfs_propagation", value),
    }
    setters[field]()
    return c


FIELDS = [
    "Name",
    "RootFS",
    "Env[1]",
    "WorkingDir",
    "Network.Namespace",
    "Mounts[0].Source",
    "Mounts[0].Target",
    "Mounts[0].Type",
    "Mounts[0].Options[0]",
    "Entrypoint",
    "Logs[0].Type",
    "Logs[0].Data.Stdout",
    "Logs[0].Data.Stderr",
    "Stats[0].Type",
    "Stats[0].Endpoint",
    "RootFsPropagation",
]


def test_a_valid_request_passes() -> None:
    check_container(FULL)


@pytest.mark.parametrize("field", FIELDS)
def test_invalid_utf8_is_named_by_its_go_field(field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        check_container(_with(field, "x" + BAD))
    assert str(caught.value) == f"{field}: not valid UTF-8"


@pytest.mark.parametrize("field", FIELDS)
def test_a_huge_string_is_refused_without_being_echoed(field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        check_container(_with(field, "x" * (MAX_TEXT_BYTES + 1)))
    assert str(caught.value).startswith(f"{field}: ")
    assert len(str(caught.value)) < 200


def test_too_many_entries() -> None:
    with pytest.raises(InvalidArgument, match=r"^Env: 4097 entries"):
        check_container(dataclasses.replace(FULL, env=["A=1"] * (MAX_ITEMS + 1)))


def test_exec_args() -> None:
    check_args("args", ["sh", "-c", "true"])
    with pytest.raises(InvalidArgument, match=r"^args\[1\]: not valid UTF-8$"):
        check_args("args", ["echo", BAD])
    with pytest.raises(InvalidArgument, match=r"^args\[0\]: contains a NUL character$"):
        check_args("args", ["ec\0ho"])


@pytest.mark.parametrize("field", ["Logs", "Stats"])
def test_backends_are_bounded_per_container(field: str) -> None:
    entries = {"Logs": FULL.logs, "Stats": FULL.stats}[field]
    assert entries
    at_most = dataclasses.replace(FULL, **{field.lower(): entries * MAX_BACKENDS})
    check_container(at_most)
    with pytest.raises(InvalidArgument) as caught:
        check_container(dataclasses.replace(FULL, **{field.lower(): entries * 1000}))
    assert str(caught.value) == f"{field}: 1000 entries, at most {MAX_BACKENDS}"
