"""A typed client of ``container@0.0.1``, over a zbus client.

What the REPL, ``contdctl`` and the tests use: the same calls a Go stub
makes, with Python values in and out.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import msgpack

from ..config import DEFAULT_BROKER
from ..zbus.client import Client, EventStream
from ..zbus.codec import GO_ZERO_TIME
from .names import EVENTS, MODULE, OBJECT
from .types import Container, ContainerStats, ExecOutput, LogChunk

#: How long a client waits for an answer by default: the daemon's own 300 s
#: deadline, plus a margin for its answer to arrive.
DEFAULT_CALL_TIMEOUT = 330.0


def add_client_flags(parser: argparse.ArgumentParser) -> None:
    """The flags every client tool shares: ``-broker`` and ``-timeout``."""
    parser.add_argument(
        "-broker",
        "--broker",
        default=os.environ.get("CONTD_BROKER", DEFAULT_BROKER),
        help="redis address (default: $CONTD_BROKER or %(default)s)",
    )
    parser.add_argument(
        "-timeout",
        "--timeout",
        type=float,
        default=DEFAULT_CALL_TIMEOUT,
        dest="call_timeout",
        help="seconds to wait for each answer (default %(default)s)",
    )


class ContainerClient:
    """Calls the container module. ``timeout`` bounds each call (seconds)."""

    def __init__(self, bus: Client, *, timeout: float | None = DEFAULT_CALL_TIMEOUT) -> None:
        self.bus = bus
        self.timeout = timeout

    async def _call(self, method: str, *args: Any, timeout: float | None = None) -> Any:
        return await self.bus.call(MODULE, OBJECT, method, *args, timeout=timeout or self.timeout)

    async def run(self, namespace: str, container: Container) -> str:
        return str(await self._call("Run", namespace, container))

    async def inspect(self, namespace: str, container_id: str) -> Container:
        return Container.from_inspect(await self._call("Inspect", namespace, container_id))

    async def delete(self, namespace: str, container_id: str) -> None:
        await self._call("Delete", namespace, container_id)

    async def signal_delete(self, namespace: str, container_id: str) -> None:
        await self._call("SignalDelete", namespace, container_id)

    async def list_containers(self, namespace: str) -> list[str]:
        return list(await self._call("List", namespace) or [])

    async def list_ns(self) -> list[str]:
        return list(await self._call("ListNS") or [])

    async def exec_process(
        self, namespace: str, container_id: str, *args: str, timeout: float = 10.0
    ) -> None:
        """Run ``args`` in the container; ``timeout`` is the process's, in seconds."""
        await self._call("Exec", namespace, container_id, int(timeout * 1e9), *args, timeout=timeout + 30)

    async def exec_output(
        self, namespace: str, container_id: str, *args: str, timeout: float = 10.0
    ) -> ExecOutput:
        """Run ``args`` in the container and return its exit code and output;
        ``timeout`` is the process's, in seconds."""
        value = await self._call(
            "ExecOutput", namespace, container_id, int(timeout * 1e9), *args, timeout=timeout + 30
        )
        return ExecOutput.from_go(value)

    async def logs(self, namespace: str, container_id: str) -> str:
        return str(await self._call("Logs", namespace, container_id))

    async def logs_from(
        self,
        namespace: str,
        container_id: str,
        cursor: str = "",
        max_lines: int = 0,
        *,
        timeout: float | None = None,
    ) -> LogChunk:
        """The lines after ``cursor`` ("": from the oldest kept)."""
        value = await self._call("LogsFrom", namespace, container_id, cursor, max_lines, timeout=timeout)
        return LogChunk.from_go(value)

    async def logs_tail(
        self,
        namespace: str,
        container_id: str,
        lines: int = -1,
        since: msgpack.Timestamp = GO_ZERO_TIME,
        *,
        timeout: float | None = None,
    ) -> LogChunk:
        """The last ``lines`` lines (< 0: all kept), or those since ``since``."""
        value = await self._call("LogsTail", namespace, container_id, lines, since, timeout=timeout)
        return LogChunk.from_go(value)

    async def update(self, namespace: str, container_id: str, *, cpu: int = 0, memory: int = 0) -> None:
        """New limits for a running container (0 leaves one as it is)."""
        await self._call("Update", namespace, container_id, cpu, memory)

    async def stats(self, namespace: str, container_id: str) -> ContainerStats:
        return ContainerStats.from_go(await self._call("Stats", namespace, container_id))

    def events(self) -> Events:
        """The module's events (maps with Namespace, ID, Kind, ExitStatus, Pid,
        Time): ``async with contd.events() as events: async for e in events``,
        or simply ``async for e in contd.events()`` at a console."""
        return Events(self.bus)


class Events:
    """A subscription to ``container.container@0.0.1.Events``, live once
    entered (or once iteration starts)."""

    def __init__(self, bus: Client) -> None:
        self._context = bus.subscribe(MODULE, OBJECT, EVENTS)
        self._stream: EventStream | None = None

    async def __aenter__(self) -> Events:
        self._stream = await self._context.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._stream is not None:
            self._stream = None
            await self._context.__aexit__(*exc_info)

    def __aiter__(self) -> Events:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self._stream is None:
            await self.__aenter__()
        assert self._stream is not None
        return await self._stream.__anext__()  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        await self.__aexit__(None, None, None)
