"""The module's side of the spec: a Container to a ``SpecRequest`` and back,
the ``contd.request`` and ``shutdown_timeout`` annotations, and the
annotations an earlier daemon wrote (``tests/data/legacy-specs``), read as it
read them.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from contd_trio.containerd import spec as oci
from contd_trio.containerd.spec import HostFacts, SpecMount, build_spec, default_spec, spec_json
from contd_trio.module.mount_policy import effective_mount
from contd_trio.module.spec_mapping import read_container, spec_request
from contd_trio.module.types import Container, Logs, LogsRedis, MountInfo, NetworkInfo, Stats
from contd_trio.module.validate import RunPlan

HOST = HostFacts(cpu_count=4)
LEGACY_SPECS = Path(__file__).resolve().parents[1] / "data" / "legacy-specs"
PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
COREX = ["/corex", "--ipv6", "-d", "7", "--interface", "eth0"]


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


def plan_of(container: Container, args: list[str] | None = None, cwd: str = "/") -> RunPlan:
    if args is None:
        args = COREX if container.interactive else shlex.split(container.entrypoint)
    return RunPlan("tenant", container, args, list(container.env or ()), cwd)


def build(container: Container, args: list[str] | None = None, cwd: str = "/") -> dict[str, Any]:
    return build_spec(spec_request(plan_of(container, args, cwd)), HOST)


def recorded(spec: dict[str, Any]) -> Any:
    return json.loads(spec["annotations"]["contd.request"])


# ------------------------------------------------------------ Container to SpecRequest


def test_the_request_carries_the_plan() -> None:
    container = make(
        env=[PATH, "A=1"],
        working_dir="/srv",
        mounts=[MountInfo("/data", "/data", "bind", ["rbind", "ro"])],
        cpu=2,
        memory=1 << 30,
        elevated=True,
        rootfs_propagation="rslave",
    )
    request = spec_request(plan_of(container, ["/bin/sleep", "100"], "/srv"))
    assert (request.namespace, request.container_id, request.rootfs) == (
        "tenant",
        "web",
        "/var/cache/flist/web",
    )
    assert (request.args, request.env, request.cwd) == (("/bin/sleep", "100"), (PATH, "A=1"), "/srv")
    assert request.netns == "ndmz"
    assert request.mounts == (SpecMount("/data", "/data", "bind", ("rbind", "ro")),)
    assert (request.cpu, request.memory, request.rootfs_propagation) == (2, 1 << 30, "rslave")
    assert request.elevated is True and request.interactive is False
    assert set(request.annotations) == {"shutdown_timeout", "contd.request"}


def test_shutdown_timeout_annotation_in_nanoseconds() -> None:
    assert build(make())["annotations"]["shutdown_timeout"] == "3000000000"
    assert build(make(shutdown_timeout_ns=1500))["annotations"]["shutdown_timeout"] == "1500"


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
                MountInfo("/data", "/ro2", "", ["ro"]),
                MountInfo("none", "/empty", "tmpfs"),
            ]
        )
    )
    assert spec["mounts"][-4:] == [
        {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["size=10m", "mode=1777"]},
        {"destination": "/ro", "type": "bind", "source": "/data", "options": ["rbind", "ro"]},
        {"destination": "/ro2", "type": "bind", "source": "/data", "options": ["rbind", "ro"]},
        {"destination": "/empty", "type": "tmpfs", "source": "none", "options": []},
    ]


def test_interactive_records_the_entrypoint_and_runs_corex() -> None:
    spec = build(make(interactive=True, entrypoint="/bin/app --flag"), args=["/bin/app", "--flag"])
    assert spec["process"]["args"] == COREX
    assert spec["mounts"][-1]["destination"] == "/corex"
    assert recorded(spec)["interactive"] is True
    assert recorded(spec)["entrypoint"] == "/bin/app --flag"


def test_not_interactive_is_recorded() -> None:
    spec = build(make())
    assert all(m["destination"] != "/corex" for m in spec["mounts"])
    assert recorded(spec)["interactive"] is False


def test_annotations() -> None:
    container = make(
        entrypoint="/start",
        working_dir="",
        mounts=[MountInfo("/data", "/data")],
        logs=[Logs("redis", LogsRedis("redis://h:1/out", "redis://h:1/err"))],
        stats=[Stats("redis", "redis://h:1/stats")],
    )
    annotations = build(container)["annotations"]
    assert set(annotations) == {"shutdown_timeout", "contd.request"}
    # The documented format, key order included; compact, like the spec.
    assert annotations["contd.request"] == (
        '{"version":1,"entrypoint":"/start","interactive":false,"working_dir":"",'
        '"mounts":[{"source":"/data","target":"/data","type":"bind","options":["rbind"]}],'
        '"logs":[{"type":"redis","stdout":"redis://h:1/out","stderr":"redis://h:1/err"}],'
        '"stats":[{"type":"redis","endpoint":"redis://h:1/stats"}]}'
    )


def test_annotations_of_nothing_recorded() -> None:
    spec = build(
        make(entrypoint="/bin/é x", working_dir="/srv", logs=None, stats=None, mounts=None), cwd="/srv"
    )
    assert recorded(spec) == {
        "version": 1,
        "entrypoint": "/bin/é x",
        "interactive": False,
        "working_dir": "/srv",
        "mounts": [],
        "logs": [],
        "stats": [],
    }
    assert "é" in spec["annotations"]["contd.request"]


def test_spec_request_does_not_modify_the_plan() -> None:
    container = make(mounts=[MountInfo("/a", "/b")], env=["A=1"])
    before = dataclasses.replace(container, mounts=[MountInfo("/a", "/b")], env=["A=1"])
    build(container)
    assert container == before


# ------------------------------------------------------------ spec to Container


def test_read_container_gives_back_a_container() -> None:
    container = make(
        env=[PATH, "A=1"],
        working_dir="/srv",
        mounts=[MountInfo("/data", "/data", "bind", ["rbind"]), MountInfo("t", "/t", "tmpfs", ["size=1m"])],
        cpu=3,
        memory=1 << 30,
        elevated=True,
        rootfs_propagation="shared",
        shutdown_timeout_ns=10**9,
        logs=[Logs("redis", LogsRedis("redis://h:1/o", ""))],
        stats=[Stats("redis", "redis://h:1/s")],
    )
    got = read_container(build(container, cwd="/srv"))
    assert got == dataclasses.replace(container, name="")


def test_read_container_reports_no_daemon_mounts() -> None:
    got = read_container(build(make(interactive=True), args=[]))
    assert got.mounts == []
    assert got.interactive is True
    assert got.entrypoint == "/bin/sleep 100"


names = st.from_regex(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*", fullmatch=True).filter(lambda s: len(s) <= 76)
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
paths = st.lists(st.text("abcxyz._-", min_size=1, max_size=8), max_size=4).map(lambda p: "/" + "/".join(p))
env_entries = st.builds(lambda k, v: f"{k}={v}", st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True), text)
mounts = st.builds(
    lambda source, target, type_, options: effective_mount(MountInfo(source, target, type_, options)),
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
def test_read_container_inverts_spec_request(container: Container, args: list[str]) -> None:
    cwd = container.working_dir or "/"
    spec = build_spec(spec_request(RunPlan("tenant", container, args, list(container.env or ()), cwd)), HOST)
    assert read_container(spec) == dataclasses.replace(container, name="")
    # and through the bytes containerd stores
    assert read_container(json.loads(spec_json(spec))) == dataclasses.replace(container, name="")


def test_read_container_of_an_empty_spec() -> None:
    assert read_container({}) == Container(env=None, mounts=[], logs=None, stats=None)


def test_read_container_of_a_default_spec() -> None:
    got = read_container(default_spec("ns", "c"))
    assert got.rootfs == "rootfs"
    assert got.working_dir == "/"
    assert got.network.namespace == ""
    assert got.mounts == [] and got.cpu == 0 and got.memory == 0 and got.elevated is False
    assert got.logs is None and got.stats is None and got.shutdown_timeout_ns == 0


def test_read_container_of_a_go_made_spec() -> None:
    """A container made by 0-OS's Go daemon has no contd.* annotations: the
    facts come from the spec itself, without its own binds."""
    spec = build(make(mounts=[MountInfo("/data", "/data")], interactive=True), args=[])
    spec["annotations"] = {"shutdown_timeout": "5000000000"}
    got = read_container(spec)
    assert got.interactive is True
    assert got.entrypoint == "/corex --ipv6 -d 7 --interface eth0"
    assert got.mounts == [MountInfo("/data", "/data", "bind", ["rbind"])]
    assert got.shutdown_timeout_ns == 5_000_000_000
    assert got.logs is None and got.stats is None
    assert got.working_dir == "/"


def with_request(spec: dict[str, Any], request: Any) -> dict[str, Any]:
    """``spec`` with ``contd.request`` replaced by ``request`` (JSON unless a str)."""
    raw = request if isinstance(request, str) else json.dumps(request)
    return {**spec, "annotations": {**spec["annotations"], "contd.request": raw}}


def test_read_container_tolerates_a_broken_request() -> None:
    container = make(
        working_dir="/srv", mounts=[MountInfo("/d", "/d", "bind", ["rbind"])], logs=[Logs("redis")]
    )
    spec = build(container, cwd="/srv")
    spec["annotations"]["shutdown_timeout"] = "soon"
    fallback = dataclasses.replace(
        container, name="", shutdown_timeout_ns=0, logs=None, stats=None, interactive=False
    )
    for broken in ("{not json", "[1]", "null", "[" * 100_000, {"version": 2, "entrypoint": "x"}):
        assert read_container(with_request(spec, broken)) == fallback, broken
    # Field by field: what cannot be read falls back to what the spec says.
    got = read_container(
        with_request(
            spec,
            {
                "version": 1,
                "entrypoint": 5,
                "interactive": "true",
                "working_dir": None,
                "mounts": [{"source": "/x", "target": 1}],
                "logs": [{"type": "redis"}, "redis"],
                "stats": {"type": "redis"},
            },
        )
    )
    assert got == fallback


def test_read_container_version_is_an_integer_one() -> None:
    spec = build(make(entrypoint="/x"))
    for version in (True, 1.0, "1", None):
        got = read_container(with_request(spec, {**recorded(spec), "version": version, "entrypoint": "/y"}))
        assert got.entrypoint == "/x" and got.logs is None, version
    assert read_container(with_request(spec, {**recorded(spec), "entrypoint": "/y"})).entrypoint == "/y"


def test_read_container_ignores_keys_it_does_not_know_and_fills_missing_fields() -> None:
    spec = build(make(entrypoint="/x"))
    extended = {
        "version": 1,
        "entrypoint": "/x",
        "future": {"a": 1},
        "mounts": [{"source": "/d", "target": "/d", "later": True}],
        "logs": [{"type": "redis", "stdout": "redis://h/o", "colour": "red"}],
        "stats": [{"type": "redis"}],
    }
    got = read_container(with_request(spec, extended))
    assert got.entrypoint == "/x" and got.interactive is False and got.working_dir == "/"
    assert got.mounts == [MountInfo("/d", "/d", "", [])]
    assert got.logs == [Logs("redis", LogsRedis("redis://h/o", ""))]
    assert got.stats == [Stats("redis", "")]


def test_the_request_wins_over_legacy_annotations() -> None:
    spec = build(make(entrypoint="/new", logs=[Logs("redis", LogsRedis("a", "b"))]))
    spec["annotations"].update(
        {
            "contd.entrypoint": "/old",
            "contd.interactive": "true",
            "contd.logs": '[{"Type": "redis", "Data": {"Stdout": "x", "Stderr": "y"}}]',
        }
    )
    got = read_container(spec)
    assert got.entrypoint == "/new" and got.interactive is False
    assert got.logs == [Logs("redis", LogsRedis("a", "b"))]
    # An unreadable request leaves the legacy annotations to say it.
    spec["annotations"]["contd.request"] = "{"
    got = read_container(spec)
    assert got.entrypoint == "/old" and got.interactive is True
    assert got.logs == [Logs("redis", LogsRedis("x", "y"))]


# ------------------------------------------------------------ the earlier daemon's annotations


def legacy_annotated(container: Container, **annotations: str) -> dict[str, Any]:
    """The spec of ``container`` with the earlier daemon's annotations instead of ours."""
    spec = build(container)
    spec["annotations"] = {"shutdown_timeout": str(container.shutdown_timeout_ns), **annotations}
    return spec


def test_read_container_tolerates_broken_legacy_annotations() -> None:
    spec = legacy_annotated(
        make(),
        **{
            "shutdown_timeout": "soon",
            "contd.mounts": "{not json",
            "contd.logs": '[{"Type": 5}]',
            "contd.stats": '{"a": 1}',
            "contd.interactive": "maybe",
        },
    )
    got = read_container(spec)
    assert got.shutdown_timeout_ns == 0
    assert got.logs is None and got.stats is None
    assert got.interactive is False
    assert got.mounts == []
    assert got.entrypoint == "/bin/sleep 100"


def test_legacy_annotations_read_leniently_where_they_were() -> None:
    spec = legacy_annotated(
        make(),
        **{
            "contd.mounts": '[{"source": "/a", "target": 7, "options": ["ro", 1]}, "junk"]',
            "contd.logs": '[{"Type": "redis"}]',
            "contd.stats": "[]",
            "contd.workdir": "",
            "contd.entrypoint": "",
        },
    )
    got = read_container(spec)
    assert got.mounts == [MountInfo("/a", "", "", ["ro"]), MountInfo("", "", "", [])]
    assert got.logs == [Logs("redis", LogsRedis("", ""))]
    assert got.stats == []
    assert got.working_dir == "" and got.entrypoint == ""


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(text, children, max_size=3),
    max_leaves=10,
)


def _maybe(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return json_values | st.fixed_dictionaries({}, optional=fields)


def _json_text(value: st.SearchStrategy[Any]) -> st.SearchStrategy[str]:
    return value.map(json.dumps)


#: A ``contd.request`` of any shape, as JSON text.
request_records = _json_text(
    _maybe(
        version=st.just(1) | json_values,
        entrypoint=json_values,
        interactive=json_values,
        working_dir=json_values,
        mounts=json_values
        | st.lists(_maybe(source=json_values, target=json_values, type=json_values, options=json_values)),
        logs=json_values | st.lists(_maybe(type=json_values, stdout=json_values, stderr=json_values)),
        stats=json_values | st.lists(_maybe(type=json_values, endpoint=json_values)),
    )
)

#: Annotations of any shape, ours, the earlier daemon's or neither.
foreign_annotations = _maybe(
    **{
        key: json_values
        | text
        | st.just("[]")
        | st.just('[{"Type": "redis"}]')
        | st.just('[{"source": 1}]')
        | request_records
        for key in (
            "shutdown_timeout",
            "contd.request",
            "contd.entrypoint",
            "contd.interactive",
            "contd.mounts",
            "contd.logs",
            "contd.stats",
            "contd.workdir",
        )
    }
)


@settings(max_examples=500)
@given(foreign_annotations, st.sampled_from([{}, {"process": {"args": ["/corex"]}}]))
def test_read_container_never_raises(annotations: Any, spec: dict[str, Any]) -> None:
    got = read_container({**spec, "annotations": annotations})
    assert isinstance(got, Container)
    assert got.shutdown_timeout_ns >= 0


#: What that daemon's Inspect reported for each (name and creation time come
#: from containerd's record, not the spec).
LEGACY_CONTAINERS = {
    "web": Container(
        rootfs="/var/cache/modules/flistd/mountpoint/web",
        env=[PATH, "PORT=8080", "GREETING=héllo wörld"],
        working_dir="/srv",
        network=NetworkInfo("ndmz-web"),
        mounts=[
            MountInfo("/var/cache/modules/storaged/volumes/web-data", "/data", "bind", ["rbind"]),
            MountInfo("/var/cache/modules/storaged/volumes/web-conf", "/etc/web", "bind", ["rbind", "ro"]),
            MountInfo("tmpfs", "/scratch", "tmpfs", ["size=64m", "mode=1777"]),
        ],
        entrypoint="/bin/server --port 8080 --motd 'hello there'",
        interactive=False,
        cpu=2,
        memory=512 << 20,
        logs=[
            Logs("redis", LogsRedis("redis://10.0.0.5:6379/web-stdout", "redis://10.0.0.5:6379/web-stderr"))
        ],
        stats=[Stats("redis", "redis://10.0.0.5:6379/web-stats")],
        elevated=False,
        rootfs_propagation="rslave",
        shutdown_timeout_ns=10_000_000_000,
    ),
    "shell": Container(
        rootfs="/var/cache/modules/flistd/mountpoint/shell",
        env=[PATH],
        working_dir="",
        network=NetworkInfo("ndmz-shell"),
        mounts=[],
        entrypoint="/bin/sh",
        interactive=True,
        cpu=1,
        memory=256 << 20,
        logs=[],
        stats=[],
        elevated=True,
        rootfs_propagation="",
        shutdown_timeout_ns=3_000_000_000,
    ),
}


def legacy_spec(name: str) -> dict[str, Any]:
    """The spec as that daemon sent it to containerd (and containerd gives it back)."""
    spec: dict[str, Any] = json.loads((LEGACY_SPECS / f"{name}.json").read_bytes())
    return spec


def test_the_legacy_specs_hold_the_legacy_annotations() -> None:
    for name in LEGACY_CONTAINERS:
        assert set(legacy_spec(name)["annotations"]) == {
            "shutdown_timeout",
            "contd.entrypoint",
            "contd.interactive",
            "contd.workdir",
            "contd.mounts",
            "contd.logs",
            "contd.stats",
        }


def test_a_legacy_spec_reads_as_it_did() -> None:
    for name, expected in LEGACY_CONTAINERS.items():
        assert read_container(legacy_spec(name)) == expected, name


def test_a_legacy_container_restarts_as_it_was() -> None:
    """A restart (or a Run of what Inspect gave back) writes the new
    annotations, which read back as the same Container."""
    for name, expected in LEGACY_CONTAINERS.items():
        old = legacy_spec(name)
        container = dataclasses.replace(read_container(old), name=name)
        args = COREX if container.interactive else shlex.split(container.entrypoint)
        plan = RunPlan("tenant-1", container, args, list(container.env or ()), container.working_dir or "/")
        new = build_spec(spec_request(plan), HostFacts(cpu_count=4))
        assert read_container(new) == expected, name
        assert set(new["annotations"]) == {"shutdown_timeout", "contd.request"}
        # The spec itself is the one the earlier daemon wrote.
        assert {**new, "annotations": None} == {**old, "annotations": None}, name
