"""``python -m contd_trio.repl``: a debug console for a live node.

An async Python prompt on Trio (top-level ``await``) with a ready client of
the container module::

    >>> c = Container(name="c1", rootfs="/rootfs", network=NetworkInfo("n1"), entrypoint="sleep 100")
    >>> await contd.run("ns", c)
    >>> await contd.inspect("ns", "c1")
    >>> await bus.status("container")
    >>> async for e in contd.events(): print(e)

Ctrl-C cancels the command that is running, or at a prompt discards the
unfinished input (as Python's REPL does); Ctrl-D leaves. Tab completion
and history when a terminal is present; with piped stdin it runs the lines
it is given, so it can be scripted.
"""

from __future__ import annotations

import argparse
import ast
import code
import contextlib
import contextvars
import inspect
import signal
import sys
import threading
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import CodeType, FunctionType
from typing import Any

import trio

from . import __version__, taskgroups
from .module.client import ContainerClient, add_client_flags
from .module.names import MODULE
from .module.types import Container, Logs, LogsRedis, MountInfo, NetworkInfo, Stats
from .zbus.client import Client, open_client
from .zbus.errors import ZbusError
from .zbus.transport import parse_broker_url

HISTORY = Path("~/.contd_repl_history").expanduser()


class TrioThread:
    """Trio (with its asyncio loop, as every program of the package has)
    running in a thread of its own, serving the console's commands.

    The console keeps the main thread, where Python delivers Ctrl-C as
    KeyboardInterrupt: at a prompt it discards the unfinished input, as in
    Python's own REPL, and while a command runs it cancels that command.
    """

    def __init__(self, broker: str, timeout: float) -> None:
        self.broker = broker
        self.timeout = timeout
        self.namespace: dict[str, Any] = {}
        self.objects: list[str] | str = ""
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._context = contextvars.Context()
        self._stop: trio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="trio", daemon=True)

    def start(self) -> None:
        """Connect, and return once commands can run.

        Raises:
            BaseException: what connecting raised.
        """
        self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            raise self._failure

    def stop(self) -> None:
        if self._token is not None and self._stop is not None:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(timeout=5)

    def _main(self) -> None:
        try:
            taskgroups.run(self._serve)
        except BaseException as exc:  # reported by start(), in the main thread
            self._failure = exc
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        async with open_client(self.broker) as bus, trio.open_nursery() as nursery:
            self.namespace = make_namespace(bus, self.timeout)
            try:
                status = await bus.status(MODULE, timeout=5)
                self.objects = [str(o) for o in status.objects] or "nothing yet"
            except ZbusError as exc:
                self.objects = f"unknown ({exc})"
            self._token = trio.lowlevel.current_trio_token()
            self._nursery = nursery
            # Commands run in this task's context, where trio-asyncio's loop is.
            self._context = contextvars.copy_context()
            self._stop = trio.Event()
            self._ready.set()
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    def run(self, function: Callable[[], Awaitable[Any]]) -> bool:
        """Run ``function()`` as a Trio task and wait for it; Ctrl-C cancels
        it. Returns whether it was cancelled.

        Raises:
            Exception: what it raised.
        """
        assert self._nursery is not None and self._token is not None
        done = threading.Event()
        scope = trio.CancelScope()
        failure: list[Exception] = []

        async def job() -> None:
            try:
                with scope:
                    try:
                        await function()
                    except Exception as exc:  # the user's code failed: the console shows it
                        failure.append(exc)
            finally:
                done.set()

        nursery = self._nursery
        # Ctrl-C is held back while the job is handed over (it must not be
        # lost between being started and being waited for), then cancels it.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            trio.from_thread.run_sync(
                lambda: self._context.run(nursery.start_soon, job), trio_token=self._token
            )
        finally:
            cancel = False
            try:
                signal.pthread_sigmask(signal.SIG_SETMASK, held)
            except KeyboardInterrupt:
                cancel = True
        while not done.is_set():
            try:
                if cancel:
                    trio.from_thread.run_sync(scope.cancel, trio_token=self._token)
                    cancel = False
                done.wait()
            except KeyboardInterrupt:
                cancel = True
        if failure:
            raise failure[0]
        return scope.cancelled_caught


class Console(code.InteractiveConsole):
    """Compiles with top-level await; runs each input that awaits as a Trio
    task (in :class:`TrioThread`), anything else here."""

    def __init__(self, namespace: dict[str, Any], trio_thread: TrioThread) -> None:
        super().__init__(locals=namespace)
        self.compile.compiler.flags |= ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        self.trio_thread = trio_thread

    def runcode(self, code: CodeType) -> None:
        function = FunctionType(code, self.locals)
        try:
            if inspect.iscoroutinefunction(function):
                if self.trio_thread.run(function):
                    self.write("cancelled\n")
            else:
                function()
        except SystemExit:
            raise
        except BaseException:  # the user's code failed (or Ctrl-C stopped it): show it, carry on
            self.showtraceback()

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
        "top-level await works; Ctrl-C cancels the running command (or the input), Ctrl-D leaves."
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


def run_console(broker: str, timeout: float) -> None:
    trio_thread = TrioThread(broker, timeout)
    trio_thread.start()
    try:
        interactive = sys.stdin.isatty()
        console = Console(trio_thread.namespace, trio_thread)
        if interactive:
            _enable_line_editing(trio_thread.namespace)
        else:
            sys.ps1 = sys.ps2 = ""  # scripted: only the results
        try:
            console.interact(_banner(broker, trio_thread.objects) if interactive else "", exitmsg="")
        finally:
            if interactive:
                _save_history()
    finally:
        trio_thread.stop()


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
        run_console(args.broker, args.call_timeout)
    except SystemExit as exc:
        return int(exc.code or 0) if isinstance(exc.code, int | None) else 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
