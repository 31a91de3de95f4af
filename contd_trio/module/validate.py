"""Checking and completing a Run request before anything is created.

Every rule here turns a request that containerd or runc would reject late
(or, worse, accept and run wrongly) into an :class:`InvalidArgument` that
names the field and the bad value, before a container exists. The result,
a :class:`RunPlan`, has every default filled in, so the spec builder and
Inspect never guess.

The checks that look at the machine (rootfs, network namespace, mount
sources, the corex binary, ``.startup.toml``) go through :class:`HostView`,
so tests use temporary directories. :class:`LocalHost` blocks on the
filesystem: call :func:`prepare_run` from a worker thread.

What a container may mount, and which host paths neither a mount nor the
rootfs may be, is :mod:`.mount_policy`'s.

Identifiers are checked before any path is built from them: a namespace or
container name can only ever name one directory level under the daemon's
root, and a network namespace name one file under the netns directory.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import platform
import posixpath
import re
import shlex
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..containerd.spec import COREX_ARGS, HostFacts, effective_env
from ..errors import InvalidArgument
from ..text import quote
from .backends import check_backends
from .mount_policy import (
    MAX_PATH,
    HostPaths,
    MountEntry,
    Protection,
    check_mounts,
    normalised_path,
    parse_mountinfo,
    protected_paths,
)
from .startup import STARTUP_FILE, merge_env, parse_startup
from .types import DEFAULT_CPU, DEFAULT_MEMORY, DEFAULT_SHUTDOWN_TIMEOUT_NS, Container
from .untrusted import check_container, check_program

#: containerd's identifier rule (``identifiers.Validate``), for namespaces
#: and container ids alike.
_IDENTIFIER = re.compile(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*")
MAX_IDENTIFIER_LENGTH = 76

ROOTFS_PROPAGATIONS = frozenset({"", "private", "rprivate", "shared", "rshared", "slave", "rslave"})
#: A ``.startup.toml`` is a few lines; refuse to read a huge one into memory.
MAX_STARTUP_BYTES = 1 << 20
#: The smallest memory limit accepted. runc sets the limit while its own init
#: already uses about 2 MB of the container's cgroup, and fails below that
#: ("unable to set memory limit ... current usage"); tried here, 1 MiB always
#: failed and 2 MiB sometimes. Docker's floor of 6 MiB leaves the entrypoint
#: room to start.
MIN_MEMORY = 6 * 1024 * 1024
#: runc reads the limit as a Go int64.
MAX_MEMORY = (1 << 63) - 1
#: The kernel's MAX_ARG_STRLEN (32 pages, the NUL included): execve refuses
#: a longer argument or env entry with E2BIG, inside runc.
MAX_ARG_BYTES = 32 * 4096 - 1
#: The process's arguments and env together; execve's own limit is a quarter
#: of the stack rlimit (2 MiB with the usual 8 MiB), less what it needs itself.
MAX_EXEC_BYTES = 1 << 20


class HostView(HostPaths, Protocol):
    """What validation may learn about the machine."""

    facts: HostFacts

    def is_dir(self, path: str) -> bool: ...

    def exists(self, path: str) -> bool: ...

    def read_text(self, path: str) -> str | None:
        """The text of the file at ``path``; None when there is none."""
        ...


class LocalHost:
    """:class:`HostView` on this machine's filesystem (blocking calls)."""

    def __init__(self, facts: HostFacts | None = None) -> None:
        # Logical CPUs, as 0-OS's gopsutil ``cpu.Counts(true)`` counted them.
        self.facts = (
            facts
            if facts is not None
            else HostFacts(cpu_count=os.cpu_count() or 1, machine=platform.machine())
        )

    def is_dir(self, path: str) -> bool:
        return os.path.isdir(path)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def realpath(self, path: str) -> str:
        try:
            return os.path.realpath(path)
        except ValueError as exc:  # a path the OS cannot encode
            raise OSError(errno.EINVAL, str(exc), path) from None

    def stat_mode(self, path: str, *, follow_symlinks: bool = True) -> int | None:
        try:
            return os.stat(path, follow_symlinks=follow_symlinks).st_mode
        except (OSError, ValueError):
            return None

    def mount_table(self) -> list[MountEntry]:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as mountinfo:
            return parse_mountinfo(mountinfo.read())

    def read_text(self, path: str) -> str | None:
        """Read a small regular file that, symlinks followed, stays inside
        the directory that holds it.

        A rootfs belongs to a tenant: an absolute symlink there points into
        the *host* while we read it, and a FIFO would block us forever.

        Raises:
            InvalidArgument: the file escapes its directory, is not a
                regular file, or is too large.
            OSError: it cannot be read.
        """
        if not os.path.lexists(path):
            return None
        directory = os.path.realpath(os.path.dirname(path))
        real = os.path.realpath(path)
        if not real.startswith(directory.rstrip("/") + "/"):
            raise InvalidArgument(f"{quote(path)}: points outside its directory")
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return None  # a dangling symlink: no file
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise InvalidArgument(f"{quote(path)}: not a regular file")
            data = b""
            while len(data) <= MAX_STARTUP_BYTES:
                chunk = os.read(fd, MAX_STARTUP_BYTES + 1 - len(data))
                if not chunk:
                    break
                data += chunk
        finally:
            os.close(fd)
        if len(data) > MAX_STARTUP_BYTES:
            raise InvalidArgument(f"{quote(path)}: larger than {MAX_STARTUP_BYTES} bytes")
        try:
            return data.decode()
        except UnicodeDecodeError as exc:
            raise InvalidArgument(f"{quote(path)}: not UTF-8 text ({exc.reason})") from exc


@dataclass(frozen=True)
class RunPlan:
    """A Run request, validated and complete."""

    namespace: str
    #: Normalised: cpu, memory, shutdown timeout defaulted; entrypoint and
    #: working dir from ``.startup.toml`` when the request left them empty;
    #: env merged (with PATH); mounts with their effective type and options;
    #: logs and stats as lists. Exactly what Inspect reads back.
    container: Container
    #: The process: the split entrypoint, or corex's for an interactive one.
    args: list[str]
    #: The effective environment, PATH default included.
    env: list[str]
    #: The process's working directory: "/" when none was given.
    cwd: str


def is_identifier(value: str) -> bool:
    """Whether containerd accepts ``value`` as a namespace or container id."""
    return len(value) <= MAX_IDENTIFIER_LENGTH and _IDENTIFIER.fullmatch(value) is not None


def validate_identifier(kind: str, value: str) -> str:
    """``value`` if containerd accepts it as a namespace or container id.

    Raises:
        InvalidArgument: naming ``kind`` and the value.
    """
    if not isinstance(value, str) or not is_identifier(value):
        raise InvalidArgument(
            f"{kind} {quote(value)} is not a valid identifier "
            f"(letters, digits, and . _ - between them, at most {MAX_IDENTIFIER_LENGTH} characters)"
        )
    return value


def log_path(root: Path, namespace: str, container_id: str) -> Path:
    """Where the output of a container goes: ``root/logs/<ns>/<id>.log``.

    Raises:
        InvalidArgument: either id could climb out of ``root/logs``.
    """
    validate_identifier("namespace", namespace)
    validate_identifier("container name", container_id)
    return root / "logs" / namespace / f"{container_id}.log"


def _has_nul(value: str) -> bool:
    return "\0" in value


def _check_rootfs(rootfs: str, host: HostView, protection: Protection) -> None:
    if not rootfs:
        raise InvalidArgument("rootfs is required")
    if _has_nul(rootfs) or not posixpath.isabs(rootfs):
        raise InvalidArgument(f"rootfs {quote(rootfs)} is not an absolute path")
    if len(rootfs.encode(errors="surrogatepass")) > MAX_PATH:
        raise InvalidArgument(f"rootfs {quote(rootfs)} is longer than {MAX_PATH} bytes")
    if not host.is_dir(rootfs):
        raise InvalidArgument(f"rootfs {quote(rootfs)} is not an existing directory")
    # runc wants the rootfs as its own resolved path ("invalid rootfs: not an
    # absolute path, or a symlink"); a trailing slash or "/./" is fine.
    try:
        real = host.realpath(rootfs)
    except OSError as exc:
        raise InvalidArgument(f"rootfs {quote(rootfs)} cannot be resolved: {exc.strerror or exc}") from None
    if real != normalised_path(rootfs):
        raise InvalidArgument(
            f"rootfs {quote(rootfs)} is or passes through a symlink: "
            f"give the directory itself ({quote(real)})"
        )
    conflict = protection.conflict(real)
    if conflict is not None:
        raise InvalidArgument(f"rootfs {quote(rootfs)} is not allowed: {conflict}")


def _check_netns(name: str, host: HostView) -> None:
    # 0-OS never lets a container share the host's network.
    if not name:
        raise InvalidArgument("network namespace is required")
    if "/" in name or _has_nul(name) or name in (".", ".."):
        raise InvalidArgument(f"network namespace {quote(name)} is not a plain name")
    path = posixpath.join(host.facts.netns_dir, name)
    if not host.exists(path):
        raise InvalidArgument(f"network namespace {quote(name)} does not exist (no {quote(path)})")


def _check_corex(host: HostView) -> None:
    """An interactive container runs corex; runc would fail to bind a missing one."""
    path = host.facts.corex_path
    mode = host.stat_mode(path)
    if mode is None or not stat.S_ISREG(mode) or not mode & 0o111:
        raise InvalidArgument(f"interactive: the corex binary {path} is not an executable file on this node")


def _byte_length(text: str) -> int:
    return len(text.encode(errors="surrogatepass"))


def _check_env(env: list[str]) -> None:
    for entry in env:
        key, sep, _ = entry.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"env entry {quote(entry)} is not KEY=VALUE")
        if _has_nul(entry):
            raise InvalidArgument(f"env entry {quote(entry)} contains a NUL character")
        if _byte_length(entry) > MAX_ARG_BYTES:
            raise InvalidArgument(f"env entry {quote(entry)} is longer than {MAX_ARG_BYTES} bytes")


def _check_exec_size(args: list[str], env: list[str]) -> None:
    """What execve in runc would refuse with E2BIG."""
    for arg in args:
        if _has_nul(arg):
            raise InvalidArgument(f"entrypoint argument {quote(arg)} contains a NUL character")
        if _byte_length(arg) > MAX_ARG_BYTES:
            raise InvalidArgument(f"entrypoint argument {quote(arg)} is longer than {MAX_ARG_BYTES} bytes")
    total = sum(_byte_length(item) + 1 for item in (*args, *env))
    if total > MAX_EXEC_BYTES:
        raise InvalidArgument(f"entrypoint and env are {total} bytes together, more than {MAX_EXEC_BYTES}")


def check_cpu(cpu: int, facts: HostFacts) -> None:
    """A CPU limit (0: the default) this node can give.

    Raises:
        InvalidArgument: negative, or more than the node's CPUs.
    """
    if cpu < 0:
        raise InvalidArgument(f"cpu {cpu} is negative")
    if cpu > facts.cpu_count:
        raise InvalidArgument(f"cpu {cpu} is more than the {facts.cpu_count} CPUs of this node")


def check_memory(memory: int) -> None:
    """A memory limit (0: the default) runc can set.

    Raises:
        InvalidArgument: negative, below 6 MiB, or past int64.
    """
    if memory < 0:
        raise InvalidArgument(f"memory {memory} is negative")
    if 0 < memory < MIN_MEMORY:
        raise InvalidArgument(f"memory {memory} is below the minimum of {MIN_MEMORY} bytes (6 MiB)")
    if memory > MAX_MEMORY:
        raise InvalidArgument(f"memory {memory} is more than the largest limit, 2^63-1 bytes")


def _check_limits(container: Container, host: HostView) -> None:
    check_cpu(container.cpu, host.facts)
    check_memory(container.memory)
    if container.shutdown_timeout_ns < 0:
        raise InvalidArgument(f"shutdown timeout {container.shutdown_timeout_ns}ns is negative")
    if container.rootfs_propagation not in ROOTFS_PROPAGATIONS:
        known = ", ".join(sorted(ROOTFS_PROPAGATIONS - {""}))
        raise InvalidArgument(
            f"rootfs propagation {quote(container.rootfs_propagation)} is not one of {known}"
        )


def _read_startup(rootfs: str, host: HostView) -> str | None:
    path = posixpath.join(rootfs, STARTUP_FILE)
    try:
        return host.read_text(path)
    except OSError as exc:
        raise InvalidArgument(f"rootfs {STARTUP_FILE}: {exc.strerror or exc}") from exc


def _split_entrypoint(entrypoint: str) -> list[str]:
    try:
        args = shlex.split(entrypoint)
    except ValueError as exc:
        raise InvalidArgument(f"entrypoint {quote(entrypoint)}: {exc}") from None
    if not args:
        raise InvalidArgument(
            f"entrypoint is required (none given, and the rootfs has no {STARTUP_FILE} entry naming one)"
        )
    return args


def prepare_run(namespace: str, container: Container, host: HostView) -> RunPlan:
    """Validate a Run request and fill in its defaults.

    Checks, in order: the namespace and container name, the rootfs (an
    existing directory, no symlink on its path, not a protected host path),
    the network namespace, the mounts (:mod:`.mount_policy`), the env, the
    limits (cpu against the node's CPUs, memory between 6 MiB and 2^63-1,
    shutdown timeout, rootfs propagation), the log and stats backends, the
    corex binary of an interactive container; then
    applies the rootfs's ``.startup.toml`` (its env under the request's, its
    entrypoint and working dir where the request has none) and checks the
    entrypoint, unless the container is interactive (it runs corex, and the
    entrypoint is only recorded), and what execve would refuse: a NUL in an
    argument, an argument or env entry over 128 KiB, more than 1 MiB of
    both together.

    A bind mount's source comes back resolved (symlinks followed): that is
    the path the spec mounts and Inspect reports.

    Raises:
        InvalidArgument: the first problem found, naming the field and value.
    """
    check_container(container)
    validate_identifier("namespace", namespace)
    validate_identifier("container name", container.name)
    protection = Protection(protected_paths(host.facts), host)
    _check_rootfs(container.rootfs, host, protection)
    _check_netns(container.network.namespace, host)
    mounts = check_mounts(list(container.mounts or ()), host, protection)
    request_env = list(container.env or ())
    _check_env(request_env)
    _check_limits(container, host)
    check_backends(container)
    if container.interactive:
        _check_corex(host)

    entrypoint, working_dir, env = container.entrypoint, container.working_dir, request_env
    text = _read_startup(container.rootfs, host)
    startup = parse_startup(text) if text is not None else None
    if startup is not None:
        env = merge_env(request_env, startup.env)
        _check_env(env)
        entrypoint = entrypoint or startup.entrypoint
        working_dir = working_dir or startup.working_dir
    if working_dir and (_has_nul(working_dir) or not posixpath.isabs(working_dir)):
        raise InvalidArgument(f"working dir {quote(working_dir)} is not an absolute path")
    if _byte_length(working_dir) > MAX_PATH:
        raise InvalidArgument(f"working dir {quote(working_dir)} is longer than {MAX_PATH} bytes")
    args = list(COREX_ARGS) if container.interactive else _split_entrypoint(entrypoint)
    if args:
        check_program("Entrypoint", args[0])
    env = effective_env(env)
    # An interactive container's entrypoint is only recorded: bound it as one.
    _check_exec_size([*args, entrypoint] if container.interactive else args, env)

    normalised = dataclasses.replace(
        container,
        env=list(env),
        working_dir=working_dir,
        mounts=mounts,
        entrypoint=entrypoint,
        cpu=container.cpu or DEFAULT_CPU,
        memory=container.memory or DEFAULT_MEMORY,
        logs=list(container.logs or ()),
        stats=list(container.stats or ()),
        shutdown_timeout_ns=container.shutdown_timeout_ns or DEFAULT_SHUTDOWN_TIMEOUT_NS,
        task=None,
    )
    return RunPlan(namespace=namespace, container=normalised, args=args, env=env, cwd=working_dir or "/")
