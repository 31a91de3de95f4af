"""RESP: commands encoded as Redis reads them, replies decoded whole however
they are cut, and what an endpoint may not send refused early."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contd_trio.resp import INCOMPLETE, ErrorReply, ProtocolError, Reply, ReplyReader, encode_command


def encode_reply(reply: Reply, *, simple: bool = False) -> bytes:
    """The reference encoder of the tests (Redis's side of the wire)."""
    if reply is None:
        return b"$-1\r\n"
    if isinstance(reply, ErrorReply):
        return b"-" + reply.message + b"\r\n"
    if isinstance(reply, int):
        return b":%d\r\n" % reply
    if isinstance(reply, bytes):
        return b"+" + reply + b"\r\n" if simple else b"$%d\r\n%s\r\n" % (len(reply), reply)
    return b"*%d\r\n" % len(reply) + b"".join(encode_reply(item) for item in reply)


def read_all(reader: ReplyReader, chunks: list[bytes]) -> list[Reply]:
    replies = []
    for chunk in chunks:
        reader.feed(chunk)
        while (reply := reader.next_reply()) is not INCOMPLETE:
            replies.append(reply)
    return replies


def cut(data: bytes, points: list[int]) -> list[bytes]:
    edges = sorted({0, len(data), *(p % (len(data) + 1) for p in points)})
    return [data[a:b] for a, b in itertools.pairwise(edges)]


line_text = st.binary(max_size=40).filter(lambda b: b"\r" not in b and b"\n" not in b)
scalars = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.binary(max_size=100),
    line_text.map(ErrorReply),
)
replies = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5), max_leaves=30)


def test_a_command_is_an_array_of_bulk_strings() -> None:
    assert encode_command(b"PUBLISH", b"ch", b"a\r\nb") == (
        b"*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$4\r\na\r\nb\r\n"
    )
    assert encode_command() == b"*0\r\n"


def test_each_kind_of_reply() -> None:
    data = b":3\r\n:-12\r\n+OK\r\n-ERR no\r\n$3\r\na\r\n\r\n$-1\r\n*-1\r\n*0\r\n*2\r\n:1\r\n*1\r\n$0\r\n\r\n"
    assert read_all(ReplyReader(), [data]) == [
        3,
        -12,
        b"OK",
        ErrorReply(b"ERR no"),
        b"a\r\n",
        None,
        None,
        [],
        [1, [b""]],
    ]


@given(st.lists(replies, max_size=5), st.lists(st.integers(min_value=0), max_size=10))
def test_replies_come_back_whole_however_they_are_cut(sent: list[Reply], points: list[int]) -> None:
    data = b"".join(encode_reply(reply) for reply in sent)
    reader = ReplyReader(max_reply_bytes=1 << 20, max_depth=64)
    assert read_all(reader, cut(data, points)) == sent
    assert reader.buffered == 0


@given(st.lists(st.binary(max_size=50), max_size=6), st.lists(st.integers(min_value=0), max_size=6))
def test_a_command_reads_back_as_its_parts(parts: list[bytes], points: list[int]) -> None:
    assert read_all(ReplyReader(), cut(encode_command(*parts), points)) == [parts]


@given(line_text, st.lists(st.integers(min_value=0), max_size=4))
def test_simple_strings(text: bytes, points: list[int]) -> None:
    assert read_all(ReplyReader(), cut(encode_reply(text, simple=True), points)) == [text]


@given(replies)
def test_a_reply_cut_short_is_incomplete_never_an_error(reply: Reply) -> None:
    data = encode_reply(reply)
    for end in range(len(data)):
        reader = ReplyReader(max_reply_bytes=1 << 20, max_depth=64)
        reader.feed(data[:end])
        assert reader.next_reply() is INCOMPLETE


@given(st.binary(max_size=300), st.lists(st.integers(min_value=0), max_size=6))
def test_any_bytes_give_replies_or_protocol_error_within_the_bound(data: bytes, points: list[int]) -> None:
    reader = ReplyReader(max_reply_bytes=64, max_depth=3)
    try:
        for chunk in cut(data, points):
            reader.feed(chunk)
            while reader.next_reply() is not INCOMPLETE:
                pass
            assert reader.buffered <= 64
    except ProtocolError:
        pass


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"$1000000\r\n", "bulk string of 1000000 bytes"),
        (b"*1000000\r\n", "array of 1000000"),
        (b"+" + b"x" * 200, "longer than 100 bytes"),  # a line that never ends
        (b"*1\r\n" * 20, "nested more than 4 deep"),
        (b"*3\r\n$45\r\n" + b"x" * 45 + b"\r\n$45\r\n" + b"x" * 45 + b"\r\n", "longer than 100 bytes"),
        (b"$3\r\nabcd\r\n", "not ended by CRLF"),
        (b"$x\r\n", "not a number"),
        (b"$+3\r\nabc\r\n", "not a number"),
        (b"$ 3\r\nabc\r\n", "not a number"),
        (b"*-2\r\n", "not a number"),
        (b":1.5\r\n", "not a number"),
        (b":\r\n", "not a number"),
        (b":" + b"9" * 20 + b"\r\n", "not a number"),
        (b"\r\n", "empty line"),
        (b"_\r\n", "unknown reply type b'_'"),
        (b"%1\r\n", "unknown reply type"),
    ],
)
def test_what_is_refused(data: bytes, reason: str) -> None:
    reader = ReplyReader(max_reply_bytes=100, max_depth=4)
    reader.feed(data)
    with pytest.raises(ProtocolError, match=reason):
        while reader.next_reply() is not INCOMPLETE:
            pass


def test_an_endless_line_is_refused_once_past_the_bound_read_a_byte_at_a_time() -> None:
    reader = ReplyReader(max_reply_bytes=1000)
    reader.feed(b"+")
    with pytest.raises(ProtocolError, match="longer than 1000 bytes"):
        for _ in range(1001):
            reader.feed(b"x")
            assert reader.next_reply() is INCOMPLETE
    assert reader.buffered == 1001  # refused at the first byte past the bound


def test_the_bound_holds_per_reply_not_per_connection() -> None:
    reader = ReplyReader(max_reply_bytes=10)
    assert read_all(reader, [b":1234567\r\n" * 100]) == [1234567] * 100
