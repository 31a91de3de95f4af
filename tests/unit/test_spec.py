"""The OCI spec, field by field: containerd's default, then each 0-OS addition,
and what :func:`read_spec` finds in a spec.

The expected values are written out here (not computed from the module's
constants) so a slip in a constant shows up as a failing test. How a
Container maps to these values is ``test_spec_mapping.py``'s.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contd_trio.containerd import spec as oci
from contd_trio.containerd.spec import (
    HostFacts,
    SpecMount,
    SpecRequest,
    SpecSummary,
    build_spec,
    default_spec,
    process_spec,
    read_spec,
    spec_json,
)

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


def make(**fields: Any) -> SpecRequest:
    """A complete request, as the module hands it over."""
    base = SpecRequest(
        namespace="tenant",
        container_id="web",
        rootfs="/var/cache/flist/web",
        args=("/bin/sleep", "100"),
        env=(PATH,),
        cwd="/",
        netns="ndmz",
        cpu=1,
        memory=268435456,
        annotations={"shutdown_timeout": "3000000000"},
    )
    return dataclasses.replace(base, **fields)


def build(request: SpecRequest, host: HostFacts = HOST) -> dict[str, Any]:
    return build_spec(request, host)


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
    assert build(make(container_id="db"))["linux"]["cgroupsPath"] == "/tenant/db"
    assert build(make(namespace="other"))["linux"]["cgroupsPath"] == "/other/web"


def test_env_gets_default_path_first() -> None:
    spec = build(make(args=("/bin/true",), env=("A=1", "B=2")))
    assert spec["process"]["env"] == [PATH, "A=1", "B=2"]


def test_env_keeps_its_own_path() -> None:
    spec = build(make(args=("/bin/true",), env=("A=1", "PATH=/opt/bin")))
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


def test_annotations_are_written_as_given() -> None:
    annotations = {"shutdown_timeout": "1500", "contd.request": '{"version":1}', "other": "héllo"}
    assert build(make(annotations=annotations))["annotations"] == annotations
    assert build(make(annotations={}))["annotations"] == {}


def test_network_namespace_path() -> None:
    namespaces = build(make(netns="n-42"))["linux"]["namespaces"]
    assert namespaces[-1] == {"type": "network", "path": "/var/run/netns/n-42"}
    assert [ns["type"] for ns in namespaces] == ["pid", "ipc", "uts", "mount", "network"]
    other = build(make(), host=HostFacts(cpu_count=4, netns_dir="/tmp/netns"))
    assert other["linux"]["namespaces"][-1]["path"] == "/tmp/netns/ndmz"


def test_network_namespace_given_as_a_path() -> None:
    namespaces = build(make(netns="/run/other/n-7"))["linux"]["namespaces"]
    assert namespaces[-1] == {"type": "network", "path": "/run/other/n-7"}


def test_user_mounts_are_written_in_order_as_given() -> None:
    spec = build(
        make(
            mounts=(
                SpecMount("/data/a", "/var/lib/a", "bind", ("rbind",)),
                SpecMount("tmpfs", "/scratch", "tmpfs", ("size=10m", "mode=1777")),
                SpecMount("/data", "/ro", "bind", ("rbind", "ro")),
                SpecMount("none", "/empty", "tmpfs"),
            )
        )
    )
    assert spec["mounts"][-4:] == [
        {"destination": "/var/lib/a", "type": "bind", "source": "/data/a", "options": ["rbind"]},
        {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["size=10m", "mode=1777"]},
        {"destination": "/ro", "type": "bind", "source": "/data", "options": ["rbind", "ro"]},
        {"destination": "/empty", "type": "tmpfs", "source": "none", "options": []},
    ]
    assert spec["mounts"][-5] == RESOLV


def test_memory_limit() -> None:
    assert build(make())["linux"]["resources"]["memory"] == {"limit": 268435456}
    assert "memory" not in build(make(memory=0))["linux"]["resources"]


def test_pids_limit_from_the_node_policy() -> None:
    assert build(make())["linux"]["resources"]["pids"] == {"limit": 4096}
    assert build(make(), host=HostFacts(cpu_count=4, pids_limit=100))["linux"]["resources"]["pids"] == {
        "limit": 100
    }
    assert "pids" not in build(make(), host=HostFacts(cpu_count=4, pids_limit=0))["linux"]["resources"]


def test_cpu_quota_and_period() -> None:
    assert build(make(cpu=2))["linux"]["resources"]["cpu"] == {"quota": 200000, "period": 100000}
    assert build(make(cpu=1))["linux"]["resources"]["cpu"] == {"quota": 100000, "period": 100000}
    assert "cpu" not in build(make(cpu=0))["linux"]["resources"]


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
    spec = build(make(args=("/bin/sh", "-c", "echo hi"), cwd="/srv"))
    assert spec["process"]["cwd"] == "/srv"
    assert spec["process"]["args"] == ["/bin/sh", "-c", "echo hi"]
    assert build(make(cwd=""))["process"]["cwd"] == "/"


def test_interactive_runs_corex() -> None:
    request = make(interactive=True, args=("/bin/app", "--flag"))
    spec = build(request, host=HostFacts(cpu_count=1, corex_path="/opt/corex"))
    assert spec["process"]["args"] == ["/corex", "--ipv6", "-d", "7", "--interface", "eth0"]
    assert spec["mounts"][-1] == {
        "destination": "/corex",
        "type": "bind",
        "source": "/opt/corex",
        "options": ["rbind", "ro"],
    }


def test_not_interactive_has_no_corex() -> None:
    spec = build(make())
    assert all(m["destination"] != "/corex" for m in spec["mounts"])
    assert spec["process"]["args"] == ["/bin/sleep", "100"]


def test_build_does_not_modify_its_input() -> None:
    annotations = {"a": "1"}
    request = make(mounts=(SpecMount("/a", "/b", "bind", ("rbind",)),), env=("A=1",), annotations=annotations)
    spec = build(request)
    spec["annotations"]["b"] = "2"
    spec["process"]["env"].append("B=2")
    assert annotations == {"a": "1"}
    assert request == make(
        mounts=(SpecMount("/a", "/b", "bind", ("rbind",)),), env=("A=1",), annotations={"a": "1"}
    )


# ------------------------------------------------------------ spec_json


def test_spec_json_is_compact_and_deterministic() -> None:
    spec = build(make(args=("/bin/echo", "héllo")))
    data = spec_json(spec)
    assert data == spec_json(build(make(args=("/bin/echo", "héllo"))))
    assert b": " not in data and b", " not in data
    assert json.loads(data) == spec
    assert "héllo".encode() in data


# ------------------------------------------------------------ read_spec


def test_read_spec_gives_back_the_request() -> None:
    request = make(
        env=(PATH, "A=1"),
        cwd="/srv",
        mounts=(SpecMount("/data", "/data", "bind", ("rbind",)),),
        cpu=3,
        memory=1 << 30,
        elevated=True,
        rootfs_propagation="shared",
        annotations={"shutdown_timeout": "1000000000", "k": "v"},
    )
    assert read_spec(build(request)) == SpecSummary(
        rootfs="/var/cache/flist/web",
        args=("/bin/sleep", "100"),
        env=(PATH, "A=1"),
        cwd="/srv",
        netns="ndmz",
        mounts=(SpecMount("/data", "/data", "bind", ("rbind",)),),
        memory=1 << 30,
        cpu=3,
        rootfs_propagation="shared",
        elevated=True,
        interactive=False,
        annotations={"shutdown_timeout": "1000000000", "k": "v"},
    )


def test_read_spec_reports_binds_only_and_none_of_the_daemon_s() -> None:
    request = make(
        interactive=True,
        mounts=(
            SpecMount("tmpfs", "/scratch", "tmpfs", ("size=1m",)),
            SpecMount("/d", "/d", "bind", ("rbind",)),
        ),
    )
    got = read_spec(build(request))
    assert got.mounts == (SpecMount("/d", "/d", "bind", ("rbind",)),)
    assert got.interactive is True
    assert got.args == ("/corex", "--ipv6", "-d", "7", "--interface", "eth0")


names = st.from_regex(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*", fullmatch=True).filter(lambda s: len(s) <= 76)
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
paths = st.lists(st.text("abcxyz._-", min_size=1, max_size=8), max_size=4).map(lambda p: "/" + "/".join(p))
env_entries = st.builds(lambda k, v: f"{k}={v}", st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True), text)
bind_mounts = st.builds(
    SpecMount,
    paths,
    paths,
    st.just("bind"),
    st.lists(st.sampled_from(["rbind", "ro", "nosuid"]), max_size=3).map(tuple),
)
requests = st.builds(
    SpecRequest,
    namespace=names,
    container_id=names,
    rootfs=paths,
    args=st.lists(text, min_size=1, max_size=3).map(tuple),
    env=st.lists(env_entries, max_size=4).map(lambda env: tuple(oci.effective_env(env))),
    cwd=paths,
    netns=names,
    mounts=st.lists(bind_mounts, max_size=3).map(tuple),
    memory=st.integers(1, 1 << 44),
    cpu=st.integers(1, 256),
    rootfs_propagation=st.sampled_from(["", "private", "rprivate", "shared", "rshared", "slave", "rslave"]),
    elevated=st.booleans(),
    interactive=st.booleans(),
    annotations=st.dictionaries(text, text, max_size=3),
)


@settings(max_examples=300)
@given(requests)
def test_read_spec_inverts_build_spec(request: SpecRequest) -> None:
    corex = ("/corex", "--ipv6", "-d", "7", "--interface", "eth0")
    expected = SpecSummary(
        rootfs=request.rootfs,
        args=corex if request.interactive else request.args,
        env=request.env,
        cwd=request.cwd,
        netns=request.netns,
        mounts=request.mounts,
        memory=request.memory,
        cpu=request.cpu,
        rootfs_propagation=request.rootfs_propagation,
        elevated=request.elevated,
        # A non-interactive process whose args happen to be corex's reads as interactive.
        interactive=request.interactive or request.args[:1] == ("/corex",),
        annotations=request.annotations,
    )
    spec = build_spec(request, HOST)
    assert read_spec(spec) == expected
    # and through the bytes containerd stores
    assert read_spec(json.loads(spec_json(spec))) == expected


def test_read_spec_of_an_empty_spec() -> None:
    assert read_spec({}) == SpecSummary()
    assert read_spec({}).env is None


def test_read_spec_of_a_default_spec() -> None:
    got = read_spec(default_spec("ns", "c"))
    assert got.rootfs == "rootfs"
    assert got.cwd == "/"
    assert got.netns == ""
    assert got.mounts == () and got.cpu == 0 and got.memory == 0 and got.elevated is False
    assert got.annotations == {} and got.env is None


def test_read_spec_keeps_only_string_annotations() -> None:
    spec = build(make())
    spec["annotations"] = {"a": "1", "b": 2, "c": None, "d": ["x"]}
    assert read_spec(spec).annotations == {"a": "1"}
    spec["annotations"] = ["not", "a", "map"]
    assert read_spec(spec).annotations == {}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(text, children, max_size=3),
    max_leaves=10,
)


def _maybe(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return json_values | st.fixed_dictionaries({}, optional=fields)


#: Specs of any shape, as a container not made by us may hold.
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
    annotations=json_values | st.dictionaries(text, json_values | text, max_size=4),
)


@settings(max_examples=300)
@given(foreign_specs)
def test_read_spec_never_raises(spec: Any) -> None:
    got = read_spec(spec)
    assert isinstance(got, SpecSummary)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in got.annotations.items())


# ------------------------------------------------------------ process_spec


def test_process_spec_starts_from_the_container_process() -> None:
    spec = build(make(elevated=True, env=(PATH, "A=1"), cwd="/srv"))
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
    spec = build(make(env=(PATH, "A=1")))
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


# ------------------------------------------------------------ Update's limits


def test_linux_resources_sets_only_what_is_given() -> None:
    assert oci.linux_resources(0, 0) == {}
    assert oci.linux_resources(64 << 20, 0) == {"memory": {"limit": 64 << 20}}
    assert oci.linux_resources(0, 2) == {"cpu": {"quota": 200_000, "period": 100_000}}


def test_with_resources_changes_the_limits_and_keeps_the_rest() -> None:
    spec = build(make(memory=64 << 20, cpu=1, elevated=True))
    updated = oci.with_resources(spec, 128 << 20, 0)
    assert read_spec(updated).memory == 128 << 20 and read_spec(updated).cpu == 1
    assert updated["linux"]["resources"]["devices"] == spec["linux"]["resources"]["devices"]
    updated = oci.with_resources(updated, 0, 2)
    assert (read_spec(updated).memory, read_spec(updated).cpu) == (128 << 20, 2)
    # The spec given is not changed; everything but the limits is the same.
    assert read_spec(spec).memory == 64 << 20
    updated["linux"]["resources"] = spec["linux"]["resources"]
    assert updated == spec
    # A spec without limits at all (not made by us) gets them.
    bare = oci.with_resources({"process": {"args": ["x"]}}, 8 << 20, 1)
    assert (read_spec(bare).memory, read_spec(bare).cpu, read_spec(bare).args) == (8 << 20, 1, ("x",))
    odd = oci.with_resources({"linux": "x"}, 8 << 20, 0)
    assert read_spec(odd).memory == 8 << 20
