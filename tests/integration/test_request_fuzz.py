"""Property tests: whole request payloads with invalid UTF-8, wrong types and
huge values in every field of every method, and in the request envelope.

Payloads are raw msgpack pushed to ``container.container@0.0.1`` (and to the
status queue), as a Go client, or a buggy one, would push them: a Go string
may hold any bytes, so a msgpack str need not be UTF-8. Each example changes
one position of an otherwise valid request. After each one the daemon must
have answered (or dropped a payload nobody can be answered for), must still
serve a status request and a normal call, and must have created nothing: no
namespace or container in containerd, no file under its root, no process.

One daemon, a process of its own on its own Redis and containerd, serves
every example (restarted, and the example failed, if one kills it). The
examples are sync: they speak Redis directly and need no event loop.
Shrinking is off: a payload that kills the daemon would make every shrink
step restart it; each example changes one position, which the failure names.
"""

from __future__ import annotations

import copy
import re
import struct
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import pytest
import redis
from hypothesis import HealthCheck, Phase, example, given, note, settings
from hypothesis import strategies as st

from contd_trio.module.names import MODULE, OBJECT
from contd_trio.zbus import codec
from tests.helpers import go_pack
from tests.integration.faultkit import FORBIDDEN, ContdProcess, command_line, holdings, leaf_errors
from tools import services

QUEUE = codec.queue_name(MODULE, OBJECT)
STATUS_QUEUE = codec.queue_name(MODULE, codec.STATUS_OBJECT)
#: The one container the examples may touch; Run always asks for this name,
#: so a Run whose changed position happens to be valid gets "already exists".
TAKEN = "taken"
#: How long the daemon may take to deal with one payload: past its own
#: request deadline (``-timeout 10``), so a request it cancels is answered.
DRAIN_SECONDS = 20.0
#: The longest error an answer may carry: user values are quoted shortened.
MAX_ERROR_CHARS = 2000

FUZZ = settings(
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
)


# -- msgpack as any Go client may write it --------------------------------------------------


@dataclass(frozen=True)
class GoStr:
    """A msgpack str of arbitrary bytes: a Go string holding invalid UTF-8."""

    data: bytes

    def __repr__(self) -> str:
        shown = self.data if len(self.data) <= 80 else self.data[:80] + b"..."
        return f"GoStr({shown!r}, {len(self.data)} bytes)"


def _head(count: int, fix: int, fix_limit: int, codes: tuple[int, int, int]) -> bytes:
    if count < fix_limit:
        return bytes([fix | count])
    if codes[0] and count < 256:
        return bytes([codes[0], count])
    if count < 65536:
        return bytes([codes[1]]) + struct.pack(">H", count)
    return bytes([codes[2]]) + struct.pack(">I", count)


def wire(value: Any) -> bytes:
    """msgpack of ``value`` as Go's encoder writes it (ints as int64/uint64),
    with :class:`GoStr` for strings that are not UTF-8."""
    if value is None or isinstance(value, bool | int):
        return go_pack(value)
    if isinstance(value, float):
        return b"\xcb" + struct.pack(">d", value)
    if isinstance(value, str | GoStr):
        data = value.data if isinstance(value, GoStr) else value.encode()
        return _head(len(data), 0xA0, 32, (0xD9, 0xDA, 0xDB)) + data
    if isinstance(value, bytes):
        return _head(len(value), 0, 0, (0xC4, 0xC5, 0xC6)) + value
    if isinstance(value, msgpack.Timestamp):
        return msgpack.packb(value)  # type: ignore[no-any-return]
    if isinstance(value, list):
        return _head(len(value), 0x90, 16, (0, 0xDC, 0xDD)) + b"".join(wire(v) for v in value)
    if isinstance(value, dict):
        body = b"".join(wire(k) + wire(v) for k, v in value.items())
        return _head(len(value), 0x80, 16, (0, 0xDE, 0xDF)) + body
    raise TypeError(f"cannot write {type(value).__name__}")


def envelope(
    method: str, args: list[Any], reply_to: Any, *, object_name: str = OBJECT.name
) -> dict[str, Any]:
    return {
        "ID": str(uuid.uuid4()),
        "Inputs": [wire(a) for a in args],
        "Object": {"Name": object_name, "Version": OBJECT.version},
        "ReplyTo": reply_to,
        "Method": method,
    }


# -- the daemon under test ----------------------------------------------------------------


@dataclass
class Target:
    redis_service: services.RedisService
    containerd: services.ContainerdService
    daemon: ContdProcess
    bus: redis.Redis
    root: Path
    ns: str
    rootfs: Path
    netns: str
    #: A directory a bind mount may take (not /tmp: the policy refuses a
    #: source holding containerd's socket, and the tests' run in /tmp).
    mount_source: Path
    restarts: int = 0
    #: The last example saw it stop serving.
    suspect: bool = False

    def answer(self, reply_to: str, timeout: float = 10.0) -> codec.Response | None:
        got = self.bus.blpop([reply_to], timeout)
        return None if got is None else codec.decode_response(bytes(got[1]))

    def call(self, method: str, *args: Any, timeout: float = 60.0) -> codec.Response | None:
        reply_to = f"fuzz.call.{uuid.uuid4()}"
        self.bus.rpush(QUEUE, wire(envelope(method, list(args), reply_to)))
        return self.answer(reply_to, timeout)

    def status(self, timeout: float = 5.0) -> codec.Status | None:
        reply_to = f"fuzz.status.{uuid.uuid4()}"
        request = envelope("Status", [], reply_to, object_name=codec.STATUS_OBJECT.name)
        request["Object"]["Version"] = codec.STATUS_OBJECT.version
        self.bus.rpush(STATUS_QUEUE, wire(request))
        response = self.answer(reply_to, timeout)
        if response is None or response.output.data is None:
            return None
        return codec.decode_status(response.output.data)

    def drained(self) -> bool:
        """Every request taken and answered: answers leave in order, so the
        status answer comes after theirs."""
        deadline = time.monotonic() + DRAIN_SECONDS
        while time.monotonic() < deadline:
            if self.bus.llen(QUEUE) == 0 and self.bus.llen(STATUS_QUEUE) == 0:
                status = self.status()
                if status is None:
                    return False  # not even a status answer: it stopped serving
                if all(w.state == "free" for w in status.workers):
                    return True
            time.sleep(0.05)
        return False

    def ensure_serving(self) -> None:
        """Before an example: a daemon that serves (a new one if the last example killed it)."""
        if not self.suspect and self.daemon.alive():
            return
        self.suspect = False
        self.restarts += 1
        self.daemon.kill()
        self.daemon.start()
        assert self.status(timeout=30) is not None, self.daemon.tail()

    def files(self) -> frozenset[str]:
        return frozenset(str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file())

    def world(self) -> World:
        held = holdings(self.containerd.address, self.root, self.ns)
        return World(
            namespaces=frozenset(services.ctr(self.containerd.address, "namespaces", "list", "-q").split()),
            containers=frozenset(held.containers),
            running=frozenset(cid for cid, (status, _) in held.tasks.items() if status == "RUNNING"),
            shims=len(held.shims),
            strays=frozenset(
                (pid, " ".join(command_line(pid)))
                for pids in held.processes.values()
                for pid in pids
                if command_line(pid) not in (["sleep", "1000"], [])
            ),
            files=self.files(),
        )


@dataclass(frozen=True)
class World:
    """What containerd, the daemon's root and the process table hold."""

    namespaces: frozenset[str]
    containers: frozenset[str]
    running: frozenset[str]
    shims: int
    #: processes in the containers' cgroups other than the entrypoint
    strays: frozenset[tuple[int, str]]
    files: frozenset[str]

    def changes_since(self, before: World) -> list[str]:
        """What this payload made (or unmade); judged against the example's
        start, so one leak is blamed on its own example only."""
        problems = []
        for what in ("namespaces", "containers", "files", "strays"):
            made = sorted(getattr(self, what) - getattr(before, what))
            gone = sorted(getattr(before, what) - getattr(self, what))
            if made:
                problems.append(f"{what} made: {made}")
            if gone and what != "strays":  # a process ending is fine
                problems.append(f"{what} gone: {gone}")
        if before.running - self.running:
            problems.append(f"no longer running: {sorted(before.running - self.running)}")
        if self.shims != before.shims:
            problems.append(f"{self.shims} runc shims, {before.shims} before")
        return problems


def base_container(target: Target) -> dict[str, Any]:
    """A valid Run request's Container, every field set (Go shape)."""
    return {
        "Name": TAKEN,
        "RootFS": str(target.rootfs),
        "Env": ["A=1"],
        "WorkingDir": "/",
        "Network": {"Namespace": target.netns},
        "Mounts": [
            {"Source": str(target.mount_source), "Target": "/mnt", "Type": "bind", "Options": ["rbind"]}
        ],
        "Entrypoint": "sleep 1000",
        "Interactive": False,
        "CPU": 1,
        "Memory": 64 << 20,
        "Logs": [
            {
                "Type": "redis",
                "Data": {"Stdout": "redis://127.0.0.1:1/out", "Stderr": "redis://127.0.0.1:1/e"},
            }
        ],
        "Stats": [{"Type": "redis", "Endpoint": "redis://127.0.0.1:1/stats"}],
        "Elevated": False,
        "CreatedAt": msgpack.Timestamp(1_700_000_000, 0),
        "RootFsPropagation": "",
        "ShutdownTimeout": 10**9,
    }


def base_args(target: Target, method: str) -> list[Any]:
    """Valid arguments that create nothing: Run asks for the existing name,
    Delete and SignalDelete for a container that does not exist."""
    if method == "Run":
        return [target.ns, base_container(target)]
    if method in ("Delete", "SignalDelete"):
        return [target.ns, "nosuch"]
    if method in ("Exec", "ExecOutput"):
        return [target.ns, TAKEN, 5 * 10**9, "true"]
    if method == "Update":
        return [target.ns, "nosuch", 1, 64 << 20]
    return {
        "Inspect": [target.ns, TAKEN],
        "List": [target.ns],
        "ListNS": [],
        "Logs": [target.ns, TAKEN],
        "LogsFrom": [target.ns, TAKEN, "", 0],
        "LogsTail": [target.ns, TAKEN, 10, codec.GO_ZERO_TIME],
        "Stats": [target.ns, TAKEN],
    }[method]


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path) -> Iterator[Target]:
    base = tmp_path_factory.mktemp("fuzz")
    redis_service = services.start_redis(base, name="fuzz-redis")
    try:
        containerd = services.start_containerd(base)
        try:
            with services.network_namespace() as netns:
                root = base / "root"
                daemon = ContdProcess(
                    redis_service,
                    containerd,
                    root,
                    base / "contd.log",
                    "-timeout",
                    "10",
                    "-start-settle",
                    "100ms",
                )
                daemon.start()
                try:
                    bus = redis.Redis(unix_socket_path=str(redis_service.socket_path), socket_timeout=None)
                    source = base / "mount-source"
                    source.mkdir()
                    found = Target(
                        redis_service, containerd, daemon, bus, root, "fuzz", busybox_rootfs, netns, source
                    )
                    assert found.status(timeout=30) is not None, daemon.tail()
                    # No backends for the one that runs: nothing of it talks to Redis.
                    ns, taken = base_args(found, "Run")
                    run = found.call("Run", ns, taken | {"Logs": None, "Stats": None})
                    assert run is not None and run.error is None and run.output.error is None, run
                    yield found
                finally:
                    daemon.stop()
        finally:
            try:
                services.reap_containerd(containerd.address)
            finally:
                containerd.stop()
    finally:
        redis_service.stop()


# -- where a value can go -----------------------------------------------------------------


@dataclass(frozen=True)
class Position:
    """One place in a method's arguments: ``path`` starts with the argument's
    index; ``kind`` is its Go type; ``names`` are the words (any one) an error
    about it must use; an identifier may also be called "not a valid identifier"."""

    method: str
    path: tuple[Any, ...]
    kind: str
    names: tuple[str, ...]
    identifier: bool = False

    def __repr__(self) -> str:
        return f"{self.method}{list(self.path)}:{self.kind}"

    @property
    def key(self) -> str | None:
        """The Go field name a protocol error about it names."""
        keys = [p for p in self.path if isinstance(p, str)]
        return keys[-1] if keys else None


NS = ("namespace", "ns")
ID = ("id", "name", "container")
_CONTAINER_FIELDS: list[tuple[tuple[Any, ...], str, tuple[str, ...]]] = [
    ((), "struct", ("container",)),
    (("Name",), "string", ("name",)),
    (("RootFS",), "string", ("rootfs",)),
    (("Env",), "[]string", ("env",)),
    (("Env", 0), "string", ("env",)),
    (("WorkingDir",), "string", ("workingdir",)),
    (("Network",), "struct", ("network",)),
    (("Network", "Namespace"), "string", ("namespace", "network")),
    (("Mounts",), "[]struct", ("mounts",)),
    (("Mounts", 0), "struct", ("mounts",)),
    (("Mounts", 0, "Source"), "string", ("source",)),
    (("Mounts", 0, "Target"), "string", ("target",)),
    (("Mounts", 0, "Type"), "string", ("type",)),
    (("Mounts", 0, "Options"), "[]string", ("options",)),
    (("Mounts", 0, "Options", 0), "string", ("options",)),
    (("Entrypoint",), "string", ("entrypoint",)),
    (("Interactive",), "bool", ("interactive",)),
    (("CPU",), "uint", ("cpu",)),
    (("Memory",), "uint64", ("memory",)),
    (("Logs",), "[]struct", ("logs",)),
    (("Logs", 0), "struct", ("logs",)),
    (("Logs", 0, "Type"), "string", ("type",)),
    (("Logs", 0, "Data"), "struct", ("data",)),
    (("Logs", 0, "Data", "Stdout"), "string", ("stdout",)),
    (("Logs", 0, "Data", "Stderr"), "string", ("stderr",)),
    (("Stats",), "[]struct", ("stats",)),
    (("Stats", 0), "struct", ("stats",)),
    (("Stats", 0, "Type"), "string", ("type",)),
    (("Stats", 0, "Endpoint"), "string", ("endpoint",)),
    (("Elevated",), "bool", ("elevated",)),
    (("CreatedAt",), "time", ("createdat",)),
    (("RootFsPropagation",), "string", ("rootfspropagation", "propagation")),
    (("ShutdownTimeout",), "duration", ("shutdowntimeout",)),
]
POSITIONS: list[Position] = [
    Position("Run", (0,), "string", NS, identifier=True),
    *(
        Position("Run", (1, *path), kind, names, identifier=path == ("Name",))
        for path, kind, names in _CONTAINER_FIELDS
    ),
    *(
        Position(method, (i,), "string", names, identifier=True)
        for method in ("Inspect", "Delete", "SignalDelete", "Logs", "LogsFrom", "LogsTail", "Stats", "Update")
        for i, names in enumerate((NS, ID))
    ),
    Position("List", (0,), "string", NS, identifier=True),
    *(
        position
        for method in ("Exec", "ExecOutput")
        for position in (
            Position(method, (0,), "string", NS, identifier=True),
            Position(method, (1,), "string", ID, identifier=True),
            Position(method, (2,), "duration", ("timeout",)),
            Position(method, (3,), "string", ("arg", "command", "exec")),
            Position(method, (4,), "string", ("arg", "command", "exec")),
        )
    ),
    Position("LogsFrom", (2,), "string", ("cursor",)),
    Position("LogsFrom", (3,), "int", ("max",)),
    Position("LogsTail", (2,), "int", ("lines",)),
    Position("LogsTail", (3,), "time", ("since",)),
    Position("Update", (2,), "uint", ("cpu",)),
    Position("Update", (3,), "uint64", ("memory",)),
]
STRING_POSITIONS = [p for p in POSITIONS if p.kind == "string"]
BY_NAME = {repr(p): p for p in POSITIONS}
METHODS = [
    "Run",
    "Inspect",
    "Delete",
    "SignalDelete",
    "List",
    "ListNS",
    "Exec",
    "Logs",
    "ExecOutput",
    "LogsFrom",
    "LogsTail",
    "Stats",
    "Update",
]


def placed(args: list[Any], path: tuple[Any, ...], value: Any) -> list[Any]:
    """A deep copy of ``args`` with ``value`` at ``path`` (an index one past
    the end of a list appends)."""
    args = copy.deepcopy(args)
    holder: Any = args
    for step in path[:-1]:
        holder = holder[step]
    last = path[-1]
    if isinstance(holder, list) and last == len(holder):
        holder.append(value)
    else:
        holder[last] = value
    return args


# -- values ---------------------------------------------------------------------------------

INVALID_UTF8 = [
    b"\xff\xfe",
    b"\xff",
    b"\x80",
    b"\xc3\x28",
    b"\xc0\xaf",  # an overlong "/"
    b"\xed\xa0\x80",  # a UTF-16 surrogate
    b"\xf4\x90\x80\x80",  # past U+10FFFF
    b"\xe2\x82",  # truncated
]
ASCII = st.text(alphabet="abcdefghijklmnopqrstuvwxyz/=._- ", max_size=8)


@st.composite
def invalid_utf8(draw: st.DrawFn) -> GoStr | bytes:
    data = draw(ASCII).encode() + draw(st.sampled_from(INVALID_UTF8)) + draw(ASCII).encode()
    # Go accepts bin where a string is expected: both must be treated alike.
    return data if draw(st.booleans()) else GoStr(data)


_TIMESTAMP = st.just(msgpack.Timestamp(1, 0))
_ANY_INT = st.integers(-(2**63), 2**64 - 1)
_FRACTION = st.sampled_from([0.5, -1.5, float("nan"), float("inf")])
WRONG_TYPES = {
    "string": st.one_of(_ANY_INT, st.floats(), st.booleans(), st.just([]), st.just({"a": 1}), _TIMESTAMP),
    "uint": st.one_of(
        st.text(max_size=5), st.booleans(), st.just([1]), st.just({}), _FRACTION, st.integers(-(2**63), -1)
    ),
    "uint64": st.one_of(
        st.text(max_size=5), st.booleans(), st.just([1]), st.just({}), _FRACTION, st.integers(-(2**63), -1)
    ),
    "int": st.one_of(
        st.text(max_size=5),
        st.booleans(),
        st.just([1]),
        st.just({}),
        _FRACTION,
        st.integers(2**63, 2**64 - 1),
    ),
    "duration": st.one_of(
        st.text(max_size=5),
        st.booleans(),
        st.just([1]),
        st.just({}),
        _FRACTION,
        st.integers(2**63, 2**64 - 1),
    ),
    "bool": st.one_of(_ANY_INT, st.text(max_size=5), st.just([]), st.just({}), st.floats()),
    "time": st.one_of(_ANY_INT, st.text(max_size=5), st.just([]), st.booleans(), st.floats()),
    "[]string": st.one_of(
        _ANY_INT, st.text(max_size=5), st.just({"a": "b"}), st.booleans(), st.just(b"\x00")
    ),
    "struct": st.one_of(_ANY_INT, st.text(max_size=5), st.just(["a"]), st.booleans(), st.just(b"\x00")),
    "[]struct": st.one_of(
        _ANY_INT, st.text(max_size=5), st.just({"a": "b"}), st.booleans(), st.just(b"\x00")
    ),
}

_HUGE_TEXT = st.builds(
    lambda c, n: c * n, st.sampled_from(["x", "é", "字", "\U0001f600"]), st.integers(50_000, 250_000)
)
HUGE_VALUES = {
    "string": _HUGE_TEXT,
    "uint": st.sampled_from([2**64 - 1, 2**63, 2**32]),
    "uint64": st.sampled_from([2**64 - 1, 2**63, 2**32]),
    "duration": st.sampled_from([2**63 - 1, -(2**63), 1]),
    "int": st.sampled_from([2**63 - 1, -(2**63), -1]),
    "time": st.sampled_from([msgpack.Timestamp(2**34 - 1, 999_999_999), msgpack.Timestamp(-(2**62), 0)]),
    "[]string": st.builds(
        lambda s, n: [s] * n, st.sampled_from(["A=1", "x", "/tmp"]), st.integers(2_000, 20_000)
    ),
}


def element_of(position: Position, target: Target) -> Any:
    holder: Any = base_args(target, position.method)
    for step in position.path:
        holder = holder[step]
    return holder[0]


# -- what an answer must be -------------------------------------------------------------------


def _normal(text: str) -> str:
    return re.sub(r"[\s_.]", "", text.lower())


def names_it(position: Position, message: str) -> bool:
    normal = _normal(message)
    return any(_normal(name) in normal for name in position.names)


def common_problems(response: codec.Response | None) -> list[str]:
    if response is None:
        return ["no answer"]
    problems = []
    for text in (response.error, response.output.error):
        if text is None:
            continue
        if any(word in text for word in FORBIDDEN):
            problems.append(f"the answer leaks a bug: {text[:500]!r}")
        if len(text) > MAX_ERROR_CHARS:
            problems.append(
                f"an error of {len(text)} characters (quote user values shortened): {text[:200]!r}..."
            )
    return problems


def exercise(
    target: Target, queue: str, payload: bytes, reply_to: bytes | str | None
) -> tuple[codec.Response | None, list[str]]:
    """Push one payload, wait until the daemon has dealt with it, and return
    its answer (if any reached ``reply_to``) and what went wrong around it:
    the daemon stopped serving, made something, or logged a traceback."""
    target.ensure_serving()
    before = target.world()
    log_start = len(target.daemon.log())
    if reply_to is not None:
        target.bus.delete(reply_to)
    target.bus.rpush(queue, payload)
    problems = []
    if not target.drained():
        target.suspect = True
        problems.append(
            f"the daemon stopped serving after this payload ({target.daemon.state()});"
            f" its errors: {leaf_errors(target.daemon.log())}"
        )
    response = None
    if reply_to is not None:
        raw = target.bus.lpop(reply_to)
        if isinstance(raw, bytes):
            try:
                response = codec.decode_response(raw)
            except codec.MalformedPayload as exc:
                problems.append(f"the answer is not a zbus response: {exc}")
    if not target.suspect:
        normal = target.call("List", target.ns, timeout=10)
        if (
            normal is None
            or normal.error is not None
            or codec.unpack(normal.output.data or b"\xc0") != [TAKEN]
        ):
            problems.append(f"a normal List call afterwards answered {normal}")
    problems.extend(target.world().changes_since(before))
    new_log = target.daemon.log()[log_start:]
    if "Traceback" in new_log:
        problems.append("the daemon logged a traceback:\n" + new_log[new_log.index("Traceback") :][:3000])
    return response, problems


def request_of(target: Target, position: Position, value: Any) -> tuple[bytes, str]:
    reply_to = f"fuzz.reply.{uuid.uuid4()}"
    args = placed(base_args(target, position.method), position.path, value)
    size = f" ({len(value)} long)" if isinstance(value, str | bytes | list) else ""
    note(f"{position!r} = {value!r:.300}{size}")
    return wire(envelope(position.method, args, reply_to)), reply_to


def report(problems: list[str], response: codec.Response | None) -> str:
    # The answer's own faults first, the daemon's log last.
    ordered = sorted(problems, key=lambda p: p.startswith("the daemon logged"))
    return "\n".join([*ordered, f"answer: {response!r:.1500}"])


# -- the properties -----------------------------------------------------------------------------


@settings(FUZZ, max_examples=50)
@given(case=st.sampled_from(STRING_POSITIONS).flatmap(lambda p: st.tuples(st.just(p), invalid_utf8())))
@example(case=(BY_NAME["Run[1, 'Entrypoint']:string"], GoStr(b"sleep \xff\xfe")))
@example(case=(BY_NAME["Exec[3]:string"], GoStr(b"\xff\xfe")))
@example(case=(BY_NAME["Run[1, 'Env', 0]:string"], GoStr(b"A=\xff")))
@example(case=(BY_NAME["LogsFrom[2]:string"], GoStr(b"0:\xff")))
@example(case=(BY_NAME["ExecOutput[4]:string"], GoStr(b"\xff")))
def test_invalid_utf8_in_any_argument_is_a_call_error_naming_the_field(
    target: Target, case: tuple[Position, Any]
) -> None:
    position, value = case
    payload, reply_to = request_of(target, position, value)
    response, problems = exercise(target, QUEUE, payload, reply_to)
    problems += common_problems(response)
    if response is not None:
        message = response.output.error or ""
        if response.error is not None or not message:
            problems.append("not a call error")
        elif not names_it(position, message):
            problems.append(f"the error does not name the field ({position.names}): {message[:300]!r}")
        elif "utf-8" not in message.lower() and not (
            position.identifier and "not a valid identifier" in message
        ):
            problems.append(f"the error does not say the value is not valid UTF-8: {message[:300]!r}")
    assert not problems, report(problems, response)


@st.composite
def mistyped(draw: st.DrawFn) -> tuple[Position | str, Any]:
    if draw(st.integers(0, 9)) == 0:
        # The wrong number of arguments.
        return draw(st.sampled_from(METHODS)), draw(st.sampled_from(["one less", "one more"]))
    position = draw(st.sampled_from(POSITIONS))
    return position, draw(WRONG_TYPES[position.kind])


@settings(FUZZ, max_examples=50)
@given(case=mistyped())
@example(case=(BY_NAME["Run[1, 'CPU']:uint"], -1))
@example(case=("ListNS", "one more"))
@example(case=(BY_NAME["LogsFrom[3]:int"], 2**63))
@example(case=(BY_NAME["Update[3]:uint64"], -1))
def test_a_mistyped_argument_is_a_protocol_error_naming_it(target: Target, case: tuple[Any, Any]) -> None:
    position, value = case
    reply_to = f"fuzz.reply.{uuid.uuid4()}"
    if isinstance(position, str):
        method, args = position, base_args(target, position)
        if method in ("Exec", "ExecOutput"):
            args = args[:2]  # variadic: only too few arguments are wrong
        elif value == "one less" and args:
            args = args[:-1]
        else:
            args = [*args, "extra"]
        note(f"{method} with {len(args)} arguments")
        payload = wire(envelope(method, args, reply_to))
        expected = "invalid number of arguments"
    else:
        payload, reply_to = request_of(target, position, value)
        expected = f"invalid argument type [{position.path[0]}]"
    response, problems = exercise(target, QUEUE, payload, reply_to)
    problems += common_problems(response)
    if response is not None:
        if response.error is None or not response.error.startswith(expected):
            problems.append(f"not the protocol error {expected!r}...")
        elif isinstance(position, Position) and position.key and position.key not in response.error:
            problems.append(f"the protocol error does not name {position.key}: {response.error[:300]!r}")
    assert not problems, report(problems, response)


@st.composite
def huge(draw: st.DrawFn, target: Target) -> tuple[Position, Any]:
    position = draw(st.sampled_from([p for p in POSITIONS if p.kind in (*HUGE_VALUES, "[]struct")]))
    if position.kind == "[]struct":
        element = element_of(position, target)
        return position, [copy.deepcopy(element) for _ in range(draw(st.integers(1_000, 4_000)))]
    return position, draw(HUGE_VALUES[position.kind])


@settings(FUZZ, max_examples=30)
@given(data=st.data())
def test_huge_values_are_answered_briefly_and_create_nothing(target: Target, data: st.DataObject) -> None:
    position, value = data.draw(huge(target))
    payload, reply_to = request_of(target, position, value)
    response, problems = exercise(target, QUEUE, payload, reply_to)
    problems += common_problems(response)
    assert not problems, report(problems, response)


ENVELOPE_KEYS = ["ID", "ReplyTo", "Object", "Object.Name", "Object.Version", "Method", "Inputs", "Inputs[0]"]
_ENVELOPE_VALUES = st.one_of(
    invalid_utf8(),
    _ANY_INT,
    st.floats(),
    st.booleans(),
    st.none(),
    st.just([]),
    st.just({"a": 1}),
    _TIMESTAMP,
    st.just(b"\xc1"),
    _HUGE_TEXT,
    st.just("missing"),
)


@settings(FUZZ, max_examples=60)
@given(
    method=st.sampled_from([*METHODS, "Status"]),
    key=st.sampled_from(ENVELOPE_KEYS),
    value=_ENVELOPE_VALUES,
)
@example(method="ListNS", key="ID", value=GoStr(b"\xff\xfe"))
@example(method="ListNS", key="ReplyTo", value=GoStr(b"fuzz.\xff\xfe"))
@example(method="Status", key="ID", value=GoStr(b"\xff\xfe"))
def test_a_broken_envelope_is_answered_or_dropped_and_serving_goes_on(
    target: Target, method: str, key: str, value: Any
) -> None:
    status = method == "Status"
    reply_to = f"fuzz.reply.{uuid.uuid4()}"
    request = envelope(method, [] if status else base_args(target, method), reply_to)
    if status:
        request["Object"] = codec.STATUS_OBJECT.to_go()
    holder: Any = request
    field = key
    if key.startswith("Object."):
        holder, field = request["Object"], key.removeprefix("Object.")
    if key == "Inputs[0]":
        if request["Inputs"]:
            request["Inputs"][0] = value
        else:
            request["Inputs"].append(value)
    elif isinstance(value, str) and value == "missing":
        del holder[field]
    else:
        holder[field] = value
    note(f"{method}: {key} = {value!r:.300}")
    # Where an answer can go: ReplyTo's bytes, whatever their encoding.
    answer_key: bytes | str | None = reply_to
    must_answer = True
    if key == "ReplyTo":
        if isinstance(value, GoStr):
            answer_key, must_answer = value.data, False  # answering or dropping are both fine
        elif isinstance(value, str) and value not in ("", "missing"):
            answer_key = value
        elif isinstance(value, bytes) and value:
            answer_key, must_answer = value, False
        else:
            answer_key, must_answer = None, False
    response, problems = exercise(target, STATUS_QUEUE if status else QUEUE, wire(request), answer_key)
    if response is not None or must_answer:
        problems += common_problems(response)
    routing = key in ("Object", "Object.Name", "Object.Version", "Method")
    if response is not None and routing and not status and response.error is None:
        problems.append("a request for no known object or method is not a protocol error")
    assert not problems, report(problems, response)
