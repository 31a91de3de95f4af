"""``contdctl``: the container daemon from a shell, for humans and scripts.

    contdctl [-broker URL] [--json] COMMAND ...

The broker is also read from ``CONTD_BROKER``. Tables by default, ``--json``
for scripts; the exit code is 0 on success, 1 when the daemon answered with
an error (its text on stderr), 2 for a bad command line; ``exec`` exits with
the process's code (see :data:`SYNOPSIS`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tomllib
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import msgpack
import trio

from . import taskgroups
from .config import parse_duration, parse_size
from .module.client import ContainerClient, add_client_flags
from .module.names import MODULE
from .module.types import Container, ContainerStats, LogChunk, MountInfo, NetworkInfo
from .taskgroups import open_nursery
from .zbus import codec
from .zbus.client import open_client
from .zbus.errors import BusUnavailable, CallError, RequestTimedOut, ZbusError
from .zbus.gotypes import ArgumentTypeError
from .zbus.transport import parse_broker_url

Output = Callable[[Any], None]

#: Every command in one screen: ``contdctl --help`` ends with it, and the
#: README shows it (a test keeps the two the same).
SYNOPSIS = """\
contdctl [-broker URL] [--json] COMMAND ...
  run --ns NS --name NAME --rootfs DIR --netns NETNS --entrypoint CMD [--env K=V]... [--mount SRC:DST]...
      [--workdir D] [--cpu N] [--memory BYTES|256M] [--elevated] [--interactive] [--shutdown-timeout 5s]
  run --ns NS --file spec.json|spec.toml       # a Container value, Go field names ("5s", "256M" allowed)
  inspect NS ID | delete NS ID | signal-delete NS ID | ls NS | ns
  exec NS ID [--timeout 10s] -- ARGS...        # its output, and its exit code (125: contdctl failed)
  logs NS ID [--follow] [--tail N] [--since 10m|TIME] [--timestamps]
  stats NS [ID...] [--no-stream]               # CPU %, memory usage / limit, PIDs
  update NS ID [--memory SIZE] [--cpu N]       # new limits, live
  status                                       # the zbus status object: objects, workers and what each does
  events [--ns NS]                             # live
"""

#: exec's exit codes of its own, as docker exec's and timeout(1)'s: the
#: daemon (or the command line) failed; the process ran past --timeout.
EXEC_FAILED = 125
EXEC_TIMED_OUT = 124
#: The largest values the wire's integers hold (Go's int64 and uint64).
MAX_INT64, MAX_UINT64 = 2**63 - 1, 2**64 - 1


class UsageError(Exception):
    """A command line that cannot be run (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}\n")


# -- rendering ----------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """A JSON-ready form of what the daemon answers (times as RFC 3339)."""
    if isinstance(value, msgpack.Timestamp):
        if value == codec.GO_ZERO_TIME:
            return None
        return value.to_datetime().isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if hasattr(value, "to_go"):
        return plain(value.to_go())
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def nano_time(value: msgpack.Timestamp) -> str | None:
    """A time as RFC 3339 with nanoseconds (Go's RFC3339Nano, trailing
    zeros kept so that lines align); None for Go's zero time."""
    if value == codec.GO_ZERO_TIME:
        return None
    seconds = value.to_datetime().strftime("%Y-%m-%dT%H:%M:%S")
    return f"{seconds}.{value.nanoseconds:09d}Z"


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    cells = [[str(c) for c in header]] + [["-" if c in (None, "") else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def describe_container(info: Container) -> str:
    go = plain(info)
    task = info.task
    lines = [
        ("Name", info.name),
        ("Status", task.status if task else "-"),
        ("Pid", task.pid if task and task.pid else "-"),
        ("ExitStatus", task.exit_status if task else "-"),
        ("Restarts", task.restarts if task else "-"),
        ("CreatedAt", go["CreatedAt"]),
        ("RootFS", info.rootfs),
        ("Entrypoint", info.entrypoint),
        ("WorkingDir", info.working_dir or "/"),
        ("Network", info.network.namespace),
        ("Env", " ".join(info.env or []) or "-"),
        ("Mounts", ", ".join(f"{m.source}:{m.target}" for m in info.mounts or []) or "-"),
        ("CPU", info.cpu),
        ("Memory", info.memory),
        ("Interactive", info.interactive),
        ("Elevated", info.elevated),
        ("ShutdownTimeout", f"{info.shutdown_timeout_ns / 1e9:g}s"),
        ("RootFsPropagation", info.rootfs_propagation or "-"),
        ("Logs", json.dumps(go["Logs"]) if info.logs else "-"),
        ("Stats", json.dumps(go["Stats"]) if info.stats else "-"),
    ]
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in lines)


def describe_event(event: dict[str, Any]) -> str:
    event = plain(event)
    extra = ""
    if event.get("Kind") in ("exited", "failed"):
        extra += f" status={event.get('ExitStatus')}"
    if event.get("Pid"):
        extra += f" pid={event.get('Pid')}"
    return f"{event.get('Time')}  {event.get('Namespace')}/{event.get('ID')}  {event.get('Kind')}{extra}"


# -- run requests -------------------------------------------------------------------------


def container_from_flags(args: argparse.Namespace) -> Container:
    """A Container from run's flags; host paths (``--rootfs``, ``--mount``
    sources) are taken from the caller's directory, as docker does with
    ``-v ./dir:/x``: the daemon needs them absolute."""
    mounts = []
    for spec in args.mount:
        source, sep, target = spec.partition(":")
        if not sep or not source or not target:
            raise UsageError(f"--mount {spec!r}: expecting SRC:DST")
        mounts.append(MountInfo(from_here(source), target))
    for entry in args.env:
        if "=" not in entry:
            raise UsageError(f"--env {entry!r}: expecting KEY=VALUE")
    try:
        memory = parse_size(args.memory) if args.memory else 0
        shutdown = parse_duration(args.shutdown_timeout) if args.shutdown_timeout else 0.0
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not args.name or not args.rootfs:
        raise UsageError("run needs --name and --rootfs (or --file)")
    return Container(
        name=args.name,
        rootfs=from_here(args.rootfs),
        env=list(args.env),
        working_dir=args.workdir or "",
        network=NetworkInfo(args.netns or ""),
        mounts=mounts,
        entrypoint=args.entrypoint or "",
        interactive=args.interactive,
        cpu=args.cpu,
        memory=memory,
        elevated=args.elevated,
        shutdown_timeout_ns=int(shutdown * 1e9),
    )


def container_from_file(path: str) -> Container:
    """A Container value in JSON or TOML, keyed by Go field names; durations
    may be written ``"5s"``, sizes ``"256M"``; a relative ``RootFS`` or bind
    mount ``Source`` is taken from the file's directory."""
    try:
        text = Path(path).read_text()
        value = tomllib.loads(text) if path.endswith(".toml") else json.loads(text)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--file {path}: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(f"--file {path}: expecting a Container object")
    value.pop("CreatedAt", None)
    try:
        if isinstance(value.get("ShutdownTimeout"), str):
            value["ShutdownTimeout"] = int(parse_duration(value["ShutdownTimeout"]) * 1e9)
        if isinstance(value.get("Memory"), str):
            value["Memory"] = parse_size(value["Memory"])
        container = Container.from_go(value)
    except (ValueError, ArgumentTypeError) as exc:
        raise UsageError(f"--file {path}: {exc}") from None
    # Host paths in the file are relative to the file, as in a compose file.
    here = os.path.dirname(os.path.abspath(path))
    container.rootfs = from_here(container.rootfs, here)
    for mount in container.mounts or ():
        if mount.type in ("", "bind"):
            mount.source = from_here(mount.source, here)
    return container


def from_here(path: str, directory: str = "") -> str:
    """A relative host path made absolute from ``directory`` (the current
    one by default); an absolute (or empty) one is sent as it was written."""
    if not path or os.path.isabs(path):
        return path
    return os.path.abspath(os.path.join(directory or os.getcwd(), path))


# -- commands ------------------------------------------------------------------------------


async def cmd_run(contd: ContainerClient, args: argparse.Namespace, out: Output) -> None:
    container = container_from_file(args.file) if args.file else container_from_flags(args)
    container_id = await contd.run(args.ns, container)
    out({"ID": container_id} if args.json else container_id)


async def cmd_inspect(contd: ContainerClient, args: argparse.Namespace, out: Output) -> None:
    info = await contd.inspect(args.namespace, args.id)
    out(plain(info) if args.json else describe_container(info))


async def cmd_delete(contd: ContainerClient, args: argparse.Namespace, out: Output) -> None:
    await contd.delete(args.namespace, args.id)
    out({"Deleted": args.id} if args.json else f"deleted {args.namespace}/{args.id}")


async def cmd_signal_delete(contd: ContainerClient, args: argparse.Namespace, out: Output) -> None:
    await contd.signal_delete(args.namespace, args.id)
    out({"Signalled": args.id} if args.json else f"signalled {args.namespace}/{args.id} to go away")


async def cmd_ls(contd: ContainerClient, args: argparse.Namespace, out: Output) -> None:
    ids = await contd.list_containers(args.namespace)
    if args.json:
        out(ids)
        return
    rows = []
    for container_id in ids:
        info = await contd.inspect(args.namespace, container_id)
        task = info.task
        rows.append(
            (
                container_id,
                task.status if task else "",
                task.pid if task and task.pid else "",
                task.restarts if task else "",
                info.entrypoint,
            )
        )
    out(table(rows, ("ID", "STATUS", "PID", "RESTARTS", "ENTRYPOINT")))


async def cmd_update(contd: ContainerClient, args: argparse.Namespace, out: Output) -> None:
    if args.memory is None and args.cpu is None:
        raise UsageError("update needs --memory or --cpu")
    if args.cpu is not None and args.cpu < 0:
        raise UsageError(f"--cpu {args.cpu} is negative")
    try:
        memory = parse_size(args.memory) if args.memory is not None else 0
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if (args.cpu or 0) > MAX_UINT64 or memory > MAX_UINT64:
        raise UsageError("--cpu and --memory must each fit in 64 bits")
    await contd.update(args.namespace, args.id, cpu=args.cpu or 0, memory=memory)
    out({"Updated": args.id} if args.json else f"updated {args.namespace}/{args.id}")


async def cmd_ns(contd: ContainerClient, args: argparse.Namespace, out: Output) -> None:
    names = await contd.list_ns()
    out(names if args.json else "\n".join(names))


async def cmd_exec(contd: ContainerClient, args: argparse.Namespace, out: Output) -> int:
    """Run the command in the container; its stdout and stderr become ours,
    its exit code our exit code (124 when it ran past ``--timeout``)."""
    command = args.argv
    if not command:
        raise UsageError("exec needs a command after --")
    try:
        timeout = parse_duration(args.timeout)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if timeout * 1e9 > MAX_INT64:
        raise UsageError(f"--timeout {args.timeout!r}: longer than a Go duration holds (about 292 years)")
    result = await contd.exec_output(args.namespace, args.id, *command, timeout=timeout)
    if args.json:
        out(plain(result))
    else:
        sys.stdout.buffer.write(result.stdout)
        sys.stdout.buffer.flush()
        sys.stderr.buffer.write(result.stderr)
        for name, kept, cut in (
            ("stdout", result.stdout, result.stdout_truncated),
            ("stderr", result.stderr, result.stderr_truncated),
        ):
            if cut:
                sys.stderr.write(f"contdctl: exec: only the last {len(kept)} bytes of its {name} were kept\n")
        if result.timed_out:
            sys.stderr.write(f"contdctl: exec: timed out after {args.timeout}; the process was killed\n")
        sys.stderr.flush()
    if result.timed_out:
        return EXEC_TIMED_OUT
    return result.exit_code if 0 <= result.exit_code <= 255 else 255


async def cmd_logs(contd: ContainerClient, args: argparse.Namespace, out: Output) -> None:
    """Print the container's output (stdout lines to stdout, stderr lines to
    stderr, as docker logs), then, with --follow, what it writes next until
    it is deleted. Everything goes through the daemon: a cursor says where
    each next read continues, so nothing is printed twice or skipped
    silently, across rotations and restarts of the container or the daemon."""
    lines = parse_tail(args.tail)
    since = parse_since(args.since) if args.since else codec.GO_ZERO_TIME
    chunk = await contd.logs_tail(args.namespace, args.id, lines, since)
    print_chunk(chunk, args)
    while chunk.more:
        chunk = await contd.logs_from(args.namespace, args.id, chunk.cursor)
        print_chunk(chunk, args)
    if args.follow:
        await follow_logs(contd, args, chunk.cursor)


#: How often a follower asks for new lines: soon after lines came, then
#: less and less often while none come.
FOLLOW_FIRST, FOLLOW_IDLE = 0.1, 1.0
#: How long a follower waits for one answer before asking again (the daemon
#: may be restarting: the cursor makes asking again harmless).
FOLLOW_CALL_TIMEOUT = 10.0


async def follow_logs(contd: ContainerClient, args: argparse.Namespace, cursor: str) -> None:
    """Print new lines as they come, until the container is deleted (or Ctrl-C)."""
    delay = FOLLOW_FIRST
    while True:
        try:
            chunk = await contd.logs_from(args.namespace, args.id, cursor, timeout=FOLLOW_CALL_TIMEOUT)
        except CallError as exc:
            if is_not_found(exc):
                return  # deleted: nothing more will come
            raise
        except (RequestTimedOut, BusUnavailable):
            await trio.sleep(FOLLOW_IDLE)  # the daemon or Redis is restarting: ask again
            continue
        print_chunk(chunk, args)
        cursor = chunk.cursor
        if chunk.more:
            continue
        delay = FOLLOW_FIRST if chunk.lines else min(delay * 1.5, FOLLOW_IDLE)
        await trio.sleep(delay)


def is_not_found(error: CallError) -> bool:
    return " not found in namespace " in str(error)


def parse_tail(text: str) -> int:
    if text == "all":
        return -1
    # Only ASCII digits: str.isdigit() also takes '²', which int() refuses.
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_INT64:
        raise UsageError(f"--tail {text!r}: expecting a number of lines or 'all'")
    return int(text)


def parse_since(text: str, now: datetime.datetime | None = None) -> msgpack.Timestamp:
    """``--since``: an RFC 3339 time (local time when it has no zone), or a
    duration before now (``10m``, ``1h30m``)."""
    now = now or datetime.datetime.now(datetime.UTC)
    try:
        return codec.timestamp_from_datetime(now - datetime.timedelta(seconds=parse_duration(text)))
    except (ValueError, OverflowError):
        pass
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"--since {text!r}: expecting a time (2026-11-28T22:52:00Z) or a duration ago (10m)"
        ) from None
    try:
        if when.tzinfo is None:
            when = when.astimezone()
        return codec.timestamp_from_datetime(when)
    except (ValueError, OverflowError):  # local time of year 1 falls before year 1
        raise UsageError(f"--since {text!r}: not a time that can be written in UTC") from None


def print_chunk(chunk: LogChunk, args: argparse.Namespace) -> None:
    """Lines of output: stdout's to our stdout, stderr's to our stderr (in
    their order, should both go to one terminal or file)."""
    if chunk.reset:
        note("the log started again (the container was made again, or its log files removed)")
    if chunk.lost:
        note(f"{chunk.lost} bytes of output were rotated away before they could be read")
    previous = sys.stdout
    for line in chunk.lines:
        if args.json:
            record = {
                "Time": nano_time(line.time),
                "Stream": line.stream,
                "Line": plain(line.text.encode("utf-8", "surrogateescape")),
            }
            if line.partial:
                record["Partial"] = True
            sys.stdout.write(json.dumps(record) + "\n")
            continue
        target = sys.stderr if line.stream == "stderr" else sys.stdout
        if target is not previous:
            previous.flush()
            previous = target
        text = line.text.encode("utf-8", "surrogateescape") + (b"" if line.partial else b"\n")
        if args.timestamps:
            text = (nano_time(line.time) or "-").encode() + b" " + text
        target.buffer.write(text)
    sys.stdout.flush()
    sys.stderr.flush()


def note(text: str) -> None:
    sys.stderr.write(f"contdctl: {text}\n")
    sys.stderr.flush()


async def cmd_stats(contd: ContainerClient, args: argparse.Namespace, out: Output) -> None:
    """A refreshing table of CPU, memory and PIDs, as nerdctl stats; the
    CPU percentage is the CPU time used between two samples over the time
    between them (100% is one CPU busy)."""
    previous: dict[str, ContainerStats] = {}
    while True:
        # Named twice, shown once (as nerdctl stats does).
        ids = list(dict.fromkeys(args.ids)) or await contd.list_containers(args.namespace)
        samples = await sample_stats(contd, args.namespace, ids, must_exist=bool(args.ids))
        if not previous:
            # The CPU percentage needs two samples.
            previous = samples
            await trio.sleep(STATS_INTERVAL)
            samples = await sample_stats(contd, args.namespace, ids, must_exist=bool(args.ids))
        rows = [stats_row(cid, samples.get(cid), previous.get(cid)) for cid in ids]
        if not args.ids:
            rows = [row for row in rows if row["Running"]]
        if args.json:
            for row in rows:
                out(row)
        else:
            if sys.stdout.isatty() and not args.no_stream:
                sys.stdout.write("\033[2J\033[H")  # clear the screen, as nerdctl stats does
            out(stats_table(rows))
        if args.no_stream:
            return
        previous = {**previous, **samples}
        await trio.sleep(STATS_INTERVAL)


STATS_INTERVAL = 1.0


async def sample_stats(
    contd: ContainerClient, namespace: str, ids: Sequence[str], *, must_exist: bool
) -> dict[str, ContainerStats]:
    """The stats of every container that runs now (asked all at once)."""
    samples: dict[str, ContainerStats] = {}

    async def one(container_id: str) -> None:
        try:
            samples[container_id] = await contd.stats(namespace, container_id)
        except CallError as exc:
            if must_exist and is_not_found(exc):
                raise
            # Not running (or gone) just now: no row, or an empty one.

    async with open_nursery() as nursery:
        for container_id in ids:
            nursery.start_soon(one, container_id)
    return samples


def stats_row(container_id: str, now: ContainerStats | None, before: ContainerStats | None) -> dict[str, Any]:
    row: dict[str, Any] = {"ID": container_id, "Running": now is not None}
    if now is None:
        return row
    cpu = None
    if before is not None:
        elapsed = now.time.to_unix_nano() - before.time.to_unix_nano()
        if elapsed > 0:
            cpu = max(0.0, (now.cpu_usage - before.cpu_usage) / elapsed * 100)
    row.update(
        {
            "Time": nano_time(now.time),
            "CPUPercent": None if cpu is None else round(cpu, 2),
            "CPUUsage": now.cpu_usage,
            "MemoryUsage": now.memory_usage,
            "MemoryLimit": now.memory_limit,
            "MemoryCache": now.memory_cache,
            "MemoryPercent": round(now.memory_usage / now.memory_limit * 100, 2)
            if now.memory_limit
            else None,
            "Pids": now.pids,
        }
    )
    return row


def stats_table(rows: list[dict[str, Any]]) -> str:
    cells = []
    for row in rows:
        if not row["Running"]:
            cells.append((row["ID"], "-", "-", "-", "-"))
            continue
        limit = human_size(row["MemoryLimit"]) if row["MemoryLimit"] else "no limit"
        cells.append(
            (
                row["ID"],
                "-" if row["CPUPercent"] is None else f"{row['CPUPercent']:.2f}%",
                f"{human_size(row['MemoryUsage'])} / {limit}",
                "-" if row["MemoryPercent"] is None else f"{row['MemoryPercent']:.2f}%",
                row["Pids"],
            )
        )
    return table(cells, ("ID", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS"))


def human_size(size: int) -> str:
    """Bytes as docker and nerdctl write them: 1.953MiB, 64MiB, 512KiB."""
    value, unit = float(size), "B"
    for next_unit in ("KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, next_unit
    return f"{value:.4g}{unit}"


async def cmd_status(contd: ContainerClient, args: argparse.Namespace, out: Output) -> None:
    status = await contd.bus.status(MODULE, timeout=10)
    if args.json:
        out(plain(status))
        return
    objects = ", ".join(str(o) for o in status.objects) or "-"
    busy = sum(w.state == "busy" for w in status.workers)
    rows = [(i, w.state, plain(w.start_time), w.action) for i, w in enumerate(status.workers)]
    out(
        f"module {MODULE}: objects {objects}; workers {busy} busy of {len(status.workers)}\n"
        + table(rows, ("WORKER", "STATE", "SINCE", "ACTION"))
    )


async def cmd_events(contd: ContainerClient, args: argparse.Namespace, out: Output) -> None:
    async with contd.events() as events:
        async for event in events:
            if args.ns and event.get("Namespace") != args.ns:
                continue
            out(plain(event) if args.json else describe_event(event))


Command = Callable[[ContainerClient, argparse.Namespace, Output], Awaitable[int | None]]

COMMANDS: dict[str, Command] = {
    "run": cmd_run,
    "inspect": cmd_inspect,
    "delete": cmd_delete,
    "signal-delete": cmd_signal_delete,
    "ls": cmd_ls,
    "ns": cmd_ns,
    "exec": cmd_exec,
    "logs": cmd_logs,
    "stats": cmd_stats,
    "update": cmd_update,
    "status": cmd_status,
    "events": cmd_events,
}


def build_parser() -> argparse.ArgumentParser:
    # --json may come before or after the command: the subcommands' copy must
    # not reset what the top level read.
    common = _Parser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    parser = _Parser(
        prog="contdctl",
        description="Talk to the container daemon over zbus.",
        epilog="commands:\n" + SYNOPSIS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    add_client_flags(parser)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", parents=[common], help="run a container")
    run.add_argument("--ns", required=True, help="containerd namespace")
    run.add_argument("--file", help="a Container value in JSON or TOML (Go field names)")
    run.add_argument("--name")
    run.add_argument("--rootfs")
    run.add_argument("--netns", help="network namespace under /var/run/netns")
    run.add_argument("--entrypoint")
    run.add_argument("--env", action="append", default=[], metavar="K=V")
    run.add_argument("--mount", action="append", default=[], metavar="SRC:DST")
    run.add_argument("--workdir")
    run.add_argument("--cpu", type=int, default=0)
    run.add_argument("--memory", help="bytes, or with a unit: 256M, 1G")
    run.add_argument("--elevated", action="store_true")
    run.add_argument("--interactive", action="store_true")
    run.add_argument("--shutdown-timeout", help="e.g. 5s")

    for name, text in (
        ("inspect", "show a container"),
        ("delete", "stop and remove a container"),
        ("signal-delete", "ask a container to go away (SIGTERM, no restart)"),
    ):
        p = sub.add_parser(name, parents=[common], help=text)
        p.add_argument("namespace")
        p.add_argument("id")
    ls = sub.add_parser("ls", parents=[common], help="list the containers of a namespace")
    ls.add_argument("namespace")
    sub.add_parser("ns", parents=[common], help="list the namespaces")
    ex = sub.add_parser("exec", parents=[common], help="run a command in a container: exec NS ID -- ARGS...")
    ex.add_argument("namespace")
    ex.add_argument("id")
    ex.add_argument("--timeout", default="10s", help="the command's timeout (default %(default)s)")
    ex.add_argument("argv", nargs="*", metavar="ARGS", help="the command, after --")
    lg = sub.add_parser("logs", parents=[common], help="a container's output (stdout and stderr apart)")
    lg.add_argument("namespace")
    lg.add_argument("id")
    lg.add_argument("--follow", "-f", action="store_true", help="then print new lines until it is deleted")
    lg.add_argument("--tail", "-n", default="all", help="only the last N lines (default: all kept)")
    lg.add_argument("--since", help="only lines since a time (2026-11-28T22:52:00Z) or a duration ago (10m)")
    lg.add_argument("--timestamps", "-t", action="store_true", help="show when each line was written")
    up = sub.add_parser("update", parents=[common], help="change a running container's limits, live")
    up.add_argument("namespace")
    up.add_argument("id")
    up.add_argument("--memory", help="bytes, or with a unit: 256M, 1G")
    up.add_argument("--cpu", type=int, help="CPUs")
    st = sub.add_parser("stats", parents=[common], help="CPU, memory and PIDs of running containers")
    st.add_argument("namespace")
    st.add_argument("ids", nargs="*", metavar="ID", help="these containers only (default: every running one)")
    st.add_argument("--no-stream", action="store_true", help="print one sample and leave")
    sub.add_parser("status", parents=[common], help="the zbus status: objects, workers and what they do")
    ev = sub.add_parser("events", parents=[common], help="follow the container events")
    ev.add_argument("--ns", help="only this namespace")
    return parser


async def run_command(args: argparse.Namespace) -> int:
    def out(value: Any) -> None:
        text = json.dumps(value) if args.json else str(value)
        if text:
            print(text, flush=True)

    async with open_client(args.broker) as bus:
        contd = ContainerClient(bus, timeout=args.call_timeout)
        code = await COMMANDS[args.command](contd, args, out)
    return code or 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after "--" is exec's command, options included (argparse's
    # subparsers do not keep "--" apart reliably).
    command: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, command = argv[:split], argv[split + 1 :]
    args = parser.parse_args(argv)
    if command:
        if args.command != "exec":
            parser.error(f"'--' only separates exec's command, not {args.command}'s arguments")
        args.argv = [*args.argv, *command]
    try:
        parse_broker_url(args.broker)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        return taskgroups.run(run_command, args)
    except UsageError as exc:
        print(f"contdctl: {exc}", file=sys.stderr)
        return EXEC_FAILED if args.command == "exec" else 2
    except ZbusError as exc:
        print(f"contdctl: {exc}", file=sys.stderr)
        return EXEC_FAILED if args.command == "exec" else 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, as other tools do;
        # what is still buffered must not fail again at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
