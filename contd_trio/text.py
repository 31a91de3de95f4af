"""How the daemon writes values it was given into errors and log lines.

Every value in a request is untrusted: a 1 MB name must not come back as a
1 MB error, and a string with invalid UTF-8 (Go strings carry any bytes)
must not break the line it is written into. :func:`quote` shortens and
escapes; :func:`format_duration` writes seconds as Go writes a
``time.Duration``, so an Exec timeout of 1 ns reads ``1ns``.
"""

from __future__ import annotations

import math

#: How many characters of a caller's value an error or a log line quotes.
QUOTE_LIMIT = 100
_ELLIPSIS = "…"


def shorten(text: str, limit: int = QUOTE_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, an ellipsis marking the cut."""
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)] + _ELLIPSIS


def shorten_front(text: str, limit: int) -> str:
    """``text`` cut to its last ``limit`` characters, an ellipsis marking
    the cut: the end of a process's output, where it says how it ended."""
    if len(text) <= limit:
        return text
    return _ELLIPSIS + text[len(text) - max(limit - 1, 0) :]


def shorten_middle(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters in its middle: the head and the
    tail (where a message usually says why) are kept."""
    if len(text) <= limit:
        return text
    head = (limit - 1) * 2 // 3
    return text[:head] + _ELLIPSIS + text[len(text) - (limit - 1 - head) :]


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """A caller's value as errors show it: quoted like ``repr`` (so control
    characters and invalid UTF-8 appear as escapes), and at most ``limit``
    characters of it."""
    text = value if isinstance(value, str) else str(value)
    return repr(shorten(text, limit))


def printable(value: object, limit: int = QUOTE_LIMIT * 2) -> str:
    """A value for a log line: shortened, with bytes that are not valid
    UTF-8 written as ``\\xNN`` escapes instead of breaking the line."""
    text = value if isinstance(value, str) else str(value)
    text = shorten(text, limit)
    try:
        # Bytes that arrived as invalid UTF-8 were kept as surrogate escapes.
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def format_duration(seconds: float) -> str:
    """Seconds as Go prints a ``time.Duration``: ``1ns``, ``1.5µs``,
    ``250ms``, ``2s``, ``1m30s``, ``2h0m0s``."""
    if math.isinf(seconds) or math.isnan(seconds):
        return str(seconds)
    nanos = round(seconds * 1e9)
    if nanos == 0:
        return "0s"
    sign = "-" if nanos < 0 else ""
    nanos = abs(nanos)
    if nanos < 1_000:
        return f"{sign}{nanos}ns"
    if nanos < 1_000_000:
        return f"{sign}{_trim(nanos / 1e3)}µs"
    if nanos < 1_000_000_000:
        return f"{sign}{_trim(nanos / 1e6)}ms"
    total = nanos / 1e9
    if total < 60:
        return f"{sign}{_trim(total)}s"
    hours, rest = divmod(nanos, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    secs = _trim(rest / 1e9)
    if hours:
        return f"{sign}{hours}h{minutes}m{secs}s"
    return f"{sign}{minutes}m{secs}s"


def _trim(number: float) -> str:
    text = f"{number:.9f}".rstrip("0").rstrip(".")
    return text or "0"
