"""RESP, Redis's wire format (version 2), sans I/O: commands out, replies in.

Pure logic on bytes; whoever owns the socket feeds what it received to a
:class:`ReplyReader` and asks it for replies. The replies may come from an
endpoint a tenant named, so the reader trusts none of them: a reply takes at
most ``max_reply_bytes`` from its first byte to its last and nests arrays at
most ``max_depth`` deep, and anything else is refused with
:class:`ProtocolError` as soon as it can be told (a bulk string announced
longer than the bound is refused at its header, not once it has arrived). It
never holds more than the bound plus one chunk fed (asked for replies after
each chunk), and does not scan a line again as it trickles in.

Replies as values: an integer is ``int``, a simple or bulk string ``bytes``,
a null ``None``, an array ``list``, an error :class:`ErrorReply`. RESP3's
types are refused: a client that never says ``HELLO 3`` gets none.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

#: Redis's own bound on a bulk string's length is 512 MB; ours is the caller's.
MAX_REPLY_BYTES = 64 * 1024
MAX_DEPTH = 8
#: A signed 64-bit integer has at most 19 digits.
_MAX_DIGITS = 19


class ProtocolError(Exception):
    """The bytes received are not a RESP reply this reader takes (the reason)."""


@dataclass(frozen=True)
class ErrorReply:
    """A RESP error (``-ERR ...``): the command was refused."""

    message: bytes


Reply: TypeAlias = int | bytes | ErrorReply | list["Reply"] | None


class Incomplete(enum.Enum):
    """No whole reply yet: feed more bytes."""

    INCOMPLETE = "incomplete"


INCOMPLETE = Incomplete.INCOMPLETE


def encode_command(*parts: bytes) -> bytes:
    """A command as Redis reads it: an array of bulk strings."""
    chunks = [b"*%d\r\n" % len(parts)]
    for part in parts:
        chunks.append(b"$%d\r\n" % len(part))
        chunks.append(part)
        chunks.append(b"\r\n")
    return b"".join(chunks)


@dataclass
class _OpenArray:
    count: int
    items: list[Reply] = field(default_factory=list)


@dataclass(frozen=True)
class _ArrayHeader:
    count: int


class ReplyReader:
    """Replies out of the bytes of one connection, in order.

    After a :class:`ProtocolError` the connection is out of step: drop it and
    start a new reader with the next connection.
    """

    def __init__(self, max_reply_bytes: int = MAX_REPLY_BYTES, max_depth: int = MAX_DEPTH) -> None:
        self.max_reply_bytes = max_reply_bytes
        self.max_depth = max_depth
        # The reply being read starts at the buffer's first byte.
        self._buffer = bytearray()
        self._pos = 0  # its first byte not yet read
        self._scanned = 0  # where the search for the current line's end resumes
        self._open: list[_OpenArray] = []

    @property
    def buffered(self) -> int:
        """Bytes held: fed and not yet returned as a reply."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray) -> None:
        self._buffer += data

    def next_reply(self) -> Reply | Literal[Incomplete.INCOMPLETE]:
        """The next whole reply, or INCOMPLETE.

        Raises:
            ProtocolError: not RESP, or past a bound (the reason).
        """
        while True:
            token = self._next_token()
            if token is INCOMPLETE:
                if len(self._buffer) > self.max_reply_bytes:
                    raise ProtocolError(f"a reply longer than {self.max_reply_bytes} bytes")
                return INCOMPLETE
            if self._pos > self.max_reply_bytes:
                raise ProtocolError(f"a reply longer than {self.max_reply_bytes} bytes")
            value: Reply
            if isinstance(token, _ArrayHeader):
                if token.count > 0:
                    if len(self._open) >= self.max_depth:
                        raise ProtocolError(f"arrays nested more than {self.max_depth} deep")
                    self._open.append(_OpenArray(token.count))
                    continue
                value = []
            else:
                value = token
            while self._open:
                innermost = self._open[-1]
                innermost.items.append(value)
                if len(innermost.items) < innermost.count:
                    break
                self._open.pop()
                value = innermost.items
            else:  # no array left open: the reply is whole
                del self._buffer[: self._pos]
                self._pos = self._scanned = 0
                return value

    def _next_token(self) -> Reply | _ArrayHeader | Literal[Incomplete.INCOMPLETE]:
        line_end = self._buffer.find(b"\r\n", max(self._scanned, self._pos))
        if line_end < 0:
            # A CR may be the last byte so far: look at it again with the next chunk.
            self._scanned = max(len(self._buffer) - 1, self._pos)
            return INCOMPLETE
        if line_end == self._pos:
            raise ProtocolError("an empty line where a reply was expected")
        kind = bytes(self._buffer[self._pos : self._pos + 1])
        text = bytes(self._buffer[self._pos + 1 : line_end])
        after = line_end + 2
        if kind == b"$":
            length = _length(text, "bulk string")
            if length < 0:
                self._consume(after)
                return None
            if length > self.max_reply_bytes:
                raise ProtocolError(f"a bulk string of {length} bytes, more than {self.max_reply_bytes}")
            end = after + length
            if len(self._buffer) < end + 2:
                self._scanned = line_end  # the header is found again at once
                return INCOMPLETE
            if self._buffer[end : end + 2] != b"\r\n":
                raise ProtocolError("a bulk string not ended by CRLF where its length says")
            value = bytes(self._buffer[after:end])
            self._consume(end + 2)
            return value
        self._consume(after)
        if kind == b"+":
            return text
        if kind == b"-":
            return ErrorReply(text)
        if kind == b":":
            return _integer(text)
        if kind == b"*":
            count = _length(text, "array")
            if count < 0:
                return None
            if count > self.max_reply_bytes:  # each element takes 3 bytes at least
                raise ProtocolError(f"an array of {count} elements, more than a reply may hold")
            return _ArrayHeader(count)
        raise ProtocolError(f"unknown reply type {kind!r}")

    def _consume(self, end: int) -> None:
        self._pos = self._scanned = end


def _length(text: bytes, what: str) -> int:
    """A bulk string's or array's length: digits, or -1 for a null."""
    if text == b"-1":
        return -1
    if not text.isdigit() or len(text) > _MAX_DIGITS:  # bytes.isdigit: ASCII digits only
        raise ProtocolError(f"{what} length {text[:32]!r} is not a number")
    return int(text)


def _integer(text: bytes) -> int:
    digits = text[1:] if text.startswith(b"-") else text
    if not digits.isdigit() or len(digits) > _MAX_DIGITS:
        raise ProtocolError(f"integer {text[:32]!r} is not a number")
    return int(text)
