"""Private Redis and containerd for development, tests and benchmarks.

Both run as children of the caller with every file under one run directory
(never the system's ``/run/containerd`` socket, root or state), so a
developer's machine and CI look the same. Used by ``tools/up``, the test
fixtures and the benchmarks.

    python -m tools.services up [--run-dir .run]      # Redis + containerd + contd, Ctrl-C stops all
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pyroute2 import NetNS, netns

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RUN_DIR = ROOT / ".run"
CTR = shutil.which("ctr") or "/usr/bin/ctr"


class ServiceError(RuntimeError):
    pass


def _death_signal() -> Callable[[], None] | None:
    """What the child runs before exec: a SIGTERM when its parent dies, so a
    test run that is killed leaves no Redis or containerd behind.

    Only when started from the main thread: the kernel sends the signal when
    the *thread* that forked exits, and a service (re)started from a Trio
    worker thread would be killed when Trio retires that thread.
    """
    return _die_with_parent if threading.current_thread() is threading.main_thread() else None


def _die_with_parent() -> None:
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes] | None
    log_path: Path
    extra: dict[str, str] = field(default_factory=dict)

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class RedisService(Service):
    socket_path: Path = Path()
    #: Also listening on 127.0.0.1:port when not 0 (log and stats backends are TCP).
    port: int = 0
    #: The network namespace its port is in ("": the host's).
    netns: str = ""

    @property
    def url(self) -> str:
        """The zbus broker address."""
        return f"unix://{self.socket_path}"

    def channel_url(self, channel: str) -> str:
        """A ``redis://host:port/channel`` URL, as log and stats backends take."""
        assert self.port, "this Redis has no TCP port"
        return f"redis://127.0.0.1:{self.port}/{channel}"

    def restart(self) -> None:
        self.stop()
        fresh = start_redis(
            self.socket_path.parent, name=self.socket_path.stem, port=self.port, netns=self.netns
        )
        self.process = fresh.process


@dataclass
class ContainerdService(Service):
    address: Path = Path()
    config_path: Path = Path()
    #: Its root and state directories (the system's by default), which contd
    #: keeps out of containers.
    root: Path = Path("/var/lib/containerd")
    state: Path = Path("/run/containerd")

    def restart(self, *, kill: bool = True) -> None:
        """Stop containerd (SIGKILL by default, as a crash) and start it again;
        its running tasks keep running, as in production."""
        if kill:
            self.kill()
        else:
            self.stop()
        self.process = _spawn_containerd(self.config_path, self.log_path)
        _wait_for(lambda: _containerd_answers(self.address), 30, "containerd", self)

    def start_again(self) -> None:
        self.process = _spawn_containerd(self.config_path, self.log_path)
        _wait_for(lambda: _containerd_answers(self.address), 30, "containerd", self)


def _wait_for(check, timeout: float, what: str, service: Service) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.process is not None and service.process.poll() is not None:
            raise ServiceError(f"{what} exited with {service.process.returncode}:\n{service.log_tail()}")
        if check():
            return
        time.sleep(0.05)
    raise ServiceError(f"{what} did not come up within {timeout:g} s:\n{service.log_tail()}")


def _unix_socket_accepts(path: Path) -> bool:
    with contextlib.closing(socket.socket(socket.AF_UNIX)) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
        return True


def free_loopback_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(run_dir: Path, name: str = "redis", port: int = 0, netns: str = "") -> RedisService:
    """A Redis on a unix socket in ``run_dir`` (and on 127.0.0.1:port when
    ``port`` is given), no persistence. ``netns``: its TCP port is in that
    network namespace (a name under /var/run/netns, its loopback brought
    up), where a container in it reaches it; the unix socket is the test's."""
    run_dir.mkdir(parents=True, exist_ok=True)
    sock = run_dir / f"{name}.sock"
    log_path = run_dir / f"{name}.log"
    with contextlib.suppress(FileNotFoundError):
        sock.unlink()
    redis_server = shutil.which("redis-server") or "/usr/bin/redis-server"
    inside: list[str] = []
    if netns:
        inside = ["ip", "netns", "exec", netns]
        subprocess.run([*inside, "ip", "link", "set", "lo", "up"], check=True)
    process = subprocess.Popen(
        [
            *inside,
            redis_server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--unixsocket",
            str(sock),
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(run_dir),
            "--logfile",
            str(log_path),
            "--daemonize",
            "no",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_death_signal(),
    )
    service = RedisService(name, process, log_path, socket_path=sock, port=port, netns=netns)
    _wait_for(lambda: _unix_socket_accepts(sock), 15, "redis-server", service)
    return service


_CONTAINERD_CONFIG = """\
version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{address}"

[ttrpc]
  address = "{address}.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
"""


def start_containerd(run_dir: Path) -> ContainerdService:
    """A containerd with its own root, state and socket under ``run_dir``."""
    base = run_dir / "containerd"
    for sub in ("root", "state", "opt"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    address = base / "containerd.sock"
    config_path = base / "config.toml"
    config_path.write_text(
        _CONTAINERD_CONFIG.format(root=base / "root", state=base / "state", address=address, opt=base / "opt")
    )
    log_path = base / "containerd.log"
    process = _spawn_containerd(config_path, log_path)
    service = ContainerdService(
        "containerd",
        process,
        log_path,
        address=address,
        config_path=config_path,
        root=base / "root",
        state=base / "state",
    )
    _wait_for(lambda: _containerd_answers(address), 30, "containerd", service)
    return service


def _spawn_containerd(config_path: Path, log_path: Path) -> subprocess.Popen[bytes]:
    containerd = shutil.which("containerd") or "/usr/bin/containerd"
    log = open(log_path, "ab")  # noqa: SIM115 - the child keeps it
    try:
        return subprocess.Popen(
            [containerd, "--config", str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            preexec_fn=_death_signal(),
        )
    finally:
        log.close()


def _containerd_answers(address: Path) -> bool:
    if not address.exists():
        return False
    result = subprocess.run([CTR, "--address", str(address), "version"], capture_output=True, timeout=10)
    return result.returncode == 0


def ctr(address: Path, *args: str, namespace: str | None = None, check: bool = True) -> str:
    """Run ``ctr`` against a containerd; returns its stdout."""
    command = [CTR, "--address", str(address)]
    if namespace is not None:
        command += ["--namespace", namespace]
    result = subprocess.run([*command, *args], capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise ServiceError(f"ctr {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def reap_containerd(address: Path) -> list[str]:
    """Kill and delete every task and container in every namespace of a
    containerd (shims outlive containerd; nothing may be left running).

    Returns:
        ``ns/id`` of every container removed.
    """
    removed = []
    for ns in ctr(address, "namespaces", "list", "-q").split():
        for task_line in ctr(address, "tasks", "list", namespace=ns).splitlines()[1:]:
            task = task_line.split()[0]
            ctr(address, "tasks", "kill", "-s", "SIGKILL", "--all", task, namespace=ns, check=False)
        for task_line in ctr(address, "tasks", "list", namespace=ns).splitlines()[1:]:
            task = task_line.split()[0]
            for _ in range(50):
                if ctr(address, "tasks", "delete", task, namespace=ns, check=False) or not _task_exists(
                    address, ns, task
                ):
                    break
                time.sleep(0.1)
        for container in ctr(address, "containers", "list", "-q", namespace=ns).split():
            ctr(address, "containers", "delete", container, namespace=ns, check=False)
            removed.append(f"{ns}/{container}")
    # Shims whose container record is gone (a leak) would keep running: end them too.
    for pid in shim_pids(address):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for ns in ctr(address, "namespaces", "list", "-q").split():
        remove_cgroups(ns)
    return removed


def shim_pids(address: Path, namespace: str | None = None) -> list[int]:
    """The runc shims serving a containerd (and one namespace of it)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not argv or not argv[0].endswith(b"containerd-shim-runc-v2"):
            continue
        args = dict(zip(argv[1::2], argv[2::2], strict=False))
        if args.get(b"-address") != str(address).encode():
            continue
        if namespace is None or args.get(b"-namespace") == namespace.encode():
            found.append(int(proc.name))
    return found


def remove_cgroups(namespace: str) -> None:
    """Kill what is left in a namespace's cgroups and remove them (runc
    leaves the empty ``/<ns>`` parent behind)."""
    root = Path("/sys/fs/cgroup")
    # cgroup v1 has a tree per controller; v2 one tree at the root.
    for controller in [root, *root.iterdir()]:
        parent = controller / namespace
        if not parent.is_dir():
            continue
        for child in [p for p in parent.iterdir() if p.is_dir()] + [parent]:
            procs = child / "cgroup.procs"
            for pid in procs.read_text().split() if procs.exists() else ():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            for _ in range(50):
                try:
                    child.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)


def _task_exists(address: Path, ns: str, task: str) -> bool:
    return any(
        line.split()[0] == task for line in ctr(address, "tasks", "list", namespace=ns).splitlines()[1:]
    )


@contextlib.contextmanager
def network_namespace() -> Iterator[str]:
    """A fresh network namespace under /var/run/netns, with a veth pair
    (``probe0``/``probe1``) that shows which namespace a container joined."""
    name = f"contd-test-{uuid.uuid4().hex[:8]}"
    netns.create(name)
    try:
        with NetNS(name) as ns:
            ns.link("add", ifname="probe0", kind="veth", peer="probe1")
        yield name
    finally:
        netns.remove(name)


def build_busybox_rootfs(target: Path) -> Path:
    """A minimal root filesystem: busybox-static and its applets as symlinks.

    Idempotent: an existing complete rootfs is reused.
    """
    marker = target / ".contd-rootfs"
    if marker.exists():
        return target
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        raise ServiceError("busybox is missing: install the busybox-static package")
    bin_dir = target / "bin"
    for sub in (
        "bin",
        "sbin",
        "etc",
        "proc",
        "sys",
        "dev",
        "tmp",
        "root",
        "run",
        "var/tmp",
        "usr/bin",
        "usr/sbin",
    ):
        (target / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, bin_dir / "busybox")
    applets = subprocess.run(
        [str(busybox), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        link = bin_dir / applet
        if applet != "busybox" and not link.exists():
            link.symlink_to("busybox")
    (target / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (target / "etc" / "group").write_text("root:x:0:\n")
    (target / "tmp").chmod(0o1777)
    marker.write_text("busybox rootfs built by tools/services.py\n")
    return target


def contd_command(
    redis_service: RedisService, containerd: ContainerdService, root: Path, *extra: str
) -> list[str]:
    """The command line of a contd serving on these services."""
    return [
        str(Path(sys.executable).parent / "contd"),
        "-broker", redis_service.url,
        "-root", str(root),
        "-containerd", str(containerd.address),
        "-containerd-root", str(containerd.root),
        "-containerd-state", str(containerd.state),
        *extra,
    ]  # fmt: skip


@contextlib.contextmanager
def running_services(run_dir: Path) -> Iterator[tuple[RedisService, ContainerdService]]:
    redis_service = start_redis(run_dir)
    try:
        containerd = start_containerd(run_dir)
        try:
            yield redis_service, containerd
        finally:
            containerd.stop()
    finally:
        redis_service.stop()


def _up(run_dir: Path, contd_args: list[str]) -> int:
    """Redis, containerd and contd in the foreground; Ctrl-C stops all three."""
    with running_services(run_dir) as (redis_service, containerd):
        root = run_dir / "contd"
        root.mkdir(parents=True, exist_ok=True)
        rootfs = build_busybox_rootfs(run_dir / "rootfs" / "busybox")
        command = contd_command(redis_service, containerd, root, *contd_args)
        print(
            json.dumps(
                {
                    "broker": redis_service.url,
                    "containerd": str(containerd.address),
                    "root": str(root),
                    "busybox_rootfs": str(rootfs),
                },
                indent=2,
            ),
            flush=True,
        )
        print("starting:", " ".join(command), flush=True)
        daemon = subprocess.Popen(command)
        try:
            return daemon.wait()
        except KeyboardInterrupt:
            daemon.send_signal(signal.SIGINT)
            try:
                daemon.wait(30)
            except subprocess.TimeoutExpired:
                daemon.kill()
            return 0
        finally:
            print("stopping contd, containerd and redis", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run Redis, containerd and contd in the foreground")
    up.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR)
    up.add_argument("contd_args", nargs=argparse.REMAINDER, help="more flags for contd")
    args = parser.parse_args()
    if args.command == "up":
        try:
            return _up(args.run_dir.resolve(), [a for a in args.contd_args if a != "--"])
        except KeyboardInterrupt:
            return 0
    return 2


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
