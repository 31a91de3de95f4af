"""``python -m contd_trio.repl``: a debug console for a live node.

An async Python prompt on Trio (top-level ``await``) with a ready client of
the container module::

    >>> c = Container(name="c1", rootfs="/rootfs", network=NetworkInfo("n1"), entrypoint="sleep 100")
    >>> await contd.run("ns", c)
    >>> await contd.inspect("ns", "c1")
    >>> await bus.status("container")
    >>> async for e in contd.events(): print(e)

Ctrl-C cancels the command that is running; Ctrl-D leaves. Tab completion
and history when a terminal is present; with piped stdin it runs the lines
it is given, so it can be scripted.
"""

from __future__ import annotations

import argparse
import ast
import code
import contextlib
import inspect
import signal
import sys
import traceback
from pathlib import Path
from types import CodeType, FunctionType
from typing import Any

import trio

from . import __version__, runtime
from .module.client import ContainerClient, add_client_flags
from .module.service import MODULE
from .module.types import Container, Logs, LogsRedis, MountInfo, NetworkInfo, Stats
from .zbus.client import Client, open_client
from .zbus.errors import ZbusError
from .zbus.transport import parse_broker_url

HISTORY = Path("~/.contd_repl_history").expanduser()


class Console(code.InteractiveConsole):
    """Compiles with top-level await; runs each input as a Trio task that
    Ctrl-C cancels. Input is read in a worker thread."""

    def __init__(self, namespace: dict[str, Any], token: trio.lowlevel.TrioToken) -> None:
        super().__init__(locals=namespace)
        self.compile.compiler.flags |= ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        self.token = token
        self.running: trio.CancelScope | None = None

    def runcode(self, code: CodeType) -> None:
        function = FunctionType(code, self.locals)
        try:
            if inspect.iscoroutinefunction(function):
                trio.from_thread.run(self._run, function, trio_token=self.token)
            else:
                function()
        except (Exception, KeyboardInterrupt):  # the user's code failed: show it, carry on
            self.showtraceback()

    async def _run(self, function: Any) -> None:
        with trio.CancelScope() as scope:
            self.running = scope
            try:
                await function()
            finally:
                self.running = None
        if scope.cancelled_caught:
            self.write("cancelled\n")

    def showtraceback(self) -> None:
        kind, value, tb = sys.exc_info()
        # Expected errors (a call error from the daemon) read better without a traceback.
        if isinstance(value, ZbusError):
            self.write(f"{type(value).__name__}: {value}\n")
            return
        lines = traceback.format_exception(kind, value, tb.tb_next if tb else None)
        self.write("".join(lines))


def _banner(broker: str, objects: list[str] | str) -> str:
    loaded = ", ".join(objects) if isinstance(objects, list) else objects
    return (
        f"contd REPL {__version__} (Python {sys.version.split()[0]}, Trio {trio.__version__})\n"
        f"broker {broker}; module {MODULE} serves: {loaded}\n"
        "ready: contd (container client), bus (zbus client: await bus.status('container')),\n"
        "       Container, NetworkInfo, MountInfo, Logs, LogsRedis, Stats, trio\n"
        "top-level await works; Ctrl-C cancels the running command, Ctrl-D leaves."
    )


def _enable_line_editing(namespace: dict[str, Any]) -> None:
    with contextlib.suppress(ImportError, OSError):
        import readline
        import rlcompleter

        readline.set_completer(rlcompleter.Completer(namespace).complete)
        readline.parse_and_bind("tab: complete")
        if HISTORY.exists():
            readline.read_history_file(HISTORY)
        readline.set_history_length(2000)


def _save_history() -> None:
    with contextlib.suppress(ImportError, OSError):
        import readline

        readline.write_history_file(HISTORY)


async def _cancel_on_sigint(console: Console) -> None:
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        async for _ in signals:
            if console.running is not None:
                console.running.cancel()
            else:
                sys.stderr.write("\n(Ctrl-D or exit() leaves)\n")


async def run_console(broker: str, timeout: float) -> None:
    async with open_client(broker) as bus:
        namespace = make_namespace(bus, timeout)
        try:
            status = await bus.status(MODULE, timeout=5)
            objects: list[str] | str = [str(o) for o in status.objects] or "nothing yet"
        except ZbusError as exc:
            objects = f"unknown ({exc})"
        interactive = sys.stdin.isatty()
        console = Console(namespace, trio.lowlevel.current_trio_token())
        if interactive:
            _enable_line_editing(namespace)
        else:
            sys.ps1 = sys.ps2 = ""  # scripted: only the results
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_cancel_on_sigint, console)
            try:
                await trio.to_thread.run_sync(
                    lambda: console.interact(_banner(broker, objects) if interactive else "", exitmsg=""),
                    abandon_on_cancel=True,
                )
            finally:
                if interactive:
                    _save_history()
                nursery.cancel_scope.cancel()


def make_namespace(bus: Client, timeout: float) -> dict[str, Any]:
    return {
        "__name__": "__console__",
        "bus": bus,
        "contd": ContainerClient(bus, timeout=timeout),
        "Container": Container,
        "NetworkInfo": NetworkInfo,
        "MountInfo": MountInfo,
        "Logs": Logs,
        "LogsRedis": LogsRedis,
        "Stats": Stats,
        "trio": trio,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m contd_trio.repl", description=__doc__.splitlines()[0])
    add_client_flags(parser)
    args = parser.parse_args(argv)
    try:
        parse_broker_url(args.broker)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        runtime.run(run_console, args.broker, args.call_timeout)
    except SystemExit as exc:
        return int(exc.code or 0) if isinstance(exc.code, int | None) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
