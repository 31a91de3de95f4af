"""``contdctl``: the container daemon from a shell, for humans and scripts.

    contdctl [-broker URL] [--json] COMMAND ...

The broker is also read from ``CONTD_BROKER``. Tables by default, ``--json``
for scripts; the exit code is 0 on success, 1 when the daemon answered with
an error (its text on stderr), 2 for a bad command line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tomllib
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import msgpack
import trio

from . import runtime
from .config import DEFAULT_ROOT, parse_duration, parse_size
from .module.client import ContainerClient, add_client_flags
from .module.logfiles import rotated
from .module.service import MODULE
from .module.types import Container, MountInfo, NetworkInfo
from .zbus import codec
from .zbus.client import open_client
from .zbus.errors import ZbusError
from .zbus.gotypes import ArgumentTypeError
from .zbus.transport import parse_broker_url

Output = Callable[[Any], None]

#: exec's exit codes of its own, as docker exec's and timeout(1)'s: the
#: daemon (or the command line) failed; the process ran past --timeout.
EXEC_FAILED = 125
EXEC_TIMED_OUT = 124


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
    mounts = []
    for spec in args.mount:
        source, sep, target = spec.partition(":")
        if not sep or not source or not target:
            raise UsageError(f"--mount {spec!r}: expecting SRC:DST")
        mounts.append(MountInfo(source, target))
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
        rootfs=args.rootfs,
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
    may be written ``"5s"``, sizes ``"256M"``."""
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
        return Container.from_go(value)
    except (ValueError, ArgumentTypeError) as exc:
        raise UsageError(f"--file {path}: {exc}") from None


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
    text = await contd.logs(args.namespace, args.id)
    if args.json and not args.follow:
        out({"Logs": text})
        return
    if text:
        sys.stdout.write(text if not args.json else json.dumps({"Line": text}) + "\n")
        sys.stdout.flush()
    if args.follow:
        await follow_logs(contd, args)


async def follow_logs(contd: ContainerClient, args: argparse.Namespace) -> None:
    """Print new lines as the log file grows (across rotations) until the
    container is deleted (its ``deleted`` event) or Ctrl-C."""
    path = Path(args.root) / "logs" / args.namespace / f"{args.id}.log"
    if not path.parent.is_dir():
        raise UsageError(f"logs --follow reads {path}: pass --root as the daemon's -root")
    async with contd.events() as events, trio.open_nursery() as nursery:

        async def until_deleted() -> None:
            async for event in events:
                if (
                    event.get("Namespace") == args.namespace
                    and event.get("ID") == args.id
                    and event.get("Kind") == "deleted"
                ):
                    await trio.sleep(0.3)  # the last lines
                    nursery.cancel_scope.cancel()

        nursery.start_soon(until_deleted)
        position = path.stat().st_size if path.exists() else 0
        inode = path.stat().st_ino if path.exists() else None
        while True:
            await trio.sleep(0.2)
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            if stat.st_ino != inode:
                # Rotated: finish the old file, then start the new one at its beginning.
                old = rotated(path)
                if inode is not None and old.exists() and old.stat().st_ino == inode:
                    emit(old.read_bytes()[position:], args.json)
                inode, position = stat.st_ino, 0
            if stat.st_size > position:
                chunk = await trio.to_thread.run_sync(_read_from, path, position)
                position += len(chunk)
                emit(chunk, args.json)


def _read_from(path: Path, position: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(position)
        return f.read()


def emit(chunk: bytes, as_json: bool) -> None:
    text = chunk.decode("utf-8", "replace")
    if as_json:
        for line in text.splitlines():
            sys.stdout.write(json.dumps({"Line": line}) + "\n")
    else:
        sys.stdout.write(text)
    sys.stdout.flush()


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
    "status": cmd_status,
    "events": cmd_events,
}


def build_parser() -> argparse.ArgumentParser:
    # --json may come before or after the command: the subcommands' copy must
    # not reset what the top level read.
    common = _Parser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    parser = _Parser(prog="contdctl", description="Talk to the container daemon over zbus.")
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
    lg = sub.add_parser("logs", parents=[common], help="the last 100 lines of output")
    lg.add_argument("namespace")
    lg.add_argument("id")
    lg.add_argument("--follow", "-f", action="store_true", help="then print new lines until it is deleted")
    lg.add_argument(
        "--root",
        default=os.environ.get("CONTD_ROOT", str(DEFAULT_ROOT)),
        help="the daemon's -root, whose log files --follow reads (default: $CONTD_ROOT or %(default)s)",
    )
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
        return runtime.run(run_command, args)
    except UsageError as exc:
        print(f"contdctl: {exc}", file=sys.stderr)
        return EXEC_FAILED if args.command == "exec" else 2
    except ZbusError as exc:
        print(f"contdctl: {exc}", file=sys.stderr)
        return EXEC_FAILED if args.command == "exec" else 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
