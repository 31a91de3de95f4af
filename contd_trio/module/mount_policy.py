"""What a container may mount, and which host paths no container may see.

Every mount of a Run request passes here before anything reaches containerd.
The policy is the same for Elevated containers: CAP_SYS_ADMIN and /dev/fuse
are what they are given, not more of the host.

**Types.** ``bind`` (also when ``Type`` is empty) and ``tmpfs``. Nothing
else: ``proc``, ``sysfs``, ``cgroup``, ``devpts``, ``overlay`` or a block
device would give the container a filesystem of the host's kernel (a fresh
procfs, unlike the container's own, has a writable ``/proc/sys``). Names are
compared exactly: ``BIND`` is not a type.

**Options.** One option per list entry (``"rbind,ro"`` is one unknown
option, not two), from an allow-list: ``ro``, ``rw``, ``nosuid``, ``nodev``,
``noexec``, the propagation flags ``private``, ``rprivate``, ``shared``,
``rshared``, ``slave``, ``rslave``; ``bind`` and ``rbind`` on bind mounts
only (on any other type runc would turn the mount into a bind of its
source); ``size=``, ``mode=``, ``nr_inodes=``, ``uid=`` and ``gid=`` on
tmpfs only, with numeric values. A tmpfs's pages are charged to the
container's memory limit, so its size needs no cap of ours.

**Bind sources.** Absolute, existing, and resolved (symlinks and ``..``
followed) before they are checked; the resolved path is what the spec
mounts, so a symlink cannot be swapped in between this check and runc's
mount. (A directory *on* that path that someone renames and replaces with
a symlink in the ~100 ms before runc mounts is not caught: keep tenants
away from write access to the parents of their volumes.) Refused: a socket
or a device node anywhere; the host's root; anything at, under, or
containing one of :func:`protected_paths`: the kernel's ``/proc``, ``/sys``,
``/dev``, the host's ``/boot``, ``/etc``, ``/root`` and system programs and
libraries (``/usr``, ``/bin``, ``/sbin``, ``/lib*``), the network namespace
directory, containerd's socket, root and state directories (the configured
ones and the system defaults), the daemon's own root, and the zbus broker's
socket.

**Targets.** Absolute, without ``..``, never ``/`` itself (in any spelling:
``//``, ``/.``) and never at or under ``/proc`` (runc refuses those late; the
container's masked and read-only proc paths live there).

**Sizes.** At most :data:`MAX_MOUNTS` mounts of at most
:data:`MAX_OPTIONS` options; paths at most :data:`MAX_PATH` bytes (the
kernel's PATH_MAX).
"""

from __future__ import annotations

import posixpath
import re
import stat
from dataclasses import dataclass
from typing import Protocol

from ..containerd.spec import HostFacts, effective_mount
from ..errors import InvalidArgument
from ..text import quote
from .types import MountInfo

BIND = "bind"
TMPFS = "tmpfs"
ALLOWED_TYPES = (BIND, TMPFS)
#: Allowed on every mount.
FLAG_OPTIONS = ("ro", "rw", "nosuid", "nodev", "noexec")
PROPAGATION_OPTIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
#: Allowed on bind mounts only.
BIND_OPTIONS = ("bind", "rbind")
#: ``key=value`` options allowed on tmpfs only, with the values tmpfs takes.
TMPFS_VALUE_OPTIONS: dict[str, re.Pattern[str]] = {
    "size": re.compile(r"[0-9]{1,19}[kKmMgG%]?"),
    "mode": re.compile(r"[0-7]{1,4}"),
    "nr_inodes": re.compile(r"[0-9]{1,19}[kKmMgG]?"),
    "uid": re.compile(r"[0-9]{1,10}"),
    "gid": re.compile(r"[0-9]{1,10}"),
}

MAX_MOUNTS = 64
MAX_OPTIONS = 32
#: Bytes, as the kernel's PATH_MAX counts them.
MAX_PATH = 4096

#: No container sees these, nor anything under them, nor a directory
#: containing them: the kernel's interfaces, and what a writable bind would
#: turn into root on the host (its configuration, its programs, root's keys).
SYSTEM_PATHS: tuple[tuple[str, str], ...] = (
    ("/proc", "the host's processes and kernel settings"),
    ("/sys", "the host's kernel objects"),
    ("/dev", "the host's devices"),
    ("/boot", "the host's kernels"),
    ("/etc", "the host's configuration"),
    ("/root", "the host's root home"),
    ("/usr", "the host's programs"),
    ("/bin", "the host's programs"),
    ("/sbin", "the host's programs"),
    ("/lib", "the host's libraries"),
    ("/lib32", "the host's libraries"),
    ("/lib64", "the host's libraries"),
    ("/libx32", "the host's libraries"),
    ("/run/containerd", "containerd's default state directory"),
    ("/var/lib/containerd", "containerd's default root directory"),
)

#: The target that must never be mounted over, and the tree runc refuses.
_PROC = "/proc"


class HostPaths(Protocol):
    """What the policy may learn about host paths (blocking calls)."""

    def realpath(self, path: str) -> str:
        """``path`` with every symlink and ``..`` resolved, as far as it exists.

        Raises:
            OSError: a link on the way cannot be read.
        """
        ...

    def stat_mode(self, path: str, *, follow_symlinks: bool = True) -> int | None:
        """``st_mode`` of ``path``; None when there is nothing there."""
        ...


@dataclass(frozen=True)
class ProtectedPath:
    """A host path no container may see, and what it is (for the error)."""

    path: str
    what: str


def protected_paths(facts: HostFacts) -> list[ProtectedPath]:
    """Every protected path of this node, as configured (unresolved)."""
    configured = [
        (facts.netns_dir, "the network namespaces directory"),
        (facts.containerd_socket, "containerd's socket"),
        (facts.containerd_root, "containerd's root directory"),
        (facts.containerd_state, "containerd's state directory"),
        (facts.daemon_root, "the daemon's root directory"),
        (facts.broker_socket, "the zbus broker's socket"),
    ]
    found = [ProtectedPath(path, what) for path, what in SYSTEM_PATHS]
    found.extend(ProtectedPath(path, what) for path, what in configured if path)
    return found


def _within(path: str, directory: str) -> bool:
    """``path`` is ``directory`` or under it (both normalised, absolute)."""
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def normalised_path(path: str) -> str:
    """``path`` with ``.``, ``..`` and repeated slashes folded, symlinks not
    followed: ``//proc/./1/..`` is ``/proc``."""
    return "/" + posixpath.normpath(path).lstrip("/")


def protection_conflict(path: str, protected: list[ProtectedPath], host: HostPaths) -> str | None:
    """Why a host path (absolute, normalised) must not be given to a
    container, or None.

    The protected paths are compared resolved and as configured, so
    ``/var/run/netns`` and ``/run/netns`` are one path; the caller checks
    ``path`` both as written and resolved.
    """
    if path == "/":
        return "it is the host's root directory"
    for entry in protected:
        written = normalised_path(entry.path)
        try:
            resolved = host.realpath(written)
        except OSError:
            resolved = written
        for form in dict.fromkeys((resolved, written)):
            if path == form:
                return f"it is {entry.what} ({form})"
            if _within(path, form):
                return f"it is inside {entry.what} ({form})"
            if _within(form, path):
                return f"it contains {entry.what} ({form})"
    return None


def _check_path_shape(where: str, path: str) -> None:
    if not path or "\0" in path or not posixpath.isabs(path):
        raise InvalidArgument(f"{where} {quote(path)} is not an absolute path")
    if len(path.encode(errors="surrogatepass")) > MAX_PATH:
        raise InvalidArgument(f"{where} {quote(path)} is longer than {MAX_PATH} bytes")


def _check_target(where: str, target: str) -> None:
    _check_path_shape(f"{where} target", target)
    if ".." in target.split("/"):
        raise InvalidArgument(f"{where} target {quote(target)} must not contain '..'")
    normal = normalised_path(target)
    if normal == "/":
        raise InvalidArgument(f"{where} target {quote(target)} is the container's root: not allowed")
    if _within(normal, _PROC):
        raise InvalidArgument(f"{where} target {quote(target)} is in /proc: not allowed")


def _option_problem(option: str, type_: str) -> str | None:
    """Why ``option`` is not allowed on a mount of ``type_``, or None."""
    if option in FLAG_OPTIONS or option in PROPAGATION_OPTIONS:
        return None
    if option in BIND_OPTIONS:
        return None if type_ == BIND else f"{option!r} is for bind mounts only"
    key, sep, value = option.partition("=")
    if sep and key in TMPFS_VALUE_OPTIONS:
        if type_ != TMPFS:
            return f"{key}= is for tmpfs mounts only"
        if TMPFS_VALUE_OPTIONS[key].fullmatch(value) is None:
            return f"{key}= takes a number" + (" with k, m, g or %" if key == "size" else "")
        return None
    return "it is not an allowed option"


def _allowed_options(type_: str) -> str:
    names = [*FLAG_OPTIONS, *PROPAGATION_OPTIONS]
    if type_ == BIND:
        names += BIND_OPTIONS
    else:
        names += [f"{key}=" for key in TMPFS_VALUE_OPTIONS]
    return ", ".join(names)


def _check_options(where: str, type_: str, options: list[str]) -> None:
    for option in options:
        problem = _option_problem(option, type_)
        if problem is not None:
            raise InvalidArgument(
                f"{where} option {quote(option)} is not allowed: {problem} "
                f"(allowed on {type_}: {_allowed_options(type_)})"
            )


def _check_bind_source(where: str, source: str, host: HostPaths, protected: list[ProtectedPath]) -> str:
    """The resolved source of a bind mount, once it is allowed."""
    _check_path_shape(f"{where} source", source)
    # As written first: "/proc/1/root" is refused for being in /proc, even
    # where the link cannot be read, and "/data/../proc" whatever /data is.
    conflict = protection_conflict(normalised_path(source), protected, host)
    if conflict is not None:
        raise InvalidArgument(f"{where} source {quote(source)} is not allowed: {conflict}")
    try:
        real = host.realpath(source)
    except OSError as exc:
        # Unresolved, the path could still hold a link the kernel follows.
        reason = exc.strerror or str(exc)
        raise InvalidArgument(f"{where} source {quote(source)} cannot be resolved: {reason}") from None
    shown = quote(source) if real == source else f"{quote(source)} (resolves to {quote(real)})"
    mode = host.stat_mode(real)
    if mode is None:
        raise InvalidArgument(f"{where} source {shown} does not exist")
    conflict = protection_conflict(real, protected, host)
    if conflict is not None:
        raise InvalidArgument(f"{where} source {shown} is not allowed: {conflict}")
    if stat.S_ISSOCK(mode):
        raise InvalidArgument(f"{where} source {shown} is not allowed: it is a socket")
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        raise InvalidArgument(f"{where} source {shown} is not allowed: it is a device")
    return real


def check_mount(index: int, mount: MountInfo, host: HostPaths, protected: list[ProtectedPath]) -> MountInfo:
    """``mount`` as it will be mounted (type and options filled in, a bind's
    source resolved), if the policy allows it.

    Raises:
        InvalidArgument: naming ``mounts[index]``, the field and why.
    """
    where = f"mounts[{index}]"
    if mount.type not in ("", *ALLOWED_TYPES):
        raise InvalidArgument(
            f"{where} type {quote(mount.type)} is not allowed (allowed: {', '.join(ALLOWED_TYPES)})"
        )
    if len(mount.options or ()) > MAX_OPTIONS:
        raise InvalidArgument(f"{where} has {len(mount.options or ())} options, more than {MAX_OPTIONS}")
    effective = effective_mount(mount)
    _check_target(where, effective.target)
    options = list(effective.options or ())
    _check_options(where, effective.type, options)
    if effective.type == BIND:
        real = _check_bind_source(where, effective.source, host, protected)
        return MountInfo(source=real, target=effective.target, type=BIND, options=options)
    if "\0" in effective.source or len(effective.source.encode(errors="surrogatepass")) > MAX_PATH:
        raise InvalidArgument(f"{where} source {quote(effective.source)} is not a tmpfs name")
    return effective


def check_mounts(mounts: list[MountInfo], host: HostPaths, protected: list[ProtectedPath]) -> list[MountInfo]:
    """Every mount through :func:`check_mount`, at most :data:`MAX_MOUNTS`."""
    if len(mounts) > MAX_MOUNTS:
        raise InvalidArgument(f"mounts: {len(mounts)} given, at most {MAX_MOUNTS} allowed")
    return [check_mount(i, mount, host, protected) for i, mount in enumerate(mounts)]
