"""Container log files: the log shim's rotation and Logs' reading across it."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contd_trio import logshim
from contd_trio.module.logfiles import rotated, tail_lines


def test_tail_lines_reaches_into_the_rotated_file(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    rotated(path).write_text("".join(f"old {i}\n" for i in range(5)))
    path.write_text("new 0\nnew 1\n")
    assert tail_lines(path, 1) == ["new 1\n"]
    assert tail_lines(path, 2) == ["new 0\n", "new 1\n"]
    assert tail_lines(path, 4) == ["old 3\n", "old 4\n", "new 0\n", "new 1\n"]
    assert len(tail_lines(path, 100)) == 7


def test_tail_lines_of_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    assert tail_lines(path, 10) == []
    rotated(path).write_text("only old\n")  # just rotated: the new file is not there yet
    assert tail_lines(path, 10) == ["only old\n"]


def test_tail_lines_reads_backwards_past_its_chunk(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    lines = [f"{i:06d} {'x' * 1000}\n" for i in range(300)]  # 300 kB: several 64 kB chunks
    path.write_text("".join(lines))
    assert tail_lines(path, 100) == lines[-100:]


# Text without line breaks of any kind: Logs splits lines as str.splitlines does.
LINE = st.text(st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp")), max_size=30)
LINES = st.lists(LINE.map(str.encode), max_size=60)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=LINES, max_bytes=st.integers(16, 300), cuts=st.lists(st.integers(0, 3000), max_size=40))
def test_rotation_keeps_whole_lines_in_order_however_output_is_chunked(
    tmp_path_factory: pytest.TempPathFactory, lines: list[bytes], max_bytes: int, cuts: list[int]
) -> None:
    path = tmp_path_factory.mktemp("rot") / "c.log"
    output = b"".join(line + b"\n" for line in lines)
    bounds = sorted({0, len(output), *(c for c in cuts if c < len(output))})
    logfile = logshim.LogFile(str(path), max_bytes=max_bytes)
    stream = logshim.Stream(3, [])
    for start, end in itertools.pairwise(bounds):
        stream.feed(output[start:end], logfile)
    stream.finish(logfile)
    logfile.close()

    old = rotated(path).read_bytes() if rotated(path).exists() else b""
    new = path.read_bytes()
    for content in (old, new):
        # Within the cap, unless the file holds one line longer than the cap alone.
        assert len(content) <= max_bytes or content.count(b"\n") == 1
    assert (old + new).endswith(b"\n") or not lines
    kept = (old + new).split(b"\n")[:-1]
    assert kept == lines[len(lines) - len(kept) :]  # whole lines, in order, the newest ones
    if lines:
        assert kept, "the newest line is always kept"
    # What Logs gives back is the end of the output, across both files.
    for count in {1, 3, len(kept)}:
        assert tail_lines(path, count) == [line.decode() + "\n" for line in kept][-count:]
