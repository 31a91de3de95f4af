"""What the fault tests share: the answers callers got, what containerd, the
daemon's root and the process table really hold, and ``contd`` run as a
process of its own (so a test can SIGKILL it).

Every check here looks from outside the daemon: ``ctr`` for containerd,
``/proc`` and the containers' cgroups for processes, the filesystem for the
daemon's root. The daemon's own account of things is what is being checked.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from contd_trio.module.names import MODULE, OBJECT
from contd_trio.module.types import Container, NetworkInfo
from contd_trio.zbus import codec
from contd_trio.zbus.client import Client
from contd_trio.zbus.errors import BusUnavailable, RequestTimedOut
from tests.helpers import STEADY
from tools import services

#: An entrypoint that leaves on SIGTERM.
COOPERATIVE = "sh -c 'trap \"exit 0\" TERM; while true; do sleep 0.1 & wait; done'"
#: An entrypoint that ignores SIGTERM: only SIGKILL ends it.
STUBBORN = "sh -c 'trap \"\" TERM; while true; do sleep 0.1 & wait; done'"
#: Words no answer may ever carry: a leaked exception group, or a bug.
FORBIDDEN = ("ExceptionGroup", "internal error", "Exceptions from Trio nursery")

CGROUP_ROOT = Path("/sys/fs/cgroup")


def fresh_namespace() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def container(rootfs: Path, netns: str, name: str, **fields: Any) -> Container:
    fields.setdefault("entrypoint", COOPERATIVE)
    return Container(name=name, rootfs=str(rootfs), network=NetworkInfo(netns), **fields)


# -- answers ----------------------------------------------------------------------------


@dataclass
class Answer:
    """What one caller got.

    ``kind`` is ``ok``, ``error`` (a call error), ``protocol`` (a protocol
    error), ``none`` (no answer within the caller's timeout), ``cancelled``
    (the test stopped waiting) or ``unsent`` (Redis refused the request).
    """

    kind: str
    text: str = ""
    value: Any = None
    seconds: float = 0.0

    def __str__(self) -> str:
        shown = self.text if len(self.text) <= 300 else self.text[:300] + "..."
        return f"{self.kind} after {self.seconds:.2f} s: {shown!r}"


async def ask(bus: Client, method: str, *args: Any, timeout: float) -> Answer:
    """Call a method of ``container@0.0.1`` and keep whatever came back."""
    started = trio.current_time()
    try:
        response = await bus.request(MODULE, OBJECT, method, *args, timeout=timeout)
    except RequestTimedOut as exc:
        return Answer("none", str(exc), seconds=trio.current_time() - started)
    except BusUnavailable as exc:
        return Answer("unsent", str(exc), seconds=trio.current_time() - started)
    seconds = trio.current_time() - started
    if response.error is not None:
        return Answer("protocol", response.error, seconds=seconds)
    if response.output.error is not None:
        return Answer("error", response.output.error, seconds=seconds)
    data = response.output.data
    return Answer("ok", value=codec.unpack(data) if data else None, seconds=seconds)


class Callers:
    """Concurrent calls whose answers are kept by name, as they arrive."""

    def __init__(self, bus: Client) -> None:
        self.bus = bus
        self.answers: dict[str, Answer] = {}
        self.asked: list[str] = []

    def start(self, nursery: trio.Nursery, name: str, method: str, *args: Any, timeout: float) -> None:
        self.asked.append(name)

        async def call() -> None:
            self.answers[name] = await ask(self.bus, method, *args, timeout=timeout)

        nursery.start_soon(call)

    def unanswered(self) -> list[str]:
        return [name for name in self.asked if name not in self.answers]

    def mark_cancelled(self) -> None:
        for name in self.unanswered():
            self.answers[name] = Answer("cancelled", "the test stopped waiting")

    def named(self, *kinds: str) -> set[str]:
        return {name for name, answer in self.answers.items() if answer.kind in kinds}

    def report(self) -> str:
        return "\n".join(f"  {name}: {self.answers.get(name, 'not answered yet')}" for name in self.asked)


def answer_problems(callers: Callers, *, allowed: Iterable[str] = ("ok", "error")) -> list[str]:
    """Every caller got an answer of an allowed kind, and none leaks a bug."""
    allowed = set(allowed)
    problems = []
    for name in callers.asked:
        answer = callers.answers.get(name)
        if answer is None:
            problems.append(f"{name}: no answer at all")
            continue
        if answer.kind not in allowed:
            problems.append(f"{name}: answer of kind {answer.kind} (allowed: {sorted(allowed)}): {answer}")
        if any(word in answer.text for word in FORBIDDEN):
            problems.append(f"{name}: the answer leaks a bug: {answer}")
    return problems


# -- what is really there ----------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _cgroup_base(namespace: str) -> Path | None:
    # cgroup v1 has one tree per controller (pids is enough); v2 one tree.
    for controller in (CGROUP_ROOT / "pids", CGROUP_ROOT / "memory", CGROUP_ROOT):
        if (controller / namespace).is_dir():
            return controller / namespace
    return None


def cgroup_processes(namespace: str) -> dict[str, list[int]]:
    """The live processes in each container cgroup ``/<ns>/<id>``."""
    base = _cgroup_base(namespace)
    found: dict[str, list[int]] = {}
    if base is None:
        return found
    for child in base.iterdir():
        procs = child / "cgroup.procs"
        if not child.is_dir() or not procs.exists():
            continue
        with contextlib.suppress(OSError):
            pids = [int(p) for p in procs.read_text().split() if _alive(int(p))]
            if pids:
                found[child.name] = pids
    return found


def command_line(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


@dataclass
class Holdings:
    """What one namespace really holds, seen from outside the daemon."""

    containers: set[str]
    #: container id -> (status as ctr prints it, pid)
    tasks: dict[str, tuple[str, int]]
    shims: list[int]
    processes: dict[str, list[int]]
    #: file names under ``<root>/logs/<ns>``
    log_files: set[str]
    #: paths under ``<root>/exec``, relative to it
    exec_files: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return (
            f"containers={sorted(self.containers)} tasks={self.tasks} shims={len(self.shims)} "
            f"processes={self.processes} logs={sorted(self.log_files)} exec={self.exec_files}"
        )


def holdings(address: Path, root: Path, namespace: str) -> Holdings:
    """Blocking (runs ``ctr``): call from a thread."""
    containers = set(
        services.ctr(address, "containers", "list", "-q", namespace=namespace, check=False).split()
    )
    tasks = {}
    for line in services.ctr(address, "tasks", "list", namespace=namespace, check=False).splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 3:
            tasks[parts[0]] = (parts[2], int(parts[1]))
    logs_dir = root / "logs" / namespace
    log_files = {p.name for p in logs_dir.iterdir()} if logs_dir.is_dir() else set()
    exec_dir = root / "exec"
    exec_files = (
        sorted(str(p.relative_to(exec_dir)) for p in exec_dir.rglob("*") if p.is_file())
        if exec_dir.is_dir()
        else []
    )
    return Holdings(
        containers=containers,
        tasks=tasks,
        shims=services.shim_pids(address, namespace),
        processes=cgroup_processes(namespace),
        log_files=log_files,
        exec_files=exec_files,
    )


def holdings_problems(
    held: Holdings, *, running: Iterable[str] = (), absent: Iterable[str] = ()
) -> list[str]:
    """How ``held`` differs from what the answers said.

    ``running``: containers whose Run answered success (and nobody removed).
    ``absent``: containers whose Run did not answer success, or whose Delete
    did. Everything else must be whole (a container with a running task, its
    shim, its processes and its log) or not there at all.
    """
    problems = []
    for cid in sorted(set(running)):
        task = held.tasks.get(cid)
        if cid not in held.containers:
            problems.append(f"{cid}: its Run answered success but containerd has no such container")
        if task is None or task[0] != "RUNNING":
            problems.append(f"{cid}: its Run answered success but its task is {task}")
        if not held.processes.get(cid):
            problems.append(f"{cid}: its Run answered success but no process runs in its cgroup")
        if f"{cid}.log" not in held.log_files:
            problems.append(f"{cid}: its Run answered success but it has no log file")
    for cid in sorted(set(absent)):
        if cid in held.containers:
            problems.append(
                f"{cid}: answered as not made (or deleted) but containerd has it, task {held.tasks.get(cid)}"
            )
        elif cid in held.tasks:
            problems.append(f"{cid}: answered as not made (or deleted) but its task is {held.tasks[cid]}")
        if held.processes.get(cid):
            procs = {p: command_line(p) for p in held.processes[cid]}
            problems.append(
                f"{cid}: answered as not made (or deleted) but processes run in its cgroup: {procs}"
            )
        left = sorted(name for name in held.log_files if name.startswith(f"{cid}.log"))
        if left:
            problems.append(f"{cid}: answered as not made (or deleted) but its log files remain: {left}")
    for cid in sorted(held.containers):
        task = held.tasks.get(cid)
        if task is None or task[0] != "RUNNING":
            problems.append(f"{cid}: a container without a running task (half made or half deleted): {task}")
    for cid, pids in sorted(held.processes.items()):
        if cid not in held.tasks:
            problems.append(f"{cid}: processes {pids} run in its cgroup but containerd has no task for it")
    if len(held.shims) != len(held.tasks):
        problems.append(
            f"{len(held.shims)} runc shims run for {len(held.tasks)} tasks: "
            + ", ".join(f"{pid} {command_line(pid)}" for pid in held.shims)
        )
    for name in sorted(held.log_files):
        if name.split(".log")[0] not in held.containers:
            problems.append(f"log file {name} of a container containerd does not have")
    if held.exec_files:
        problems.append(f"exec output files left: {held.exec_files}")
    return problems


async def settled(observe: Callable[[], list[str]], timeout: float) -> list[str]:
    """Poll ``observe`` (blocking; run in a thread) until it finds no problem,
    for at most ``timeout`` seconds; returns the problems left (none: settled)."""
    problems: list[str] = []
    with trio.move_on_after(timeout):
        while True:
            problems = await trio.to_thread.run_sync(observe)
            if not problems:
                return []
            await trio.sleep(0.2)
    return [f"(still after {timeout:g} s) {p}" for p in problems]


class Findings:
    """Problems gathered over a whole scenario, reported together at its end,
    so one run shows every way the daemon strayed from its answers."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def add(self, phase: str, problems: Iterable[str]) -> None:
        self.problems.extend(f"[{phase}] {p}" for p in problems)

    def check(self, phase: str, ok: bool, problem: str) -> None:
        if not ok:
            self.problems.append(f"[{phase}] {problem}")

    def assert_none(self, context: str = "") -> None:
        if self.problems:
            raise AssertionError("\n".join([*self.problems, context]).rstrip())


# -- contd as a process ----------------------------------------------------------------


class ContdProcess:
    """``contd`` as zinit would run it, against test services."""

    def __init__(
        self,
        redis_service: services.RedisService,
        containerd: services.ContainerdService,
        root: Path,
        log_path: Path,
        *flags: str,
    ) -> None:
        self.command = services.contd_command(redis_service, containerd, root, *flags)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        #: Where this run's lines start in the log file.
        self.log_offset = 0

    def start(self) -> None:
        self.log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()

    def log(self, *, whole: bool = False) -> str:
        """This run's log lines (every run's with ``whole``)."""
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        return data[0 if whole else self.log_offset :].decode(errors="replace")

    def tail(self, lines: int = 40) -> str:
        text = self.log(whole=True).splitlines()[-lines:]
        return "\n".join(line if len(line) < 400 else line[:400] + "..." for line in text)

    def state(self) -> str:
        if self.process is None:
            return "never started"
        code = self.process.poll()
        return "running" if code is None else f"exited with {code}"


async def run_in_flight(bus: Client) -> bool:
    """Whether a worker of the daemon is busy with a Run (its status object says)."""
    status = await bus.status(MODULE, timeout=10)
    return any(w.state == "busy" and w.action == f"[{OBJECT}].Run()" for w in status.workers)


async def within(predicate: Callable[[], Any], timeout: float, interval: float = 0.05) -> bool:
    """Whether ``predicate`` (sync or async) became true within ``timeout``;
    for the waits whose failure is a finding to report, not a reason to stop."""
    with trio.move_on_after(timeout):
        while True:
            result = predicate()
            if hasattr(result, "__await__"):
                result = await result
            if result:
                return True
            await trio.sleep(interval)
    return False


_LEAF_ERROR = re.compile(
    r"^[\s|+-]*((?:\w+\.)*\w*(?:Error|Exception|Exit|Cancelled)\b(?::.*)?)$", re.MULTILINE
)


def leaf_errors(log: str, limit: int = 5) -> list[str]:
    """The exceptions a log's tracebacks end in (exception groups skipped),
    last ones first: what killed a daemon, in a line each."""
    found: list[str] = []
    for match in reversed(_LEAF_ERROR.findall(log)):
        line = match.strip()
        if line.startswith(("ExceptionGroup", "BaseExceptionGroup")) or line in found:
            continue
        found.append(line if len(line) <= 300 else line[:300] + "...")
        if len(found) == limit:
            break
    return found


async def serving_with_c1(daemon: ContdProcess, bus: Client, ns: str, rootfs: Path, netns: str) -> None:
    """Wait until ``daemon`` serves, then Run a steady ``c1`` through it."""
    assert await within(lambda: "serving" in daemon.log(), 30), daemon.tail()
    spec = container(rootfs, netns, "c1", entrypoint=STEADY)
    assert (await ask(bus, "Run", ns, spec, timeout=30)).kind == "ok"
