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

**Bind sources.** Absolute and existing. Checked as written (so
``/proc/1/root`` is in ``/proc`` even where the link cannot be read), then
resolved (symlinks and ``..`` followed); the resolved path is what the spec
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
socket. The host's mount table (``/proc/self/mountinfo``: the daemon runs
in the host's mount namespace) shows the same places through other mounts:
a bind of ``/etc`` or of ``/`` elsewhere, a disk holding containerd's root
mounted whole, a filesystem of the kernel (procfs, sysfs, nsfs, cgroup...)
mounted anywhere, or a directory with such a mount below it (an ``rbind``
carries it along) are refused too (:class:`Protection`).

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

from ..containerd.spec import HostFacts
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

#: Filesystems of the host's kernel: a bind source on one of them, or
#: holding a mount of one, is refused wherever it is mounted.
KERNEL_FILESYSTEMS = frozenset(
    {
        "proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "securityfs", "debugfs",
        "tracefs", "bpf", "configfs", "fusectl", "pstore", "efivarfs", "binfmt_misc", "nsfs",
        "mqueue", "hugetlbfs", "autofs", "rpc_pipefs", "selinuxfs",
    }
)  # fmt: skip

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

    def mount_table(self) -> list[MountEntry]:
        """The host's mounts, as ``/proc/self/mountinfo`` lists them.

        Raises:
            OSError: it cannot be read.
        """
        ...


@dataclass(frozen=True)
class MountEntry:
    """One line of ``/proc/self/mountinfo``: ``root`` of the filesystem on
    ``device`` is mounted at ``mount_point``."""

    mount_point: str
    root: str
    device: str
    fs_type: str


_MOUNTINFO_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    return _MOUNTINFO_ESCAPE.sub(lambda match: chr(int(match.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[MountEntry]:
    """The entries of a ``/proc/<pid>/mountinfo`` text, in its order; lines
    that do not parse are skipped."""
    entries = []
    for line in text.splitlines():
        fields = line.split(" ")
        try:
            separator = fields.index("-", 6)
            entries.append(
                MountEntry(
                    mount_point=_unescape(fields[4]),
                    root=_unescape(fields[3]),
                    device=fields[2],
                    fs_type=fields[separator + 1],
                )
            )
        except (ValueError, IndexError):
            continue
    return entries


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


def _relation(path: str, other: str) -> str | None:
    if path == other:
        return "is"
    if _within(path, other):
        return "is inside"
    if _within(other, path):
        return "contains"
    return None


class Protection:
    """The protected paths of this node and its mount table, read once per
    request (blocking: from a worker thread).

    A path is refused when, as a path, it is, is inside or contains a
    protected one (compared as configured and resolved, so ``/var/run/netns``
    and ``/run/netns`` are one); when it is the same place seen through
    another mount (a bind of ``/etc`` elsewhere is still ``/etc``: mounts are
    compared as device and path within that device's filesystem); and when
    it is on, or contains a mount of, a filesystem of the host's kernel
    (:data:`KERNEL_FILESYSTEMS`), wherever that is mounted.

    Raises:
        InvalidArgument: the host's mount table cannot be read (refusing is
            safer than guessing).
    """

    def __init__(self, paths: list[ProtectedPath], host: HostPaths) -> None:
        self._forms: list[tuple[ProtectedPath, str]] = []
        for entry in paths:
            written = normalised_path(entry.path)
            try:
                resolved = host.realpath(written)
            except OSError:
                resolved = written
            self._forms.extend((entry, form) for form in dict.fromkeys((resolved, written)))
        try:
            self._mounts = host.mount_table()
        except OSError as exc:
            raise InvalidArgument(f"cannot read the host's mount table: {exc.strerror or exc}") from None
        self._root_id = self._identity("/")
        self._ids = [(entry, form, self._identity(form)) for entry, form in self._forms]

    def _mount_of(self, path: str) -> MountEntry | None:
        """The mount ``path`` is on: the deepest mount point above it (the
        last one listed when several are stacked)."""
        found = None
        for mount in self._mounts:
            if _within(path, mount.mount_point) and (
                found is None or len(mount.mount_point) >= len(found.mount_point)
            ):
                found = mount
        return found

    def _identity(self, path: str) -> tuple[str, str] | None:
        """Where ``path`` is, whatever mount it is seen through: its device
        and its path within that device's filesystem."""
        mount = self._mount_of(path)
        if mount is None:
            return None
        inside = path[len(mount.mount_point) :] if mount.mount_point != "/" else path
        return mount.device, normalised_path(mount.root + "/" + inside)

    def path_conflict(self, path: str) -> str | None:
        """Why ``path`` (absolute, normalised), compared as a path only, must
        not be given to a container; None when it may."""
        if path == "/":
            return "it is the host's root directory"
        for entry, form in self._forms:
            relation = _relation(path, form)
            if relation is not None:
                return f"it {relation} {entry.what} ({form})"
        return None

    def _alias_conflict(self, identity: tuple[str, str] | None) -> str | None:
        """How a place (device, path inside) relates to a protected one,
        ``"is the host's root directory"`` say; None when it does not."""
        if identity is None:
            return None
        if identity == self._root_id:
            return "is the host's root directory"
        device, inside = identity
        for entry, form, protected in self._ids:
            if protected is not None and protected[0] == device:
                relation = _relation(inside, protected[1])
                if relation is not None:
                    return f"{relation} {entry.what} ({form})"
        return None

    def conflict(self, real: str) -> str | None:
        """Why the resolved, existing host path ``real`` must not be given to
        a container, or None."""
        found = self.path_conflict(real)
        if found is not None:
            return found
        mount = self._mount_of(real)
        if mount is not None and mount.fs_type in KERNEL_FILESYSTEMS:
            return f"it is on a {mount.fs_type} filesystem of the host's kernel ({mount.mount_point})"
        alias = self._alias_conflict(self._identity(real))
        if alias is not None and mount is not None:
            return f"it {alias}, seen through the mount at {mount.mount_point}"
        # An rbind carries every mount below the source along with it.
        for below in self._mounts:
            if below.mount_point == real or not _within(below.mount_point, real):
                continue
            if below.fs_type in KERNEL_FILESYSTEMS:
                return f"it contains a {below.fs_type} mount of the host's kernel ({below.mount_point})"
            alias = self._alias_conflict((below.device, normalised_path(below.root)))
            if alias is not None:
                return f"it contains the mount at {below.mount_point}, which {alias}"
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
        return None if type_ == BIND else f"{quote(option)} is for bind mounts only"
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


def _check_bind_source(where: str, source: str, host: HostPaths, protection: Protection) -> str:
    """The resolved source of a bind mount, once it is allowed."""
    _check_path_shape(f"{where} source", source)
    # As written first: "/proc/1/root" is refused for being in /proc, even
    # where the link cannot be read, and "/data/../proc" whatever /data is.
    conflict = protection.path_conflict(normalised_path(source))
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
    conflict = protection.conflict(real)
    if conflict is not None:
        raise InvalidArgument(f"{where} source {shown} is not allowed: {conflict}")
    if stat.S_ISSOCK(mode):
        raise InvalidArgument(f"{where} source {shown} is not allowed: it is a socket")
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        raise InvalidArgument(f"{where} source {shown} is not allowed: it is a device")
    return real


def effective_mount(mount: MountInfo) -> MountInfo:
    """A user mount as it is mounted: a recursive bind unless the request
    names its type (the seed's ``Type``) or options.

    A bind whose options name neither ``bind`` nor ``rbind`` (``["ro"]``,
    say) gets ``rbind`` first: without one runc would hand the type "bind"
    to mount(2) as a filesystem name and fail.
    """
    type_ = mount.type or BIND
    options = list(mount.options or ())
    if type_ == BIND and not set(BIND_OPTIONS).intersection(options):
        options = ["rbind", *options]
    return MountInfo(source=mount.source, target=mount.target, type=type_, options=options)


def check_mount(index: int, mount: MountInfo, host: HostPaths, protection: Protection) -> MountInfo:
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
        real = _check_bind_source(where, effective.source, host, protection)
        return MountInfo(source=real, target=effective.target, type=BIND, options=options)
    if "\0" in effective.source or len(effective.source.encode(errors="surrogatepass")) > MAX_PATH:
        raise InvalidArgument(f"{where} source {quote(effective.source)} is not a tmpfs name")
    return effective


def check_mounts(mounts: list[MountInfo], host: HostPaths, protection: Protection) -> list[MountInfo]:
    """Every mount through :func:`check_mount`, at most :data:`MAX_MOUNTS`."""
    if len(mounts) > MAX_MOUNTS:
        raise InvalidArgument(f"mounts: {len(mounts)} given, at most {MAX_MOUNTS} allowed")
    return [check_mount(i, mount, host, protection) for i, mount in enumerate(mounts)]
