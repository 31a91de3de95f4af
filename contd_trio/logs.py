"""One line per event on stderr: ``LEVEL time message key=value ...``.

Call sites pass context as keyword arguments to :func:`event`; the formatter
puts them after the message, quoting values that contain spaces. Expected
errors are logged without tracebacks; only bugs carry one.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from .text import printable

_CONTEXT = "contd_context"
#: A context value longer than this is cut (an error quoting output may be long;
#: a caller's 1 MB name must not make a 1 MB line).
_VALUE_LIMIT = 1000


def event(logger: logging.Logger, level: int, message: str, /, **context: Any) -> None:
    """Log one event with key=value context (skipped cheaply when disabled)."""
    if logger.isEnabledFor(level):
        logger.log(level, message, extra={_CONTEXT: context})


def _render(value: Any) -> str:
    # Context often holds a caller's values: shortened, invalid UTF-8 escaped.
    text = f"{value:.6g}" if isinstance(value, float) else printable(value, _VALUE_LIMIT)
    if not text or any(c in text for c in ' ="\n'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = f"{record.levelname:<7} {stamp}.{int(record.msecs):03d}Z {record.getMessage()}"
        context = getattr(record, _CONTEXT, None)
        if context:
            line += " " + " ".join(f"{k}={_render(v)}" for k, v in context.items() if v is not None)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure(level: str | int = "info") -> None:
    """Send the daemon's logs to stderr, one line per event."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper() if isinstance(level, str) else level)
    # Libraries below us are chatty at info and would drown the daemon's own lines.
    for name in ("grpclib", "asyncio", "trio_asyncio", "pyroute2"):
        logging.getLogger(name).setLevel(max(root.level, logging.WARNING))
