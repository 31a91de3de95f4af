"""The OCI runtime spec of a container, as plain JSON-ready dicts.

Pure: no I/O. Facts about the host (CPU count, where corex and resolv.conf
live, where network namespaces are) come in as :class:`HostFacts`, so the
same request always gives the same bytes and every field can be tested.

:func:`default_spec` is containerd's default Linux spec (``oci/spec.go``
``populateDefaultUnixSpec`` and ``oci/mounts.go``). :func:`build_spec`
applies 0-OS's additions on top of it for a :class:`SpecRequest`, in the
order 0-OS's ``Run`` applied its ``SpecOpts``, plus the seccomp profile
containerd's ``WithDefaultProfile`` would add (``containerd.seccomp``), which
0-OS never applied. :func:`read_spec` gives back what a spec says, as a
:class:`SpecSummary`, from any spec (ours, 0-OS's Go daemon's, ``ctr``'s).

This layer knows nothing of the container module or the bus: requests and
summaries are plain values, and annotations are opaque strings that
:func:`build_spec` writes and :func:`read_spec` hands back. What they mean
(what a spec cannot say, such as the entrypoint as asked or the log
backends) is the module's (``module.spec_mapping``).
"""

from __future__ import annotations

import copy
import json
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .seccomp import seccomp_profile

#: ``Any.type_url`` of a container spec (Containers.Create) and of an exec
#: process (Tasks.Exec): containerd wants these bare names.
SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
PROCESS_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Process"
#: What Tasks.Update takes: the spec's ``linux.resources`` object.
RESOURCES_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"

#: What containerd 1.6 writes (runtime-spec 1.0.2-dev is vendored there).
OCI_VERSION = "1.0.2-dev"

#: The PATH a container gets unless its env names one (containerd's
#: ``defaultUnixEnv``; 0-OS gave none, so a bare ``sleep`` entrypoint failed).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: containerd's ``defaultUnixCaps``: bounding = effective = permitted.
DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

#: containerd 1.6.26+ / 1.7.x masks powercap too (CVE-2020-8694); older 1.6
#: releases (Debian 12's 1.6.20) do not. We write the newer, safer list.
MASKED_PATHS: tuple[str, ...] = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/proc/scsi",
)
READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)
NAMESPACES: tuple[str, ...] = ("pid", "ipc", "uts", "mount", "network")

#: containerd's default mounts as (destination, type, source, options).
DEFAULT_MOUNTS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("/proc", "proc", "proc", ("nosuid", "noexec", "nodev")),
    ("/dev", "tmpfs", "tmpfs", ("nosuid", "strictatime", "mode=755", "size=65536k")),
    (
        "/dev/pts",
        "devpts",
        "devpts",
        ("nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"),
    ),
    ("/dev/shm", "tmpfs", "shm", ("nosuid", "noexec", "nodev", "mode=1777", "size=65536k")),
    ("/dev/mqueue", "mqueue", "mqueue", ("nosuid", "noexec", "nodev")),
    ("/sys", "sysfs", "sysfs", ("nosuid", "noexec", "nodev", "ro")),
    ("/run", "tmpfs", "tmpfs", ("nosuid", "strictatime", "mode=755", "size=65536k")),
)

RESOLV_CONF_TARGET = "/etc/resolv.conf"
COREX_TARGET = "/corex"
#: The process of an interactive container: corex, reachable over IPv6 on eth0.
COREX_ARGS: tuple[str, ...] = (COREX_TARGET, "--ipv6", "-d", "7", "--interface", "eth0")
#: The CFS period 0-OS uses; the quota is this times the CPU count.
CPU_PERIOD = 100_000

#: /dev/fuse, which only an elevated container gets (containerd's
#: ``WithLinuxDevice("/dev/fuse", "rwm")`` reads these from the host; they are
#: fixed by the kernel, so we write them without looking).
FUSE_PATH = "/dev/fuse"
FUSE_MAJOR = 10
FUSE_MINOR = 229
FUSE_FILE_MODE = 0o666
ELEVATED_CAPABILITY = "CAP_SYS_ADMIN"

_BIND = "bind"


@dataclass(frozen=True)
class HostFacts:
    """What the spec and validation need to know about the node, passed in
    so neither looks the machine up itself.

    The last five name the host's control paths that validation keeps out of
    every container (see ``module.mount_policy``); the spec builder ignores them.
    """

    cpu_count: int
    corex_path: str = "/usr/bin/corex"
    resolv_conf: str = "/etc/resolv.conf"
    netns_dir: str = "/var/run/netns"
    #: ``platform.machine()``: picks the seccomp architectures.
    machine: str = "x86_64"
    containerd_socket: str = "/run/containerd/containerd.sock"
    containerd_root: str = "/var/lib/containerd"
    containerd_state: str = "/run/containerd"
    #: The daemon's own ``-root``.
    daemon_root: str = "/var/cache/modules/containerd"
    #: The zbus broker's unix socket; empty when it listens on TCP.
    broker_socket: str = ""
    #: The most tasks (processes and threads) one container may have; 0 for
    #: no limit. A node-wide policy, not a request's: without it one fork
    #: bomb takes every pid of the node, and then nothing can start.
    pids_limit: int = 4096


@dataclass(frozen=True)
class SpecMount:
    """A mount of the spec: ``source`` at ``target`` in the container, a
    filesystem of ``type`` (``bind`` for a bind mount) with ``options``."""

    source: str
    target: str
    type: str
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class SpecRequest:
    """What :func:`build_spec` writes into containerd's default spec.

    The values are final: checked and completed by the caller (defaults
    filled in, ``args`` the split command, ``env`` the whole environment,
    mounts with their type and options). The builder decides nothing about
    validity; it only writes.
    """

    namespace: str
    #: With ``namespace``, the cgroups path ``/<namespace>/<container_id>``.
    container_id: str
    #: The host directory that is the container's root.
    rootfs: str
    #: The process; ignored when ``interactive``.
    args: tuple[str, ...]
    #: The process's environment; containerd's PATH goes first unless it names one.
    env: tuple[str, ...]
    #: The process's working directory; "" is "/".
    cwd: str
    #: The network namespace: a name under ``HostFacts.netns_dir``, or an absolute path.
    netns: str
    #: Mounted after containerd's defaults and the host's resolv.conf, in order, as given.
    mounts: tuple[SpecMount, ...] = ()
    #: Bytes; 0 sets no limit.
    memory: int = 0
    #: CPUs, as a CFS quota of this many periods; 0 sets none.
    cpu: int = 0
    rootfs_propagation: str = ""
    #: CAP_SYS_ADMIN, /dev/fuse, and the seccomp calls that go with the capability.
    elevated: bool = False
    #: The process is corex, bound read-only from the host at /corex.
    interactive: bool = False
    #: Written as they are; the spec's only record of what a caller wants kept.
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SpecSummary:
    """What a spec says, as :func:`read_spec` finds it: zero values where
    it says nothing (or something unreadable)."""

    rootfs: str = ""
    args: tuple[str, ...] = ()
    #: None when the spec has no env list at all.
    env: tuple[str, ...] | None = None
    #: As written: "" when the spec names none.
    cwd: str = ""
    #: The last element of the network namespace's path.
    netns: str = ""
    #: The bind mounts, minus the two the daemon adds itself (resolv.conf and corex).
    mounts: tuple[SpecMount, ...] = ()
    memory: int = 0
    #: The CFS quota in whole periods.
    cpu: int = 0
    rootfs_propagation: str = ""
    #: The process holds CAP_SYS_ADMIN.
    elevated: bool = False
    #: The process is corex (by its args: the spec has no other sign).
    interactive: bool = False
    #: The string-valued annotations.
    annotations: Mapping[str, str] = field(default_factory=dict)


def _mount(destination: str, type_: str, source: str, options: Iterable[str]) -> dict[str, Any]:
    return {"destination": destination, "type": type_, "source": source, "options": list(options)}


def default_spec(namespace: str, container_id: str) -> dict[str, Any]:
    """containerd's default Linux spec for ``container_id`` in ``namespace``.

    Key order follows the Go structs, so the JSON reads like the one
    containerd writes. The caller has validated both ids (they become the
    cgroup path).
    """
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "user": {"uid": 0, "gid": 0},
            "cwd": "/",
            "capabilities": {
                "bounding": list(DEFAULT_CAPABILITIES),
                "effective": list(DEFAULT_CAPABILITIES),
                "permitted": list(DEFAULT_CAPABILITIES),
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs"},
        "mounts": [_mount(dest, type_, src, opts) for dest, type_, src, opts in DEFAULT_MOUNTS],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "cgroupsPath": posixpath.join("/", namespace, container_id),
            "namespaces": [{"type": kind} for kind in NAMESPACES],
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }


def effective_env(env: Iterable[str] | None) -> list[str]:
    """``env`` with containerd's default PATH first unless it names one."""
    entries = list(env or ())
    if any(entry.split("=", 1)[0] == "PATH" for entry in entries):
        return entries
    return [f"PATH={DEFAULT_PATH}", *entries]


def build_spec(request: SpecRequest, host: HostFacts) -> dict[str, Any]:
    """The spec of ``request``: containerd's default plus 0-OS's additions
    and the default seccomp profile (widened by CAP_SYS_ADMIN when elevated)."""
    spec = default_spec(request.namespace, request.container_id)
    process = spec["process"]
    linux = spec["linux"]
    resources = linux["resources"]
    mounts: list[dict[str, Any]] = spec["mounts"]

    spec["root"] = {"path": request.rootfs}
    process["env"] = effective_env(request.env)
    mounts.append(_mount(RESOLV_CONF_TARGET, _BIND, host.resolv_conf, ("rbind", "ro")))
    spec["annotations"] = dict(request.annotations)
    # 0-OS drops containerd's tmpfs /run: what the rootfs has at /run stays visible.
    spec["mounts"] = mounts = [m for m in mounts if m["destination"] != "/run"]
    netns = {"type": "network", "path": posixpath.join(host.netns_dir, request.netns)}
    linux["namespaces"] = [netns if ns["type"] == "network" else ns for ns in linux["namespaces"]]
    mounts.extend(_mount(m.target, m.type, m.source, m.options) for m in request.mounts)
    resources.update(linux_resources(request.memory, request.cpu))
    if host.pids_limit > 0:
        resources["pids"] = {"limit": host.pids_limit}
    if request.rootfs_propagation:
        linux["rootfsPropagation"] = request.rootfs_propagation
    if request.elevated:
        for name in ("bounding", "effective", "permitted"):
            caps = process["capabilities"][name]
            if ELEVATED_CAPABILITY not in caps:
                caps.append(ELEVATED_CAPABILITY)
        linux.setdefault("devices", []).append(
            {
                "path": FUSE_PATH,
                "type": "c",
                "major": FUSE_MAJOR,
                "minor": FUSE_MINOR,
                "fileMode": FUSE_FILE_MODE,
                "uid": 0,
                "gid": 0,
            }
        )
        resources["devices"].append(
            {"allow": True, "type": "c", "major": FUSE_MAJOR, "minor": FUSE_MINOR, "access": "rwm"}
        )
    # After the capabilities are final: the profile widens with them.
    linux["seccomp"] = seccomp_profile(process["capabilities"]["bounding"], host.machine)
    process["cwd"] = request.cwd or "/"
    if request.interactive:
        mounts.append(_mount(COREX_TARGET, _BIND, host.corex_path, ("rbind", "ro")))
        process["args"] = list(COREX_ARGS)
    else:
        process["args"] = list(request.args)
    return spec


def linux_resources(memory: int, cpu: int) -> dict[str, Any]:
    """The limits of ``memory`` bytes and ``cpu`` CPUs (a CFS quota of that
    many periods) as the spec's ``linux.resources`` holds them; 0 sets
    neither. Tasks.Update takes the same object, and changes only what it sets."""
    resources: dict[str, Any] = {}
    if memory > 0:
        resources["memory"] = {"limit": memory}
    if cpu > 0:
        resources["cpu"] = {"quota": CPU_PERIOD * cpu, "period": CPU_PERIOD}
    return resources


def with_resources(spec: Mapping[str, Any], memory: int, cpu: int) -> dict[str, Any]:
    """A copy of ``spec`` whose memory and CPU limits are ``memory`` and
    ``cpu`` (0 keeps what it has); the rest of its resources are kept."""
    updated = copy.deepcopy(dict(spec))
    if not isinstance(updated.get("linux"), dict):
        updated["linux"] = {}
    linux = updated["linux"]
    if not isinstance(linux.get("resources"), dict):
        linux["resources"] = {}
    resources = linux["resources"]
    for key, value in linux_resources(memory, cpu).items():
        resources[key] = {**_dict(resources.get(key)), **value}
    return updated


# ---------------------------------------------------------------- read_spec
# A spec may come from anyone (a container made by 0-OS's Go daemon, by ctr):
# every accessor below returns a zero value instead of raising.


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _strings(value: Any) -> list[str]:
    return [item for item in _list(value) if isinstance(item, str)]


def _user_binds(spec: Mapping[str, Any]) -> tuple[SpecMount, ...]:
    """The spec's bind mounts, minus the two the daemon adds itself."""
    found = []
    for raw in _list(spec.get("mounts")):
        m = _dict(raw)
        target = _str(m.get("destination"))
        if _str(m.get("type")) != _BIND or target in (RESOLV_CONF_TARGET, COREX_TARGET):
            continue
        found.append(SpecMount(_str(m.get("source")), target, _BIND, tuple(_strings(m.get("options")))))
    return tuple(found)


def read_spec(spec: Mapping[str, Any]) -> SpecSummary:
    """What ``spec`` says about the fields a :class:`SpecRequest` sets.

    For a spec :func:`build_spec` made, that is the request as written: the
    env with its PATH, "/" for an empty cwd, corex's args for an interactive
    container, and of the mounts only the binds. A spec missing pieces, or
    not made by us, gives zero values where we cannot tell; this never raises.
    """
    spec = _dict(spec)
    process = _dict(spec.get("process"))
    linux = _dict(spec.get("linux"))
    resources = _dict(linux.get("resources"))
    args = tuple(_strings(process.get("args")))

    netns = ""
    for ns in _list(linux.get("namespaces")):
        if _str(_dict(ns).get("type")) == "network":
            netns = posixpath.basename(_str(_dict(ns).get("path")))

    cpu_limits = _dict(resources.get("cpu"))
    quota, period = _int(cpu_limits.get("quota")), _int(cpu_limits.get("period"))
    env = process.get("env")
    annotations = _dict(spec.get("annotations"))

    return SpecSummary(
        rootfs=_str(_dict(spec.get("root")).get("path")),
        args=args,
        env=tuple(_strings(env)) if isinstance(env, list) else None,
        cwd=_str(process.get("cwd")),
        netns=netns,
        mounts=_user_binds(spec),
        memory=max(_int(_dict(resources.get("memory")).get("limit")), 0),
        cpu=quota // period if quota > 0 and period > 0 else 0,
        rootfs_propagation=_str(linux.get("rootfsPropagation")),
        elevated=ELEVATED_CAPABILITY in _strings(_dict(process.get("capabilities")).get("bounding")),
        interactive=args[:1] == (COREX_TARGET,),
        annotations={k: v for k, v in annotations.items() if isinstance(k, str) and isinstance(v, str)},
    )


def _merge_env(base: list[str], overrides: Iterable[str]) -> list[str]:
    """containerd's ``replaceOrAppendEnvValues``: an override replaces the
    entry with its key in place, or is appended."""
    result = list(base)
    index = {entry.split("=", 1)[0]: i for i, entry in enumerate(result)}
    for entry in overrides:
        key = entry.split("=", 1)[0]
        if key in index:
            result[index[key]] = entry
        else:
            index[key] = len(result)
            result.append(entry)
    return result


def process_spec(args: list[str], env: list[str], cwd: str, base: Mapping[str, Any]) -> dict[str, Any]:
    """The OCI Process of an Exec in a container whose spec is ``base``.

    As containerd's exec does, it starts from the container's own process
    (user, capabilities, rlimits, noNewPrivileges, env, cwd are kept) and
    replaces the args. ``env`` entries replace or extend the container's,
    a non-empty ``cwd`` replaces its cwd. No terminal: exec output is not
    interactive. ``base`` may be the whole spec or just its process; it is
    not modified.
    """
    base = _dict(base)
    source = base.get("process") if isinstance(base.get("process"), Mapping) else base
    process = copy.deepcopy(dict(_dict(source)))
    process.pop("consoleSize", None)
    process.pop("commandLine", None)
    process["terminal"] = False
    process.setdefault("user", {"uid": 0, "gid": 0})
    process["args"] = list(args)
    if env:
        process["env"] = _merge_env(_strings(process.get("env")), env)
    if cwd:
        process["cwd"] = cwd
    elif not _str(process.get("cwd")):
        process["cwd"] = "/"
    return process


def spec_json(spec: Mapping[str, Any]) -> bytes:
    """Compact JSON of a spec or process, as the ``Any`` value containerd
    writes verbatim as the bundle's config.json. Same dict, same bytes."""
    return json.dumps(spec, separators=(",", ":"), ensure_ascii=False).encode()
