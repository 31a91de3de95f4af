"""tail_bytes: the last bytes of a log, across its rotation."""

from __future__ import annotations

from pathlib import Path

from contd_trio.module.logfiles import tail_bytes


def test_missing_is_empty(tmp_path: Path) -> None:
    assert tail_bytes(tmp_path / "x", 10) == (b"", False)


def test_short_is_whole(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"abc")
    assert tail_bytes(tmp_path / "x", 10) == (b"abc", False)


def test_across_rotation_the_last_bytes_are_kept(tmp_path: Path) -> None:
    (tmp_path / "x.1").write_bytes(b"0123456789")
    (tmp_path / "x").write_bytes(b"abcd")
    assert tail_bytes(tmp_path / "x", 8) == (b"456789abcd"[-8:], True)
    assert tail_bytes(tmp_path / "x", 14) == (b"0123456789abcd", False)
