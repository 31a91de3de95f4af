"""Where exec output lives on disk, what tells the daemon's exec processes
from others, and how a refusing disk is worded."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from google.protobuf import any_pb2

from contd_trio._proto.containerd.runc.options import oci_pb2
from contd_trio.containerd.client import _exec_id_of
from contd_trio.errors import StorageError
from contd_trio.module.disk import prepare_files, remove_directory_if_empty, remove_files, storage_error
from contd_trio.module.exec_outputs import ExecOutputs, is_ours
from contd_trio.module.paths import Paths

HEX = "0123456789ab"


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_each_container_has_its_own_exec_directory(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    assert paths.exec_output("ns", "a", f"contd-exec-{HEX}", "stdout") == (
        tmp_path / "exec" / "ns" / "a" / f"contd-exec-{HEX}.stdout"
    )
    mine = touch(paths.exec_output("ns", "a", f"contd-exec-{HEX}", "stderr"))
    touch(paths.exec_output("ns", "a.exec-b", f"contd-exec-{HEX}", "stdout"))
    assert paths.exec_outputs("ns", "a") == [mine]


def test_files_of_the_earlier_layout_are_found_for_their_container_only(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    flat = tmp_path / "exec" / "ns"
    mine = [touch(flat / f"a.exec-{HEX}.stdout"), touch(flat / f"a.exec-{HEX}.stderr.1")]
    # Another container's, whose name starts like one of a's files.
    touch(flat / f"a.exec-b.exec-{HEX}.stdout")
    touch(flat / f"a.exec-{HEX}.exec-{HEX}.stdout")
    # A container named like an old file of a's has a directory, not a file.
    touch(paths.exec_output("ns", f"a.exec-{HEX}.out", f"contd-exec-{HEX}", "stdout"))
    assert paths.exec_outputs("ns", "a") == sorted(mine)


def test_exec_files_on_disk_name_their_exec_process(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    touch(paths.exec_output("ns", "c1", f"contd-exec-{HEX}", "stdout"))
    touch(paths.exec_output("ns", "c1", f"contd-exec-{HEX}", "stderr.1"))
    touch(paths.exec_output("ns", "c2", "contd-exec-ffffffffffff", "stderr"))
    # Not the daemon's: another id, another file, an earlier layout's file, a stray directory.
    touch(paths.exec_output("ns", "c1", "exec-0123", "stdout"))
    touch(paths.exec_output("ns", "c1", f"contd-exec-{HEX}", "other"))
    touch(tmp_path / "exec" / "ns" / f"c1.exec-{HEX}.stdout")
    touch(tmp_path / "exec" / "not an id" / "c1" / f"contd-exec-{HEX}.stdout")
    assert ExecOutputs(paths).on_disk() == {
        ("ns", "c1", f"contd-exec-{HEX}"),
        ("ns", "c2", "contd-exec-ffffffffffff"),
    }
    assert ExecOutputs(Paths(tmp_path / "nothing")).on_disk() == set()


def test_only_the_daemons_exec_ids_are_its_own() -> None:
    assert is_ours(f"contd-exec-{HEX}")
    for other in ("", "exec-0123456789ab", f"contd-exec-{HEX}x", "contd-exec-XYZ", f"x-contd-exec-{HEX}"):
        assert not is_ours(other), other


def test_the_exec_id_of_a_listed_process() -> None:
    details = oci_pb2.ProcessDetails(exec_id=f"contd-exec-{HEX}").SerializeToString()
    assert _exec_id_of(any_pb2.Any(type_url="containerd.runc.v1.ProcessDetails", value=details)) == (
        f"contd-exec-{HEX}"
    )
    assert _exec_id_of(any_pb2.Any()) == ""  # the init process and its children
    assert _exec_id_of(any_pb2.Any(type_url="other.Details", value=details)) == ""
    assert _exec_id_of(any_pb2.Any(type_url="containerd.runc.v1.ProcessDetails", value=b"\xff")) == ""


def test_a_refusing_disk_is_a_storage_error_naming_path_and_reason(tmp_path: Path) -> None:
    blocker = touch(tmp_path / "logs")  # a file where a directory should be
    with pytest.raises(StorageError) as refused:
        prepare_files("write the log of c1", blocker / "ns" / "c1.log")
    assert str(refused.value) == f"cannot write the log of c1: {blocker / 'ns'}: Not a directory"
    error = storage_error("do it", OSError(errno.EROFS, "Read-only file system", "/r/x"))
    assert str(error) == "cannot do it: /r/x: Read-only file system"
    assert str(storage_error("do it", OSError("no path"))) == "cannot do it: no path"


def test_removal_goes_as_far_as_the_disk_lets(tmp_path: Path) -> None:
    directory = tmp_path / "d"
    present = touch(directory / "f")
    refused = remove_files([present, directory / "missing", tmp_path / "d"])
    assert not present.exists()
    assert [e.filename for e in refused] == [str(directory)]  # a directory is not unlinked
    touch(directory / "g")
    assert remove_directory_if_empty(directory) == []  # not empty: kept
    assert directory.exists()
    (directory / "g").unlink()
    assert remove_directory_if_empty(directory) == []
    assert remove_directory_if_empty(directory) == []  # already gone
    assert not directory.exists()
