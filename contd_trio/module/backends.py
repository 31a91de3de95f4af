"""Log and stats backends: where a container's output lines and its
metrics go besides the daemon's own files. One table per kind, keyed by the
``Type`` a request names; adding a backend is one entry here (plus its tests).

0-OS knows one type of each, ``redis``: output lines are PUBLISHed on
``Logs.Data.Stdout``/``Stderr``, metrics on ``Stats.Endpoint``, each a
``redis://host[:port]/channel`` URL. Those URLs are read by one parser,
:func:`contd_trio.logshim.parse_redis_url` (the log shim must read them
with the standard library alone, so the daemon uses the shim's parser
rather than the other way round): what validation accepts, the log shim and
the stats monitors can use.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

from ..errors import InvalidArgument
from ..logshim import parse_redis_url
from ..text import quote
from .redis_publisher import RedisPublisher, address_refusal
from .types import Container, Logs, Stats


@dataclass(frozen=True)
class RedisChannel:
    """A channel of a Redis reached over TCP."""

    host: str
    port: int
    channel: bytes

    @classmethod
    def parse(cls, url: str) -> RedisChannel:
        """Raises: ValueError: not a ``redis://host[:port]/channel`` URL (the reason)."""
        return cls(*parse_redis_url(url))


def _check_redis_url(field: str, url: str) -> None:
    try:
        RedisChannel.parse(url)
    except ValueError as exc:
        raise InvalidArgument(
            f"{field} {quote(url)} is not a redis://host[:port]/channel URL: {exc}"
        ) from None


# -- log backends ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LogBackend:
    """One type of log backend.

    Attributes:
        check: refuses a request's entry (raises InvalidArgument naming
            ``field``, e.g. ``logs[0]``).
        shim_args: the log shim's arguments for the entry at an index.
    """

    check: Callable[[str, Logs], None]
    shim_args: Callable[[int, Logs], dict[str, str]]


def _check_redis_logs(field: str, logs: Logs) -> None:
    if not logs.data.stdout and not logs.data.stderr:
        raise InvalidArgument(f"{field} has neither a stdout nor a stderr URL")
    for name, url in (("stdout", logs.data.stdout), ("stderr", logs.data.stderr)):
        if url:
            _check_redis_url(f"{field} {name}", url)


def _redis_shim_args(index: int, logs: Logs) -> dict[str, str]:
    args = {}
    if logs.data.stdout:
        args[f"--stdout.{index}"] = logs.data.stdout
    if logs.data.stderr:
        args[f"--stderr.{index}"] = logs.data.stderr
    return args


LOG_BACKENDS: Mapping[str, LogBackend] = {
    "redis": LogBackend(check=_check_redis_logs, shim_args=_redis_shim_args),
}


# -- stats backends -------------------------------------------------------------------------


class StatsPublisher(Protocol):
    async def publish(self, payload: bytes) -> None:
        """Send one sample to every entry of the publisher.

        Raises:
            PublishFailed: not now (the monitor backs off and retries).
        """


@dataclass(frozen=True)
class StatsBackend:
    """One type of stats backend.

    Attributes:
        check: refuses a request's entry (raises InvalidArgument naming ``field``).
        destination: where an entry that passed ``check`` sends its samples,
            as logs name it; the entries of a container with the same
            destination share one publisher (one connection).
        open_publisher: a publisher for entries of one destination, open
            while the context is entered (connections are made on first use).
    """

    check: Callable[[str, Stats], None]
    destination: Callable[[Stats], str]
    open_publisher: Callable[[Sequence[Stats]], AbstractAsyncContextManager[StatsPublisher]]


def _check_redis_stats(field: str, stats: Stats) -> None:
    _check_redis_url(f"{field} endpoint", stats.endpoint)
    host = RedisChannel.parse(stats.endpoint).host
    try:
        refusal = address_refusal(host)
    except ValueError:  # a name: what it resolves to is checked at each connection
        return
    if refusal is not None:
        raise InvalidArgument(f"{field} endpoint {quote(stats.endpoint)}: {host} is {refusal}")


def _redis_destination(stats: Stats) -> str:
    endpoint = RedisChannel.parse(stats.endpoint)
    host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
    return f"redis://{host}:{endpoint.port}"


@asynccontextmanager
async def _open_redis_publisher(entries: Sequence[Stats]) -> AsyncIterator[StatsPublisher]:
    endpoints = [RedisChannel.parse(stats.endpoint) for stats in entries]
    publisher = RedisPublisher(endpoints[0].host, endpoints[0].port, [e.channel for e in endpoints])
    try:
        yield publisher
    finally:
        await publisher.aclose()


STATS_BACKENDS: Mapping[str, StatsBackend] = {
    "redis": StatsBackend(
        check=_check_redis_stats, destination=_redis_destination, open_publisher=_open_redis_publisher
    ),
}


def check_backends(container: Container) -> None:
    """Every log and stats backend of a Run request is of a known type and
    well formed.

    Raises:
        InvalidArgument: naming the entry and what is wrong with it.
    """
    for i, logs in enumerate(container.logs or ()):
        log_backend = LOG_BACKENDS.get(logs.type)
        if log_backend is None:
            raise InvalidArgument(
                f"logs[{i}] type {quote(logs.type)} is not known (known: {_known(LOG_BACKENDS)})"
            )
        log_backend.check(f"logs[{i}]", logs)
    for i, stats in enumerate(container.stats or ()):
        stats_backend = STATS_BACKENDS.get(stats.type)
        if stats_backend is None:
            raise InvalidArgument(
                f"stats[{i}] type {quote(stats.type)} is not known (known: {_known(STATS_BACKENDS)})"
            )
        stats_backend.check(f"stats[{i}]", stats)


def _known(table: Mapping[str, object]) -> str:
    return ", ".join(sorted(table))
