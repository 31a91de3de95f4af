"""The README's examples, run: every ``contdctl`` and REPL transcript in it
is played against the real daemon, Redis and containerd, so the README
cannot drift from what the tools do.

A transcript is a fenced block of ``$ command`` lines, each followed by
what it prints. The commands run one after the other in one bash (as a
reader would type them: ``export`` carries on, ``&`` runs in the
background), with stderr where stdout goes, as on a terminal; the REPL
transcript (``>>>`` lines, ``^C`` for Ctrl-C) is typed into the console
through a pty. What differs on every run is matched loosely: times, pids,
CPU and memory use, the checkout's directory, the Python and Trio versions.
The README's namespace ``demo`` becomes the test's containerd namespace and
network namespace; its ``.run/`` a directory of the test's, holding the
busybox rootfs. Lines a container prints on two pipes (``logs``) and lines
of a command in the background may come in any order against each other.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import re
import select
import shutil
import subprocess
import sys
import termios
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis
import trio

from contd_trio import ctl
from contd_trio.app import open_daemon
from contd_trio.config import Config
from contd_trio.module.client import ContainerClient
from contd_trio.zbus.client import open_client
from contd_trio.zbus.transport import parse_broker_url
from tests.helpers import wait_until

README = Path(__file__).resolve().parents[2] / "README.md"
BIN = Path(sys.executable).parent
EVENTS_CHANNEL = "container.container@0.0.1.Events"
#: How long one command may take (Delete waits out shutdown timeouts).
STEP_TIMEOUT = 120.0

# -- reading the README ------------------------------------------------------------------------


@dataclass
class Step:
    command: str
    expected: list[str] = field(default_factory=list)

    @property
    def in_background(self) -> bool:
        return re.search(r"&\s*(#.*)?$", self.command) is not None

    @property
    def prints_container_output(self) -> bool:
        return re.search(r"\bcontdctl\b.*\blogs\b", self.command) is not None

    @property
    def starts_the_console(self) -> bool:
        return "contd_trio.repl" in self.command and "|" not in self.command


@dataclass
class Transcript:
    line: int  # where it starts in the README
    steps: list[Step]


def transcripts(text: str) -> list[Transcript]:
    """The fenced blocks that show ``contdctl`` or REPL commands."""
    found = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        if not lines[index].startswith("```"):
            index += 1
            continue
        language = lines[index][3:].strip()
        start = index + 1
        end = lines.index("```", start)
        body = lines[start:end]
        index = end + 1
        if language or not any(
            b.startswith("$ ") and ("contdctl" in b or "contd_trio.repl" in b) for b in body
        ):
            continue
        steps: list[Step] = []
        position = 0
        while position < len(body):
            line = body[position]
            if line.startswith("$ "):
                command = [line[2:]]
                while command[-1].endswith("\\"):
                    position += 1
                    command.append(body[position])
                steps.append(Step("\n".join(command)))
            else:
                assert steps, f"README line {start + position + 1}: output before any command"
                steps[-1].expected.append(line)
            position += 1
        found.append(Transcript(start + 1, steps))
    return found


# -- what changes from run to run -------------------------------------------------------------------


@dataclass(frozen=True)
class Place:
    """Where the README's examples run in this test."""

    broker: str
    workdir: Path
    namespace: str
    netns: str


def localize_command(command: str, place: Place) -> str:
    command = command.replace("unix://$PWD/.run/redis.sock", place.broker)
    command = command.replace(".venv/bin/python", sys.executable)
    command = command.replace("--netns demo", f"--netns {place.netns}")
    command = command.replace('NetworkInfo("demo")', f'NetworkInfo("{place.netns}")')
    command = command.replace(
        '"Network": {"Namespace": "demo"}', f'"Network": {{"Namespace": "{place.netns}"}}'
    )
    return re.sub(r"\bdemo\b", place.namespace, command)


def localize_output(line: str, place: Place) -> str:
    line = line.replace("unix:///work/main/.run/redis.sock", place.broker)
    line = line.replace("/work/main", str(place.workdir))
    line = re.sub(r"^(Network\s+)demo$", rf"\g<1>{place.netns}", line)
    line = line.replace('"Network": {"Namespace": "demo"}', f'"Network": {{"Namespace": "{place.netns}"}}')
    return re.sub(r"\bdemo\b", place.namespace, line)


Rule = tuple[str, Callable[[re.Match[str]], str]]

#: What may differ in a line, and the pattern it is matched with instead.
LOOSE: list[Rule] = [
    (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z", lambda m: r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z"),
    (r"(?<=pid=)\d+|(?<=\"Pid\": )\d+|(?<=^Pid)\s+\d+", lambda m: r"\s*\d+"),
    (r"\b(running|stopped|created|paused)(\s+)\d+\b", lambda m: re.escape(m[1]) + r"\s+\d+"),
    (r"\d+\.\d\d%", lambda m: r"\d+\.\d\d%"),
    (r"\d+(?:\.\d+)?(?:B|KiB|MiB|GiB)(?= /)", lambda m: r"\d+(?:\.\d+)?(?:B|KiB|MiB|GiB)"),
    (r"\b[A-Z][a-z]{2}\s+\d{1,2}\s+\d\d:\d\d\b", lambda m: r"[A-Z][a-z]{2}\s+\d{1,2}\s+\d\d:\d\d"),
    (r"Python \d+\.\d+\.\d+, Trio [\d.]+", lambda m: r"Python \d+\.\d+\.\d+, Trio [\d.]+"),
    (r"\t| {2,}", lambda m: r"\s+"),
]


def pattern(line: str) -> re.Pattern[str]:
    """The expected ``line`` as a pattern: itself, but where LOOSE says."""
    spans: list[tuple[int, int, str]] = []
    for rule, loose in LOOSE:
        for match in re.finditer(rule, line):
            if not any(s < match.end() and match.start() < e for s, e, _ in spans):
                spans.append((match.start(), match.end(), loose(match)))
    spans.sort()
    parts, position = [], 0
    for start, end, loose_part in spans:
        parts += [re.escape(line[position:start]), loose_part]
        position = end
    parts.append(re.escape(line[position:]))
    return re.compile("".join(parts))


def unmatched(expected: list[str], actual: list[str], any_order: bool) -> str | None:
    """Why ``actual`` is not what was ``expected`` (None: it is)."""
    patterns = [pattern(line) for line in expected]
    if not any_order:
        if len(patterns) == len(actual) and all(
            p.fullmatch(a) for p, a in zip(patterns, actual, strict=True)
        ):
            return None
        return f"expected:\n  {chr(10).join(expected)}\ngot:\n  {chr(10).join(actual)}"
    left = list(actual)
    for line, compiled in zip(expected, patterns, strict=True):
        hit = next((a for a in left if compiled.fullmatch(a)), None)
        if hit is None:
            return f"expected (in any order) {line!r} among:\n  {chr(10).join(actual)}"
        left.remove(hit)
    return f"unexpected lines: {left}" if left else None


# -- running transcripts ------------------------------------------------------------------------------


class Shell:
    """One bash, fed one command at a time; what each prints is what comes
    before the mark printed after it."""

    MARK = "\x1e"

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.output = bytearray()
        self.count = 0

    async def read_forever(self) -> None:
        assert self.process.stdout is not None
        while chunk := await self.process.stdout.receive_some():
            self.output.extend(chunk)

    async def run(self, command: str) -> list[str]:
        assert self.process.stdin is not None
        self.count += 1
        mark = f"{self.MARK}{self.count}{self.MARK}\n".encode()
        await self.process.stdin.send_all(f"{command}\nprintf '\\036%s\\036\\n' {self.count}\n".encode())
        await wait_until(lambda: mark in self.output, timeout=STEP_TIMEOUT)
        at = self.output.index(mark)
        printed = bytes(self.output[:at])
        del self.output[: at + len(mark)]
        return printed.decode(errors="replace").splitlines()

    async def more_lines(self) -> list[str]:
        """Whole lines printed since (by commands in the background)."""
        end = self.output.rfind(b"\n") + 1
        printed = bytes(self.output[:end])
        del self.output[:end]
        return printed.decode(errors="replace").splitlines()


#: Where an event line (it starts with its time) begins inside another line.
_EMBEDDED_EVENT = re.compile(r"(?<=\S)(?=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)")


def _unmix(lines: list[str]) -> list[str]:
    """Lines of two processes sharing the terminal, apart again: an event
    printed in the background may land inside a line of the command in the
    foreground (before its newline), which no reader of a terminal would
    count against the README."""
    return [part for line in lines for part in _EMBEDDED_EVENT.split(line)]


async def play_shell(
    shell: Shell, transcript: Transcript, place: Place, subscribers: Callable[[], int]
) -> None:
    carried: list[str] = []  # lines of a background command not matched yet
    background = False
    for step in transcript.steps:
        where = f"README line {transcript.line}: $ {step.command}"
        command = localize_command(step.command, place)
        expected = [localize_output(line, place) for line in step.expected]
        before = subscribers()
        printed = await shell.run(command)
        if step.in_background:
            background = True
            if "events" in command:  # it follows: wait until it listens
                await wait_until(lambda before=before: subscribers() > before, timeout=30)  # type: ignore[misc]
            carried += printed
            continue
        if not background:
            problem = unmatched(expected, printed, any_order=step.prints_container_output)
            assert problem is None, f"{where}\n{problem}"
            continue
        # With a command in the background, its lines come when they come.
        pool = _unmix(carried + printed)
        with trio.move_on_after(15):
            while _only_extra(expected, pool) is None:
                await trio.sleep(0.05)
                pool += _unmix(await shell.more_lines())
        left = _only_extra(expected, pool)
        assert left is not None, f"{where}\n{unmatched(expected, pool, any_order=True)}"
        carried = left
    assert not carried, f"README line {transcript.line}: lines nobody expected: {carried}"


def _only_extra(expected: list[str], pool: list[str]) -> list[str] | None:
    """The lines of ``pool`` left once every expected one is found (in any
    order); None when one is missing."""
    left = list(pool)
    for line in expected:
        compiled = pattern(line)
        hit = next((a for a in left if compiled.fullmatch(a)), None)
        if hit is None:
            return None
        left.remove(hit)
    return left


async def play_console(step: Step, place: Place, line: int) -> None:
    """Type a REPL transcript into the console through a pty: ``>>>`` and
    ``...`` lines are typed at their prompt, ``^C`` presses Ctrl-C (at a
    prompt, or once the lines before it were shown); the screen must then
    read as the transcript."""
    expected = [localize_output(text, place) for text in step.expected]
    master, slave = os.openpty()

    def take_the_terminal() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    process = subprocess.Popen(
        ["bash", "-c", localize_command(step.command, place)],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=place.workdir,
        start_new_session=True,
        preexec_fn=take_the_terminal,
        env={**os.environ, "HOME": str(place.workdir)},
    )
    os.close(slave)
    screen = bytearray()

    def shown() -> str:
        readable, _, _ = select.select([master], [], [], 0.05)
        if readable:
            with contextlib.suppress(OSError):
                screen.extend(os.read(master, 65536))
        return screen.decode(errors="replace").replace("\r", "")

    async def until(condition: Callable[[str], bool], what: str) -> None:
        try:
            await wait_until(lambda: condition(shown()), timeout=30)
        except trio.TooSlowError:
            raise AssertionError(f"README line {line}: {what} never shown; the screen:\n{shown()}") from None

    try:
        typed = 0
        for index, text in enumerate(expected):
            if text.startswith((">>> ", "... ")):
                typed += 1
                await until(lambda s, n=typed: _prompt_count(s) >= n, f"prompt {typed}")
                entry = text[4:]
                if entry.endswith("^C"):
                    os.write(master, entry[:-2].encode())
                    os.write(master, b"\x03")
                else:
                    os.write(master, entry.encode() + b"\r")
            elif text.startswith("^C"):
                # The line before it, as a row of its own: not the echo of
                # the input that prints it (Ctrl-C would come before the run).
                shown_before = expected[index - 1]
                await until(lambda s, t=shown_before: t in s.split("\n")[:-1], repr(shown_before))
                os.write(master, b"\x03")
        await until(lambda s, n=typed + 1: _prompt_count(s) >= n, "the last prompt")
        os.write(master, b"\x04")
        with trio.fail_after(30):
            while process.poll() is None:
                shown()
                await trio.sleep(0.05)
        assert process.returncode == 0
        final = shown()
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
    rows = final.split("\n")
    while rows and rows[-1].strip() in ("", ">>>"):
        rows.pop()
    wanted = [re.sub(r"^(\.\.\. |>>> )(.*)\^C$", r"\1\2", text) for text in expected]
    problem = unmatched(wanted, rows, any_order=False)
    assert problem is None, f"README line {line}: the console\n{problem}"


def _prompt_count(screen: str) -> int:
    return sum(1 for row in screen.split("\n") if row.startswith((">>> ", "... ")))


# -- the test ----------------------------------------------------------------------------------------


def test_the_readme_lists_every_contdctl_command_as_its_help_does() -> None:
    text = README.read_text()
    assert ctl.SYNOPSIS in text + "\n"
    for name in ctl.COMMANDS:
        assert re.search(rf"(^  |\| ){re.escape(name)}\b", ctl.SYNOPSIS, re.MULTILINE), name


async def test_the_readme_transcripts_run_as_shown(
    daemon_config: Config,
    broker: str,
    ns: str,
    netns_name: str,
    busybox_rootfs: Path,
    tmp_path: Path,
) -> None:
    found = transcripts(README.read_text())
    assert len(found) >= 5 and sum(len(t.steps) for t in found) >= 30, (
        "the README's transcripts were not found"
    )
    workdir = tmp_path / "checkout"
    await trio.to_thread.run_sync(
        lambda: shutil.copytree(busybox_rootfs, workdir / ".run" / "rootfs" / "busybox", symlinks=True)
    )
    place = Place(broker=broker, workdir=workdir, namespace=ns, netns=netns_name)
    bus = redis.Redis(**parse_broker_url(broker).redis_kwargs())

    def subscribers() -> int:
        return int(bus.pubsub_numsub(EVENTS_CHANNEL)[0][1])

    # The daemon as tools/up runs it (16 workers: the status example shows them).
    config = dataclasses.replace(daemon_config, workers=16)
    # One shell for all the transcripts, as a reader follows the README
    # (an export in one holds in the next).
    async with open_daemon(config), open_client(broker) as client:
        contd = ContainerClient(client, timeout=120)
        process = await trio.lowlevel.open_process(
            ["bash", "--noprofile", "--norc"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "HOME": str(workdir)},
        )
        shell = Shell(process)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(shell.read_forever)
                for transcript in found:
                    if transcript.steps[0].starts_the_console:
                        await play_console(transcript.steps[0], place, transcript.line)
                    else:
                        await play_shell(shell, transcript, place, subscribers)
                        await shell.run("kill $(jobs -p) 2>/dev/null; wait")
                    # Each transcript starts with no container, as it reads on its own.
                    for container_id in await contd.list_containers(ns):
                        await contd.delete(ns, container_id)
                assert process.stdin is not None
                await process.stdin.send_all(b"exit 0\n")
                with trio.fail_after(30):
                    await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
