"""What containerd leaves behind when it is cut off while making a task, and
its API cannot clean: a task bundle nobody serves, and a shim nobody uses.

containerd (1.6's runtime v2) makes a task's bundle directory,
``<state>/io.containerd.runtime.v2.task/<namespace>/<id>``, before it starts
the task's shim. When containerd dies in between, it leaves the directory
and no shim; after its restart no API call removes it (there is no task to
delete), and every later task of that name fails with ``failed to start
shim: mkdir <bundle>: file exists`` until containerd restarts again.

:func:`remove_stale_bundle` removes such a directory, and only such a one:
the caller has just been told by containerd that the task does not exist,
and no ``containerd-shim-runc-v2`` process serves that namespace and id.
When the client of a ``Tasks.Create`` goes away mid-call (the daemon was
killed), containerd gives up the task and removes its bundle, but the shim
it had started for it keeps running, serving nothing, forever.
:func:`idle_shims` finds such shims: a runc v2 shim of this containerd (its
``-address``), older than a start can take, whose bundle directory is gone
and which runs no container (the shim of a live task has the container's
init as a child; the log shim of its output does not count). The caller
asks containerd whether it still has a task of that name before
:func:`kill_if_idle`.

Blocking (it reads /proc and removes files): run it in a thread.
"""

from __future__ import annotations

import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

RUNTIME_DIR = "io.containerd.runtime.v2.task"
SHIM_BINARY = b"containerd-shim-runc-v2"


def bundle_path(state_dir: Path, namespace: str, container_id: str) -> Path:
    """Where containerd keeps a task's bundle (ids are validated identifiers)."""
    return state_dir / RUNTIME_DIR / namespace / container_id


def is_stale_bundle_error(message: str) -> bool:
    """Whether containerd refused a task because its bundle directory exists."""
    return "failed to start shim" in message and "file exists" in message


def _pid_namespace(process: Path) -> str | None:
    try:
        return os.readlink(process / "ns" / "pid")
    except OSError:
        return None


def _shims(proc: Path) -> list[tuple[int, dict[bytes, bytes]]]:
    """The runc v2 shim processes, with their command-line flags.

    A shim runs in the pid namespace of containerd and of this daemon; a
    process of a container that names itself like one (with another
    tenant's namespace and id, say) lives in the container's, and is none.
    """
    own_namespace = _pid_namespace(proc / "self")
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not argv or not argv[0].endswith(SHIM_BINARY):
            continue
        namespace = _pid_namespace(entry)
        if own_namespace is not None and namespace is not None and namespace != own_namespace:
            continue
        found.append((int(entry.name), dict(zip(argv[1::2], argv[2::2], strict=False))))
    return found


def shim_serves(namespace: str, container_id: str, proc: Path = Path("/proc")) -> bool:
    """Whether a runc v2 shim process for this namespace and id is running."""
    wanted = {b"-namespace": namespace.encode(), b"-id": container_id.encode()}
    return any(all(flags.get(k) == v for k, v in wanted.items()) for _, flags in _shims(proc))


#: The output writer a shim starts for a task's binary:// stdio URI; it is
#: no sign of a container (contd_trio.module.output installs it).
LOG_SHIM_NAME = "contd-logshim"


def _runs_a_container(proc: Path, pid: int) -> bool:
    """Whether the shim has a child other than a log shim (a container's
    init, or runc); unreadable counts as yes, to leave it alone.

    A log shim is told by its command line and by its pid namespace, the
    shim's own: a container's process may name itself anything (it is the
    tenant's), but it lives in the container's pid namespace."""
    try:
        tasks = list((proc / str(pid) / "task").iterdir())
        children = [child for task in tasks for child in (task / "children").read_text().split()]
    except OSError:
        return True
    shim_pid_namespace = _pid_namespace(proc / str(pid))
    if shim_pid_namespace is None:
        return True
    for child in children:
        try:
            argv = (proc / child / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile
        pid_namespace = _pid_namespace(proc / child)
        if pid_namespace is None:
            continue  # gone meanwhile
        log_shim = any(arg.endswith(LOG_SHIM_NAME.encode()) for arg in argv)
        if not log_shim or pid_namespace != shim_pid_namespace:
            return True
    return False


#: A shim younger than this may still be starting a task: never an orphan.
ORPHAN_MIN_AGE = 5.0


def _age(proc: Path, pid: int) -> float:
    """Seconds since the process started (0 when it cannot be told)."""
    try:
        fields = (proc / str(pid) / "stat").read_text().rpartition(")")[2].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        uptime = float((proc / "uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return uptime - started


@dataclass(frozen=True)
class Shim:
    pid: int
    namespace: str
    container_id: str


def idle_shims(
    state_dir: Path, address: Path, proc: Path = Path("/proc"), min_age: float = ORPHAN_MIN_AGE
) -> list[Shim]:
    """Shims of containerd at ``address`` that look orphaned: older than
    ``min_age``, without a child process and without a bundle. Whether
    containerd still has a task for one is the caller's to ask."""
    found = []
    for pid, flags in _shims(proc):
        if flags.get(b"-address") != str(address).encode():
            continue
        namespace = flags.get(b"-namespace", b"").decode(errors="replace")
        container_id = flags.get(b"-id", b"").decode(errors="replace")
        if not namespace or not container_id or "/" in namespace + container_id:
            continue
        if bundle_path(state_dir, namespace, container_id).exists() or _runs_a_container(proc, pid):
            continue
        if _age(proc, pid) < min_age:
            continue
        found.append(Shim(pid, namespace, container_id))
    return found


def kill_if_idle(shim: Shim, state_dir: Path, address: Path, proc: Path = Path("/proc")) -> bool:
    """SIGKILL ``shim`` if it is still the same idle shim; returns whether it was."""
    if shim not in idle_shims(state_dir, address, proc, min_age=0.0):
        return False
    try:
        os.kill(shim.pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def remove_stale_bundle(state_dir: Path, namespace: str, container_id: str) -> bool:
    """Remove the bundle of a task containerd no longer has, and its work
    directory; returns whether there was one to remove.

    The caller must know that containerd has no task of that id. Nothing is
    removed while a shim serves it, or when its ``rootfs`` is a mount point.
    """
    bundle = bundle_path(state_dir, namespace, container_id)
    if not bundle.is_dir() or os.path.ismount(bundle / "rootfs"):
        return False
    if shim_serves(namespace, container_id):
        return False
    work = bundle / "work"
    if work.is_symlink():
        target = Path(os.readlink(work))
        if target.is_absolute() and target.name == container_id and target.parent.name == namespace:
            shutil.rmtree(target, ignore_errors=True)
    shutil.rmtree(bundle, ignore_errors=True)
    return not bundle.exists()
