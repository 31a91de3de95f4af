"""The container module's values, and their Go wire shapes.

They mirror 0-OS's ``pkg/container.go`` (the seed's interface plus the later
fields), field for field: a Go stub encodes a ``Container`` as a map keyed by
these Go names, and decodes ours the same way, ignoring keys it does not know
(which is how Inspect adds the live task facts).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgpack

from ..zbus import gotypes
from ..zbus.codec import GO_ZERO_TIME, type_name
from ..zbus.gotypes import ArgumentTypeError, GoType

T = TypeVar("T")

#: Container memory when a request leaves it at 0: 256 MiB, truly (0-OS wrote
#: 256*1024*1204, about 301 MiB, by a typo).
DEFAULT_MEMORY = 256 * 1024 * 1024
DEFAULT_CPU = 1
DEFAULT_SHUTDOWN_TIMEOUT_NS = 3 * 10**9


def _read(value: Mapping[str, Any], key: str, go_type: GoType[T], where: str) -> T:
    try:
        return go_type.decode(value.get(key))
    except ArgumentTypeError as exc:
        raise ArgumentTypeError(f"{where}{key}: {exc}") from None


def _read_struct(value: Any, go_name: str, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ArgumentTypeError(f"{where}: expecting {go_name} got {type_name(value)}")
    return value


def _read_list(
    value: Mapping[str, Any], key: str, go_name: str, where: str, item: Callable[[Any, str], T]
) -> list[T] | None:
    raw = value.get(key)
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise ArgumentTypeError(f"{where}{key}: expecting []{go_name} got {type_name(raw)}")
    return [item(element, f"{where}{key}[{i}].") for i, element in enumerate(raw)]


@dataclass
class NetworkInfo:
    """The network namespace (under /var/run/netns) the container joins."""

    namespace: str = ""

    def to_go(self) -> dict[str, Any]:
        return {"Namespace": self.namespace}

    @classmethod
    def from_go(cls, value: Any, where: str = "Network.") -> NetworkInfo:
        value = _read_struct(value, "pkg.NetworkInfo", where.rstrip("."))
        return cls(namespace=_read(value, "Namespace", gotypes.STRING, where))


@dataclass
class MountInfo:
    """A mount: ``source`` on the host at ``target`` in the container. ``type``
    and ``options`` are the seed's (a bind with ``rbind`` when left empty)."""

    source: str = ""
    target: str = ""
    type: str = ""
    options: list[str] | None = None

    def to_go(self) -> dict[str, Any]:
        value: dict[str, Any] = {"Source": self.source, "Target": self.target}
        # 0-OS's last MountInfo has Source and Target only; the seed's Type and
        # Options ride along when set, and Go decoders ignore them otherwise.
        if self.type:
            value["Type"] = self.type
        if self.options:
            value["Options"] = list(self.options)
        return value

    @classmethod
    def from_go(cls, value: Any, where: str = "") -> MountInfo:
        value = _read_struct(value, "pkg.MountInfo", where.rstrip("."))
        return cls(
            source=_read(value, "Source", gotypes.STRING, where),
            target=_read(value, "Target", gotypes.STRING, where),
            type=_read(value, "Type", gotypes.STRING, where),
            options=_read(value, "Options", gotypes.slice_of(gotypes.STRING), where),
        )


@dataclass
class LogsRedis:
    """Where a container's output lines are also published."""

    stdout: str = ""
    stderr: str = ""

    def to_go(self) -> dict[str, Any]:
        return {"Stdout": self.stdout, "Stderr": self.stderr}

    @classmethod
    def from_go(cls, value: Any, where: str = "") -> LogsRedis:
        value = _read_struct(value, "pkg.LogsRedis", where.rstrip("."))
        return cls(
            stdout=_read(value, "Stdout", gotypes.STRING, where),
            stderr=_read(value, "Stderr", gotypes.STRING, where),
        )


@dataclass
class Logs:
    """A log backend: ``type`` "redis" with channel URLs in ``data``."""

    type: str = ""
    data: LogsRedis = field(default_factory=LogsRedis)

    def to_go(self) -> dict[str, Any]:
        return {"Type": self.type, "Data": self.data.to_go()}

    @classmethod
    def from_go(cls, value: Any, where: str = "") -> Logs:
        value = _read_struct(value, "pkg.Logs", where.rstrip("."))
        return cls(
            type=_read(value, "Type", gotypes.STRING, where),
            data=LogsRedis.from_go(value.get("Data"), f"{where}Data."),
        )


@dataclass
class Stats:
    """A stats backend: ``type`` "redis", ``endpoint`` redis://host:port/key."""

    type: str = ""
    endpoint: str = ""

    def to_go(self) -> dict[str, Any]:
        return {"Type": self.type, "Endpoint": self.endpoint}

    @classmethod
    def from_go(cls, value: Any, where: str = "") -> Stats:
        value = _read_struct(value, "pkg.Stats", where.rstrip("."))
        return cls(
            type=_read(value, "Type", gotypes.STRING, where),
            endpoint=_read(value, "Endpoint", gotypes.STRING, where),
        )


@dataclass
class TaskState:
    """What Inspect adds beyond the Go shape: the live facts of the task."""

    status: str = "unknown"  # running, stopped, created, paused, unknown
    pid: int = 0
    exit_status: int = 0
    exited_at: msgpack.Timestamp = GO_ZERO_TIME
    restarts: int = 0

    @classmethod
    def from_go(cls, value: Mapping[str, Any]) -> TaskState:
        return cls(
            status=_read(value, "Status", gotypes.STRING, ""),
            pid=_read(value, "Pid", gotypes.INT, ""),
            exit_status=_read(value, "ExitStatus", gotypes.INT, ""),
            exited_at=_read(value, "ExitedAt", gotypes.TIME, ""),
            restarts=_read(value, "Restarts", gotypes.INT, ""),
        )

    def to_go(self) -> dict[str, Any]:
        return {
            "Status": self.status,
            "Pid": self.pid,
            "ExitStatus": self.exit_status,
            "ExitedAt": self.exited_at,
            "Restarts": self.restarts,
        }


@dataclass
class Container:
    """A container as Run takes it and Inspect gives it back."""

    name: str = ""
    rootfs: str = ""
    env: list[str] | None = None
    working_dir: str = ""
    network: NetworkInfo = field(default_factory=NetworkInfo)
    mounts: list[MountInfo] | None = None
    entrypoint: str = ""
    interactive: bool = False
    cpu: int = 0
    memory: int = 0
    logs: list[Logs] | None = None
    stats: list[Stats] | None = None
    elevated: bool = False
    created_at: msgpack.Timestamp = GO_ZERO_TIME
    rootfs_propagation: str = ""
    shutdown_timeout_ns: int = 0
    #: Set by Inspect only; sent as extra keys that Go decoders ignore.
    task: TaskState | None = None

    def to_go(self) -> dict[str, Any]:
        value: dict[str, Any] = {
            "Name": self.name,
            "RootFS": self.rootfs,
            "Env": None if self.env is None else list(self.env),
            "WorkingDir": self.working_dir,
            "Network": self.network.to_go(),
            "Mounts": None if self.mounts is None else [m.to_go() for m in self.mounts],
            "Entrypoint": self.entrypoint,
            "Interactive": self.interactive,
            "CPU": self.cpu,
            "Memory": self.memory,
            "Logs": None if self.logs is None else [entry.to_go() for entry in self.logs],
            "Stats": None if self.stats is None else [s.to_go() for s in self.stats],
            "Elevated": self.elevated,
            "CreatedAt": self.created_at,
            "RootFsPropagation": self.rootfs_propagation,
            "ShutdownTimeout": self.shutdown_timeout_ns,
        }
        if self.task is not None:
            value.update(self.task.to_go())
        return value

    @classmethod
    def from_inspect(cls, value: Any) -> Container:
        """Read what Inspect answers: a Container with the live task facts."""
        container = cls.from_go(value)
        if "Status" in value:
            container.task = TaskState.from_go(value)
        return container

    @classmethod
    def from_go(cls, value: Any) -> Container:
        """Read a Go-encoded Container as liberally as Go does.

        Raises:
            ArgumentTypeError: a field holds a value Go could not decode either;
                the message names the field.
        """
        if not isinstance(value, Mapping):
            raise ArgumentTypeError(f"expecting pkg.Container got {type_name(value)}")
        return cls(
            name=_read(value, "Name", gotypes.STRING, ""),
            rootfs=_read(value, "RootFS", gotypes.STRING, ""),
            env=_read(value, "Env", gotypes.slice_of(gotypes.STRING), ""),
            working_dir=_read(value, "WorkingDir", gotypes.STRING, ""),
            network=NetworkInfo.from_go(value.get("Network")),
            mounts=_read_list(value, "Mounts", "pkg.MountInfo", "", MountInfo.from_go),
            entrypoint=_read(value, "Entrypoint", gotypes.STRING, ""),
            interactive=_read(value, "Interactive", gotypes.BOOL, ""),
            cpu=_read(value, "CPU", gotypes.UINT, ""),
            memory=_read(value, "Memory", gotypes.UINT64, ""),
            logs=_read_list(value, "Logs", "pkg.Logs", "", Logs.from_go),
            stats=_read_list(value, "Stats", "pkg.Stats", "", Stats.from_go),
            elevated=_read(value, "Elevated", gotypes.BOOL, ""),
            created_at=_read(value, "CreatedAt", gotypes.TIME, ""),
            rootfs_propagation=_read(value, "RootFsPropagation", gotypes.STRING, ""),
            shutdown_timeout_ns=_read(value, "ShutdownTimeout", gotypes.DURATION, ""),
        )


@dataclass
class ExecOutput:
    """What ExecOutput answers: how an exec process ended, and what it wrote.

    ``exit_code`` is the process's exit status; 127 (not found) or 126
    when it could not start (``stderr`` then says why, in runc's words);
    -1 when it ran past its timeout and was killed (``timed_out``). Each of
    ``stdout`` and ``stderr`` is the last 1 MiB at most; the ``*_truncated``
    flags say when more was written.
    """

    exit_code: int = 0
    timed_out: bool = False
    stdout: bytes = b""
    stderr: bytes = b""
    stdout_truncated: bool = False
    stderr_truncated: bool = False

    def to_go(self) -> dict[str, Any]:
        return {
            "ExitCode": self.exit_code,
            "TimedOut": self.timed_out,
            "Stdout": self.stdout,
            "Stderr": self.stderr,
            "StdoutTruncated": self.stdout_truncated,
            "StderrTruncated": self.stderr_truncated,
        }

    @classmethod
    def from_go(cls, value: Any) -> ExecOutput:
        value = _read_struct(value, "pkg.ExecOutput", "ExecOutput")
        return cls(
            exit_code=_read(value, "ExitCode", gotypes.INT, ""),
            timed_out=_read(value, "TimedOut", gotypes.BOOL, ""),
            stdout=_read(value, "Stdout", gotypes.BYTES, ""),
            stderr=_read(value, "Stderr", gotypes.BYTES, ""),
            stdout_truncated=_read(value, "StdoutTruncated", gotypes.BOOL, ""),
            stderr_truncated=_read(value, "StderrTruncated", gotypes.BOOL, ""),
        )


@dataclass
class LogLine:
    """One line of a container's output.

    ``time`` is when the log shim read it (Go's zero time for lines written
    before the shim kept times); ``stream`` is "stdout" or "stderr" ("" when
    unknown). A line longer than 64 KiB comes in pieces: every piece but the
    last is ``partial`` (no line break follows it).
    """

    text: str = ""
    time: msgpack.Timestamp = GO_ZERO_TIME
    stream: str = ""
    partial: bool = False

    def to_go(self) -> dict[str, Any]:
        return {"Time": self.time, "Stream": self.stream, "Text": self.text, "Partial": self.partial}

    @classmethod
    def from_go(cls, value: Any, where: str = "") -> LogLine:
        value = _read_struct(value, "pkg.LogLine", where.rstrip("."))
        return cls(
            text=_read(value, "Text", gotypes.STRING, where),
            time=_read(value, "Time", gotypes.TIME, where),
            stream=_read(value, "Stream", gotypes.STRING, where),
            partial=_read(value, "Partial", gotypes.BOOL, where),
        )


@dataclass
class LogChunk:
    """What LogsFrom and LogsTail answer: lines of output, and where the
    next LogsFrom continues.

    ``cursor`` is opaque: pass it back as it is. ``more`` says that more
    output was already there than fitted in this chunk. ``lost`` counts the
    bytes of output between the cursor asked for and the first line given
    that are no longer kept (rotated away, or their file removed); ``reset``
    says that the cursor belonged to an earlier output of this name (the
    container was made again, or its logs removed), so the lines start
    with the oldest kept.
    """

    lines: list[LogLine] = field(default_factory=list)
    cursor: str = ""
    more: bool = False
    lost: int = 0
    reset: bool = False

    def to_go(self) -> dict[str, Any]:
        return {
            "Lines": [line.to_go() for line in self.lines],
            "Cursor": self.cursor,
            "More": self.more,
            "Lost": self.lost,
            "Reset": self.reset,
        }

    @classmethod
    def from_go(cls, value: Any) -> LogChunk:
        value = _read_struct(value, "pkg.LogChunk", "LogChunk")
        return cls(
            lines=_read_list(value, "Lines", "pkg.LogLine", "", LogLine.from_go) or [],
            cursor=_read(value, "Cursor", gotypes.STRING, ""),
            more=_read(value, "More", gotypes.BOOL, ""),
            lost=_read(value, "Lost", gotypes.UINT64, ""),
            reset=_read(value, "Reset", gotypes.BOOL, ""),
        )


@dataclass
class ContainerStats:
    """What Stats answers: a container's metrics, read from its cgroup.

    ``cpu_usage`` is the CPU time its processes used, in nanoseconds (two
    samples give a CPU percentage); ``memory_limit`` is 0 when there is
    none; ``memory_cache`` is the page cache charged to it.
    """

    time: msgpack.Timestamp = GO_ZERO_TIME
    memory_usage: int = 0
    memory_limit: int = 0
    memory_cache: int = 0
    cpu_usage: int = 0
    pids: int = 0

    def to_go(self) -> dict[str, Any]:
        return {
            "Time": self.time,
            "MemoryUsage": self.memory_usage,
            "MemoryLimit": self.memory_limit,
            "MemoryCache": self.memory_cache,
            "CPUUsage": self.cpu_usage,
            "Pids": self.pids,
        }

    @classmethod
    def from_go(cls, value: Any) -> ContainerStats:
        value = _read_struct(value, "pkg.ContainerStats", "ContainerStats")
        return cls(
            time=_read(value, "Time", gotypes.TIME, ""),
            memory_usage=_read(value, "MemoryUsage", gotypes.UINT64, ""),
            memory_limit=_read(value, "MemoryLimit", gotypes.UINT64, ""),
            memory_cache=_read(value, "MemoryCache", gotypes.UINT64, ""),
            cpu_usage=_read(value, "CPUUsage", gotypes.UINT64, ""),
            pids=_read(value, "Pids", gotypes.UINT64, ""),
        )


def go_time(unix_ns: int) -> msgpack.Timestamp:
    """Nanoseconds since the Unix epoch as the time.Time Go reads."""
    return msgpack.Timestamp.from_unix_nano(unix_ns)


CONTAINER_ID = gotypes.named("pkg.ContainerID", gotypes.STRING)
CONTAINER: GoType[Container] = GoType("pkg.Container", Container(), Container.from_go, Container.to_go)
EXEC_OUTPUT: GoType[ExecOutput] = GoType("pkg.ExecOutput", ExecOutput(), ExecOutput.from_go, ExecOutput.to_go)
LOG_CHUNK: GoType[LogChunk] = GoType("pkg.LogChunk", LogChunk(), LogChunk.from_go, LogChunk.to_go)
CONTAINER_STATS: GoType[ContainerStats] = GoType(
    "pkg.ContainerStats", ContainerStats(), ContainerStats.from_go, ContainerStats.to_go
)
