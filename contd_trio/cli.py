"""``contd``: the container daemon, as zinit starts it.

Flags are accepted with one dash, as the 0-OS zinit unit writes them
(``contd -broker unix:///var/run/redis.sock -root /var/cache/modules/containerd``),
and with two.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from . import __version__, logs, runtime
from .config import (
    DEFAULT_BROKER,
    DEFAULT_CONTAINERD_ROOT,
    DEFAULT_CONTAINERD_SOCKET,
    DEFAULT_CONTAINERD_STATE,
    DEFAULT_COREX,
    DEFAULT_ROOT,
    Config,
    parse_duration,
    parse_size,
)
from .zbus.transport import parse_broker_url


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, as an operator reading zinit's log wants it; exit 2 as argparse does.
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_duration(text: str) -> float:
    seconds = _duration(text)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: must be positive")
    return seconds


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}: must be at least 1")
    return value


#: The kernel refuses a pids.max of 2^22 + 1 or more (PIDS_MAX): every Run would fail.
MAX_PIDS_LIMIT = 4 * 1024 * 1024


def _pids_limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if not 0 <= value <= MAX_PIDS_LIMIT:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}: from 0 (no limit) to {MAX_PIDS_LIMIT}")
    return value


def _size(text: str) -> int:
    try:
        value = parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value < 4096:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: at least 4096 bytes")
    return value


def _broker(text: str) -> str:
    try:
        parse_broker_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    defaults = Config()
    parser = _Parser(
        prog="contd",
        description="The container daemon: serves container@0.0.1 on zbus and drives containerd.",
        allow_abbrev=False,
    )

    def flag(name: str, **kwargs: object) -> None:
        parser.add_argument(f"-{name}", f"--{name}", **kwargs)  # type: ignore[arg-type]

    flag(
        "broker",
        metavar="URL",
        type=_broker,
        default=DEFAULT_BROKER,
        help="redis address, unix:///path or tcp://host:port (default %(default)s)",
    )
    flag(
        "root",
        metavar="DIR",
        type=Path,
        default=DEFAULT_ROOT,
        help="the daemon's own directory; container logs go to DIR/logs (default %(default)s)",
    )
    flag(
        "containerd",
        metavar="SOCKET",
        type=Path,
        default=DEFAULT_CONTAINERD_SOCKET,
        help="containerd's gRPC socket (default %(default)s)",
    )
    flag(
        "containerd-root",
        metavar="DIR",
        type=Path,
        default=DEFAULT_CONTAINERD_ROOT,
        help="containerd's root directory, kept out of every container (default %(default)s)",
    )
    flag(
        "containerd-state",
        metavar="DIR",
        type=Path,
        default=DEFAULT_CONTAINERD_STATE,
        help="containerd's state directory, kept out of every container (default %(default)s)",
    )
    flag(
        "workers",
        metavar="N",
        type=_positive_int,
        default=defaults.workers,
        help="requests served at once (default %(default)s)",
    )
    flag(
        "timeout",
        metavar="DURATION",
        type=_positive_duration,
        default=defaults.request_timeout,
        help="deadline of each request: seconds (300) or a Go duration (5m) (default 300)",
    )
    flag(
        "corex",
        metavar="PATH",
        type=Path,
        default=DEFAULT_COREX,
        help="the binary interactive containers run as PID 1 (default %(default)s)",
    )
    flag(
        "shutdown-grace",
        metavar="DURATION",
        type=_duration,
        default=defaults.shutdown_grace,
        help="on SIGTERM, how long in-flight requests may finish (default 10s)",
    )
    flag(
        "restart-delay",
        metavar="DURATION",
        type=_duration,
        default=defaults.restart_delay,
        help="pause before restarting a crashed container (default 2s)",
    )
    flag(
        "restart-limit",
        metavar="N",
        type=_positive_int,
        default=defaults.restart_limit,
        help="crashes within -restart-window after which a container is given up (default %(default)s)",
    )
    flag(
        "restart-window",
        metavar="DURATION",
        type=_positive_duration,
        default=defaults.restart_window,
        help="the window -restart-limit counts crashes in (default 60s)",
    )
    flag(
        "start-settle",
        metavar="DURATION",
        type=_duration,
        default=defaults.start_settle,
        help="how long a new entrypoint must stay up before Run succeeds (default 250ms)",
    )
    flag(
        "reconcile-interval",
        metavar="DURATION",
        type=_positive_duration,
        default=defaults.reconcile_interval,
        help="how often every container is checked against what it should be (default 60s)",
    )
    flag(
        "log-max-size",
        metavar="SIZE",
        type=_size,
        default=defaults.log_max_bytes,
        help="rotate a container's log file at this size, keeping one old file (default 10M)",
    )
    flag(
        "pids-limit",
        metavar="N",
        type=_pids_limit,
        default=defaults.pids_limit,
        help="the most processes and threads each container may have, 0 for no limit (default %(default)s)",
    )
    flag(
        "log-level",
        metavar="LEVEL",
        choices=["debug", "info", "warning", "error"],
        default="info",
        help="the daemon's own log level: debug, info, warning, error (default %(default)s)",
    )
    parser.add_argument("--version", "-version", action="version", version=f"contd {__version__}")
    return parser


def parse_args(argv: list[str] | None = None) -> Config:
    args = build_parser().parse_args(argv)
    return Config(
        broker=args.broker,
        root=args.root,
        containerd_socket=args.containerd,
        containerd_root=args.containerd_root,
        containerd_state=args.containerd_state,
        workers=args.workers,
        request_timeout=args.timeout,
        corex=args.corex,
        shutdown_grace=args.shutdown_grace,
        restart_delay=args.restart_delay,
        restart_limit=args.restart_limit,
        restart_window=args.restart_window,
        start_settle=args.start_settle,
        reconcile_interval=args.reconcile_interval,
        log_max_bytes=args.log_max_size,
        log_level=args.log_level,
        pids_limit=args.pids_limit,
    )


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    logs.configure(config.log_level)
    from .app import run_daemon  # after logging is set up

    try:
        runtime.run(run_daemon, config)
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        # The root directory cannot be written, say: say so in one line.
        print(f"contd: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
