"""The OCI spec, field by field: containerd's default, then each 0-OS addition.

The expected values are written out here (not computed from the module's
constants) so a slip in a constant shows up as a failing test.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contd_trio.containerd import spec as oci
from contd_trio.containerd.spec import HostFacts, build_spec, default_spec, process_spec, read_spec, spec_json
from contd_trio.module.types import Container, Logs, LogsRedis, MountInfo, NetworkInfo, Stats

HOST = HostFacts(cpu_count=4)
PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CAPS = [
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
]
DEFAULT_MOUNTS = [
    {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
    {
        "destination": "/dev",
        "type": "tmpfs",
        "source": "tmpfs",
        "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
    },
    {
        "destination": "/dev/pts",
        "type": "devpts",
        "source": "devpts",
        "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
    },
    {
        "destination": "/dev/shm",
        "type": "tmpfs",
        "source": "shm",
        "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
    },
    {
        "destination": "/dev/mqueue",
        "type": "mqueue",
        "source": "mqueue",
        "options": ["nosuid", "noexec", "nodev"],
    },
    {
        "destination": "/sys",
        "type": "sysfs",
        "source": "sysfs",
        "options": ["nosuid", "noexec", "nodev", "ro"],
    },
    {
        "destination": "/run",
        "type": "tmpfs",
        "source": "tmpfs",
        "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
    },
]
RESOLV = {
    "destination": "/etc/resolv.conf",
    "type": "bind",
    "source": "/etc/resolv.conf",
    "options": ["rbind", "ro"],
}
FUSE_DEVICE = {
    "path": "/dev/fuse",
    "type": "c",
    "major": 10,
    "minor": 229,
    "fileMode": 0o666,
    "uid": 0,
    "gid": 0,
}
FUSE_RULE = {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rwm"}


def make(**fields: Any) -> Container:
    """A normalised container, as ``prepare_run`` hands it over."""
    base = Container(
        name="web",
        rootfs="/var/cache/flist/web",
        env=[PATH],
        network=NetworkInfo("ndmz"),
        entrypoint="/bin/sleep 100",
        cpu=1,
        memory=268435456,
        shutdown_timeout_ns=3_000_000_000,
        mounts=[],
        logs=[],
        stats=[],
    )
    return dataclasses.replace(base, **fields)


def build(container: Container, args: list[str] | None = None, cwd: str = "/", host: HostFacts = HOST):
    args = shlex.split(container.entrypoint) if args is None else args
    return build_spec("tenant", container, args, list(container.env or ()), cwd, host)


# ------------------------------------------------------------ default spec


class TestDefaultSpec:
    spec = default_spec("ns1", "c1")

    def test_version_and_root(self) -> None:
        assert self.spec["ociVersion"] == "1.0.2-dev"
        assert self.spec["root"] == {"path": "rootfs"}
        assert "hostname" not in self.spec

    def test_process(self) -> None:
        process = self.spec["process"]
        assert process["cwd"] == "/"
        assert process["user"] == {"uid": 0, "gid": 0}
        assert process["noNewPrivileges"] is True
        assert process["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
        assert "env" not in process
        assert "terminal" not in process

    def test_capabilities(self) -> None:
        caps = self.spec["process"]["capabilities"]
        assert caps == {"bounding": CAPS, "effective": CAPS, "permitted": CAPS}

    def test_mounts_in_order_with_options(self) -> None:
        assert self.spec["mounts"] == DEFAULT_MOUNTS

    def test_masked_and_readonly_paths(self) -> None:
        linux = self.spec["linux"]
        assert linux["maskedPaths"] == [
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
        ]
        assert linux["readonlyPaths"] == [
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger",
        ]

    def test_linux(self) -> None:
        linux = self.spec["linux"]
        assert linux["cgroupsPath"] == "/ns1/c1"
        assert linux["resources"] == {"devices": [{"allow": False, "access": "rwm"}]}
        assert linux["namespaces"] == [
            {"type": "pid"},
            {"type": "ipc"},
            {"type": "uts"},
            {"type": "mount"},
            {"type": "network"},
        ]
        for absent in ("seccomp", "sysctl", "devices", "rootfsPropagation", "uidMappings"):
            assert absent not in linux

    def test_fresh_each_time(self) -> None:
        first = default_spec("ns1", "c1")
        first["process"]["capabilities"]["bounding"].append("CAP_SYS_ADMIN")
        first["mounts"].clear()
        second = default_spec("ns1", "c1")
        assert second["process"]["capabilities"]["bounding"] == CAPS
        assert second["mounts"] == DEFAULT_MOUNTS


# ------------------------------------------------------------ 0-OS additions


def test_root_path_is_rootfs_and_writable() -> None:
    spec = build(make())
    assert spec["root"]["path"] == "/var/cache/flist/web"
    assert spec["root"].get("readonly", False) is False


def test_cgroups_path_names_namespace_and_container() -> None:
    assert build(make(name="db"))["linux"]["cgroupsPath"] == "/tenant/db"


def test_env_gets_default_path_first() -> None:
    spec = build_spec("t", make(), ["/bin/true"], ["A=1", "B=2"], "/", HOST)
    assert spec["process"]["env"] == [PATH, "A=1", "B=2"]


def test_env_keeps_its_own_path() -> None:
    spec = build_spec("t", make(), ["/bin/true"], ["A=1", "PATH=/opt/bin"], "/", HOST)
    assert spec["process"]["env"] == ["A=1", "PATH=/opt/bin"]


def test_resolv_conf_bound_read_only_from_host() -> None:
    mounts = build(make())["mounts"]
    assert RESOLV in mounts
    other = build(make(), host=HostFacts(cpu_count=4, resolv_conf="/run/resolv.conf"))["mounts"]
    assert {**RESOLV, "source": "/run/resolv.conf"} in other


def test_run_mount_is_dropped_and_the_rest_kept_in_order() -> None:
    mounts = build(make())["mounts"]
    assert [m["destination"] for m in mounts] == [
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/etc/resolv.conf",
    ]
    assert mounts[:6] == DEFAULT_MOUNTS[:6]


def test_shutdown_timeout_annotation_in_nanoseconds() -> None:
    assert build(make())["annotations"]["shutdown_timeout"] == "3000000000"
    assert build(make(shutdown_timeout_ns=1500))["annotations"]["shutdown_timeout"] == "1500"


def test_network_namespace_path() -> None:
    namespaces = build(make(network=NetworkInfo("n-42")))["linux"]["namespaces"]
    assert namespaces[-1] == {"type": "network", "path": "/var/run/netns/n-42"}
    assert [ns["type"] for ns in namespaces] == ["pid", "ipc", "uts", "mount", "network"]
    other = build(make(), host=HostFacts(cpu_count=4, netns_dir="/tmp/netns"))
    assert other["linux"]["namespaces"][-1]["path"] == "/tmp/netns/ndmz"


def test_user_mounts_are_rbinds_by_default() -> None:
    spec = build(make(mounts=[MountInfo("/data/a", "/var/lib/a"), MountInfo("/data/b", "/b")]))
    assert spec["mounts"][-2:] == [
        {"destination": "/var/lib/a", "type": "bind", "source": "/data/a", "options": ["rbind"]},
        {"destination": "/b", "type": "bind", "source": "/data/b", "options": ["rbind"]},
    ]


def test_user_mount_type_and_options_honoured() -> None:
    spec = build(
        make(
            mounts=[
                MountInfo("tmpfs", "/scratch", "tmpfs", ["size=10m", "mode=1777"]),
                MountInfo("/data", "/ro", "", ["rbind", "ro"]),
                MountInfo("none", "/empty", "tmpfs"),
            ]
        )
    )
    assert spec["mounts"][-3:] == [
        {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["size=10m", "mode=1777"]},
        {"destination": "/ro", "type": "bind", "source": "/data", "options": ["rbind", "ro"]},
        {"destination": "/empty", "type": "tmpfs", "source": "none", "options": []},
    ]


def test_default_memory_limit() -> None:
    assert build(make())["linux"]["resources"]["memory"] == {"limit": 268435456}


def test_cpu_quota_and_period() -> None:
    assert build(make(cpu=2))["linux"]["resources"]["cpu"] == {"quota": 200000, "period": 100000}
    assert build(make(cpu=1))["linux"]["resources"]["cpu"] == {"quota": 100000, "period": 100000}


def test_rootfs_propagation_only_when_set() -> None:
    assert "rootfsPropagation" not in build(make())["linux"]
    assert build(make(rootfs_propagation="rslave"))["linux"]["rootfsPropagation"] == "rslave"


def test_elevated_adds_sys_admin_and_fuse() -> None:
    spec = build(make(elevated=True))
    caps = spec["process"]["capabilities"]
    for name in ("bounding", "effective", "permitted"):
        assert caps[name] == [*CAPS, "CAP_SYS_ADMIN"]
    assert "inheritable" not in caps and "ambient" not in caps
    assert spec["linux"]["devices"] == [FUSE_DEVICE]
    assert spec["linux"]["resources"]["devices"] == [{"allow": False, "access": "rwm"}, FUSE_RULE]


def test_not_elevated_has_neither() -> None:
    spec = build(make(elevated=False))
    caps = spec["process"]["capabilities"]
    assert all("CAP_SYS_ADMIN" not in caps[name] for name in caps)
    assert "devices" not in spec["linux"]
    assert spec["linux"]["resources"]["devices"] == [{"allow": False, "access": "rwm"}]


def test_cwd_and_args() -> None:
    spec = build(make(entrypoint="/bin/sh -c 'echo hi'", working_dir="/srv"), cwd="/srv")
    assert spec["process"]["cwd"] == "/srv"
    assert spec["process"]["args"] == ["/bin/sh", "-c", "echo hi"]


def test_interactive_runs_corex() -> None:
    container = make(interactive=True, entrypoint="/bin/app --flag")
    spec = build(container, args=["/bin/app", "--flag"], host=HostFacts(cpu_count=1, corex_path="/opt/corex"))
    assert spec["process"]["args"] == ["/corex", "--ipv6", "-d", "7", "--interface", "eth0"]
    assert spec["mounts"][-1] == {
        "destination": "/corex",
        "type": "bind",
        "source": "/opt/corex",
        "options": ["rbind", "ro"],
    }
    assert spec["annotations"]["contd.interactive"] == "true"
    assert spec["annotations"]["contd.entrypoint"] == "/bin/app --flag"


def test_not_interactive_has_no_corex() -> None:
    spec = build(make())
    assert all(m["destination"] != "/corex" for m in spec["mounts"])
    assert spec["annotations"]["contd.interactive"] == "false"


def test_annotations() -> None:
    container = make(
        entrypoint="/start",
        working_dir="",
        mounts=[MountInfo("/data", "/data")],
        logs=[Logs("redis", LogsRedis("redis://h:1/out", "redis://h:1/err"))],
        stats=[Stats("redis", "redis://h:1/stats")],
    )
    annotations = build(container)["annotations"]
    assert set(annotations) == {
        "shutdown_timeout",
        "contd.entrypoint",
        "contd.interactive",
        "contd.mounts",
        "contd.logs",
        "contd.stats",
        "contd.workdir",
    }
    assert annotations["contd.entrypoint"] == "/start"
    assert annotations["contd.workdir"] == ""
    assert json.loads(annotations["contd.mounts"]) == [
        {"source": "/data", "target": "/data", "type": "bind", "options": ["rbind"]}
    ]
    assert json.loads(annotations["contd.logs"]) == [
        {"Type": "redis", "Data": {"Stdout": "redis://h:1/out", "Stderr": "redis://h:1/err"}}
    ]
    assert json.loads(annotations["contd.stats"]) == [{"Type": "redis", "Endpoint": "redis://h:1/stats"}]


def test_build_does_not_modify_its_input() -> None:
    container = make(mounts=[MountInfo("/a", "/b")], env=["A=1"])
    before = dataclasses.replace(container, mounts=[MountInfo("/a", "/b")], env=["A=1"])
    build(container)
    assert container == before


# ------------------------------------------------------------ spec_json


def test_spec_json_is_compact_and_deterministic() -> None:
    spec = build(make(entrypoint="/bin/echo héllo"))
    data = spec_json(spec)
    assert data == spec_json(build(make(entrypoint="/bin/echo héllo")))
    assert b": " not in data and b", " not in data
    assert json.loads(data) == spec
    assert "héllo".encode() in data


# ------------------------------------------------------------ read_spec


def test_read_spec_gives_back_a_container() -> None:
    container = make(
        env=[PATH, "A=1"],
        working_dir="/srv",
        mounts=[MountInfo("/data", "/data", "bind", ["rbind"])],
        cpu=3,
        memory=1 << 30,
        elevated=True,
        rootfs_propagation="shared",
        shutdown_timeout_ns=10**9,
        logs=[Logs("redis", LogsRedis("redis://h:1/o", ""))],
        stats=[Stats("redis", "redis://h:1/s")],
    )
    got = read_spec(build(container, cwd="/srv"))
    assert got == dataclasses.replace(container, name="")


def test_read_spec_reports_no_daemon_mounts() -> None:
    got = read_spec(build(make(interactive=True), args=[]))
    assert got.mounts == []
    assert got.interactive is True
    assert got.entrypoint == "/bin/sleep 100"


names = st.from_regex(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*", fullmatch=True).filter(lambda s: len(s) <= 76)
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
paths = st.lists(st.text("abcxyz._-", min_size=1, max_size=8), max_size=4).map(lambda p: "/" + "/".join(p))
env_entries = st.builds(lambda k, v: f"{k}={v}", st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True), text)
mounts = st.builds(
    lambda source, target, type_, options: oci.effective_mount(MountInfo(source, target, type_, options)),
    paths,
    paths,
    st.sampled_from(["", "bind", "tmpfs", "overlay"]),
    st.none() | st.lists(st.sampled_from(["rbind", "ro", "size=1m", "nosuid"]), max_size=3),
)
containers = st.builds(
    Container,
    name=names,
    rootfs=paths,
    env=st.lists(env_entries, max_size=4).map(oci.effective_env),
    working_dir=st.just("") | paths,
    network=st.builds(NetworkInfo, names),
    mounts=st.lists(mounts, max_size=3),
    entrypoint=text,
    interactive=st.booleans(),
    cpu=st.integers(1, 256),
    memory=st.integers(1, 1 << 44),
    logs=st.lists(st.builds(Logs, text, st.builds(LogsRedis, text, text)), max_size=2),
    stats=st.lists(st.builds(Stats, text, text), max_size=2),
    elevated=st.booleans(),
    rootfs_propagation=st.sampled_from(["", "private", "rprivate", "shared", "rshared", "slave", "rslave"]),
    shutdown_timeout_ns=st.integers(1, 1 << 62),
)


@settings(max_examples=300)
@given(containers, st.lists(text, min_size=1, max_size=3))
def test_read_spec_inverts_build_spec(container: Container, args: list[str]) -> None:
    cwd = container.working_dir or "/"
    spec = build_spec("tenant", container, args, list(container.env or ()), cwd, HOST)
    assert read_spec(spec) == dataclasses.replace(container, name="")
    # and through the bytes containerd stores
    assert read_spec(json.loads(spec_json(spec))) == dataclasses.replace(container, name="")


def test_read_spec_of_an_empty_spec() -> None:
    assert read_spec({}) == Container(env=None, mounts=[], logs=None, stats=None)


def test_read_spec_of_a_default_spec() -> None:
    got = read_spec(default_spec("ns", "c"))
    assert got.rootfs == "rootfs"
    assert got.working_dir == "/"
    assert got.network.namespace == ""
    assert got.mounts == [] and got.cpu == 0 and got.memory == 0 and got.elevated is False


def test_read_spec_of_a_go_made_spec() -> None:
    """A container made by 0-OS's Go daemon has no contd.* annotations: the
    facts come from the spec itself, without its own binds."""
    spec = build(make(mounts=[MountInfo("/data", "/data")], interactive=True), args=[])
    spec["annotations"] = {"shutdown_timeout": "5000000000"}
    got = read_spec(spec)
    assert got.interactive is True
    assert got.entrypoint == "/corex --ipv6 -d 7 --interface eth0"
    assert got.mounts == [MountInfo("/data", "/data", "bind", ["rbind"])]
    assert got.shutdown_timeout_ns == 5_000_000_000
    assert got.logs is None and got.stats is None


def test_read_spec_tolerates_broken_annotations() -> None:
    spec = build(make())
    spec["annotations"].update(
        {
            "shutdown_timeout": "soon",
            "contd.mounts": "{not json",
            "contd.logs": '[{"Type": 5}]',
            "contd.stats": '{"a": 1}',
            "contd.interactive": "maybe",
        }
    )
    got = read_spec(spec)
    assert got.shutdown_timeout_ns == 0
    assert got.logs is None and got.stats is None
    assert got.interactive is False
    assert got.mounts == []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(text, children, max_size=3),
    max_leaves=10,
)


def _maybe(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return json_values | st.fixed_dictionaries({}, optional=fields)


foreign_specs = _maybe(
    root=_maybe(path=json_values),
    process=_maybe(
        args=json_values,
        env=json_values | st.lists(json_values),
        cwd=json_values,
        capabilities=_maybe(bounding=json_values | st.lists(json_values)),
    ),
    mounts=st.lists(_maybe(type=json_values | st.just("bind"), destination=json_values, source=json_values)),
    linux=_maybe(
        namespaces=st.lists(_maybe(type=json_values | st.just("network"), path=json_values)),
        resources=_maybe(memory=_maybe(limit=json_values), cpu=_maybe(quota=json_values, period=json_values)),
        rootfsPropagation=json_values,
    ),
    annotations=_maybe(
        **{
            key: json_values
            | text
            | st.just("[]")
            | st.just('[{"Type": "redis"}]')
            | st.just('[{"source": 1}]')
            for key in (
                "shutdown_timeout",
                "contd.entrypoint",
                "contd.interactive",
                "contd.mounts",
                "contd.logs",
                "contd.stats",
                "contd.workdir",
            )
        }
    ),
)


@settings(max_examples=300)
@given(foreign_specs)
def test_read_spec_never_raises(spec: Any) -> None:
    got = read_spec(spec)
    assert isinstance(got, Container)


# ------------------------------------------------------------ process_spec


def test_process_spec_starts_from_the_container_process() -> None:
    spec = build(make(elevated=True, env=[PATH, "A=1"]), cwd="/srv")
    process = process_spec(["/bin/ls", "-l"], [], "", spec)
    assert process["args"] == ["/bin/ls", "-l"]
    assert process["terminal"] is False
    assert process["cwd"] == "/srv"
    assert process["env"] == [PATH, "A=1"]
    for key in ("user", "capabilities", "rlimits", "noNewPrivileges"):
        assert process[key] == spec["process"][key]
    # the container's spec is untouched
    assert spec["process"]["args"] == ["/bin/sleep", "100"]


def test_process_spec_overrides() -> None:
    spec = build(make(env=[PATH, "A=1"]))
    process = process_spec(["env"], ["A=2", "B=3"], "/tmp", spec)
    assert process["env"] == [PATH, "A=2", "B=3"]
    assert process["cwd"] == "/tmp"


def test_process_spec_from_a_process_or_nothing() -> None:
    spec = build(make())
    assert process_spec(["x"], [], "", spec["process"]) == process_spec(["x"], [], "", spec)
    bare = process_spec(["x"], [], "", {})
    assert bare == {"terminal": False, "user": {"uid": 0, "gid": 0}, "args": ["x"], "cwd": "/"}


def test_process_spec_drops_a_terminal() -> None:
    base = {
        "process": {"terminal": True, "consoleSize": {"height": 1, "width": 2}, "args": ["sh"], "cwd": "/"}
    }
    process = process_spec(["id"], [], "", base)
    assert process["terminal"] is False and "consoleSize" not in process


@pytest.mark.parametrize(
    ("url", "name"),
    [(oci.SPEC_TYPE_URL, "Spec"), (oci.PROCESS_TYPE_URL, "Process")],
)
def test_type_urls(url: str, name: str) -> None:
    assert url == f"types.containerd.io/opencontainers/runtime-spec/1/{name}"
