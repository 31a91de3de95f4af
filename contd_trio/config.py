"""The daemon's settings: one frozen value, parsed and checked once.

Every timeout the daemon uses lives here, next to the zbus or containerd
figure it mirrors, so none contradicts another.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BROKER = "unix:///var/run/redis.sock"
DEFAULT_ROOT = Path("/var/cache/modules/containerd")
DEFAULT_CONTAINERD_SOCKET = Path("/run/containerd/containerd.sock")
DEFAULT_CONTAINERD_ROOT = Path("/var/lib/containerd")
DEFAULT_CONTAINERD_STATE = Path("/run/containerd")
DEFAULT_COREX = Path("/usr/bin/corex")

# ASCII digits only: float() and \d would also take "inf", "1e3", "1_000" and
# other scripts' digits, none of which Go's ParseDuration reads.
_SECONDS = re.compile(r"(\d+(?:\.\d*)?|\.\d+)", re.ASCII)
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)", re.ASCII)
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds from ``300`` (plain seconds) or a Go duration (``5m``, ``1m30s``,
    ``250ms``).

    Raises:
        ValueError: neither form, or negative.
    """
    text = text.strip()
    if text.startswith("-") and _SECONDS.fullmatch(text[1:]):
        raise ValueError(f"invalid duration {text!r}: must not be negative")
    seconds = float(text) if _SECONDS.fullmatch(text) else _go_duration(text)
    if seconds == float("inf"):
        raise ValueError(f"invalid duration {text!r}: too long")
    return seconds


def _go_duration(text: str) -> float:
    position = 0
    total = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position != len(text) or not text:
        raise ValueError(
            f"invalid duration {text!r}: use seconds (300) or a Go duration (5m, 30s, 1m30s, 250ms)"
        )
    return total


# A unit letter may be followed by "B" or "iB"; "B" alone means bytes.
_SIZE = re.compile(r"(\d+)\s*(?:([KMGT])(?:i?B)?|B)?", re.IGNORECASE | re.ASCII)
_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """Bytes from ``268435456``, ``256M``, ``256MiB`` or ``1G`` (binary units).

    Raises:
        ValueError: not a size.
    """
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise ValueError(f"invalid size {text!r}: use bytes (268435456) or a unit (256M, 1G)")
    return int(match.group(1)) * _SIZE_UNITS[(match.group(2) or "").upper()]


@dataclass(frozen=True)
class Config:
    """What ``contd`` was told on its command line.

    Attributes:
        broker: the Redis that zbus runs on.
        root: the daemon's own directory (container logs live under ``logs/``).
        containerd_socket: containerd's gRPC socket.
        containerd_root: containerd's ``root`` directory (its config's
            ``root``), which no container may see.
        containerd_state: containerd's ``state`` directory, likewise.
        workers: requests served at once (Go's contd served one; 16 here).
        request_timeout: the deadline of each request, in seconds (zbus has
            none; a Go client waits as long as its context allows).
        corex: the binary an interactive container runs as PID 1.
        shutdown_grace: how long in-flight requests may finish after SIGTERM.
        restart_delay: pause before a crashed container is started again (Go: 2 s).
        restart_limit: crashes within ``restart_window`` after which a container
            is given up (Go: 4 within a 1-minute cache; here 3 within 60 s).
        restart_window: see ``restart_limit``.
        start_settle: how long a freshly started entrypoint must stay up
            before Run reports success.
        reconcile_interval: how often every managed container is checked
            against what it should be, besides at start-up and after
            containerd restarted (catches what events missed).
        log_max_bytes: the size at which a container's log file is rotated.
        log_level: the daemon's own log level.
        pids_limit: the most tasks (processes and threads) each container
            may have, 0 for no limit (a fork bomb must not take every pid of
            the node).
    """

    broker: str = DEFAULT_BROKER
    root: Path = DEFAULT_ROOT
    containerd_socket: Path = DEFAULT_CONTAINERD_SOCKET
    containerd_root: Path = DEFAULT_CONTAINERD_ROOT
    containerd_state: Path = DEFAULT_CONTAINERD_STATE
    workers: int = 16
    request_timeout: float = 300.0
    corex: Path = DEFAULT_COREX
    shutdown_grace: float = 10.0
    restart_delay: float = 2.0
    restart_limit: int = 3
    restart_window: float = 60.0
    start_settle: float = 0.25
    reconcile_interval: float = 60.0
    log_max_bytes: int = 10 * 1024 * 1024
    log_level: str = "info"
    pids_limit: int = 4096
