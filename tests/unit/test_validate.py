"""Run requests: every rejection names the field and value; defaults are filled.

The host is a temporary directory tree: a rootfs, a netns directory holding
one namespace file, and a mount source.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contd_trio.containerd.spec import HostFacts, build_spec
from contd_trio.errors import InvalidArgument
from contd_trio.module.mount_policy import MountEntry
from contd_trio.module.spec_mapping import read_container, spec_request
from contd_trio.module.types import Container, Logs, LogsRedis, MountInfo, NetworkInfo, Stats
from contd_trio.module.validate import LocalHost, RunPlan, log_path, prepare_run, validate_identifier

PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
COREX = ["/corex", "--ipv6", "-d", "7", "--interface", "eth0"]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "netns").mkdir()
    (tmp_path / "netns" / "n1").touch()
    (tmp_path / "data").mkdir()
    (tmp_path / "corex").write_text("#!/bin/sh\n")
    (tmp_path / "corex").chmod(0o755)
    return tmp_path


@pytest.fixture
def host(tree: Path) -> LocalHost:
    return LocalHost(HostFacts(cpu_count=4, netns_dir=str(tree / "netns"), corex_path=str(tree / "corex")))


@pytest.fixture
def request_(tree: Path) -> Container:
    return Container(
        name="web",
        rootfs=str(tree / "rootfs"),
        network=NetworkInfo("n1"),
        entrypoint="/bin/sleep 100",
    )


def rejected(host: LocalHost, container: Container, namespace: str = "tenant") -> str:
    with pytest.raises(InvalidArgument) as info:
        prepare_run(namespace, container, host)
    return str(info.value)


def change(container: Container, **fields: Any) -> Container:
    return dataclasses.replace(container, **fields)


# ------------------------------------------------------------ identifiers


@pytest.mark.parametrize("value", ["a", "A1", "a.b", "a_b-c.d", "0", "x" * 76, "deployment-12.web_1"])
def test_valid_identifiers(value: str) -> None:
    assert validate_identifier("namespace", value) == value


@pytest.mark.parametrize(
    "value",
    ["", "a b", "-a", "a-", ".a", "a..b", "a-.b", "x" * 77, "a\n", "a/b", "..", "é", "a\0b", "a:b"],
)
def test_invalid_identifiers(value: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_identifier("container name", value)
    assert str(info.value) == (
        f"container name {value!r} is not a valid identifier "
        "(letters, digits, and . _ - between them, at most 76 characters)"
    )


ALNUM = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
SEPARATORS = set("._-")


def is_containerd_identifier(value: str) -> bool:
    """containerd's rule, restated without a regular expression."""
    if not 1 <= len(value) <= 76 or not set(value) <= ALNUM | SEPARATORS:
        return False
    if value[0] in SEPARATORS or value[-1] in SEPARATORS:
        return False
    return not any(a in SEPARATORS and b in SEPARATORS for a, b in itertools.pairwise(value))


IDENTIFIER_LIKE = (
    st.text(st.sampled_from("aZ09._-"), max_size=12)  # mostly the right characters
    | st.text(st.sampled_from("aZ09._-"), min_size=70, max_size=80)  # around the length limit
    | st.text(st.sampled_from("aZ09._-/ \n\0:é"), max_size=80)
    | st.text(max_size=80)
)
WELL_FORMED = st.lists(
    st.text(st.sampled_from(sorted(ALNUM)), min_size=1, max_size=12), min_size=1, max_size=8
).flatmap(
    lambda runs: st.lists(
        st.sampled_from(sorted(SEPARATORS)), min_size=len(runs) - 1, max_size=len(runs) - 1
    ).map(lambda seps: "".join(r + s for r, s in zip(runs, [*seps, ""], strict=True)))
)


@settings(max_examples=500)
@given(IDENTIFIER_LIKE | WELL_FORMED)
def test_identifiers_are_exactly_containerds(value: str) -> None:
    if is_containerd_identifier(value):
        assert validate_identifier("namespace", value) == value
        # Accepted ones name one path level: nothing to climb out with.
        assert "/" not in value and value not in (".", "..")
    else:
        with pytest.raises(InvalidArgument, match="is not a valid identifier"):
            validate_identifier("namespace", value)


def test_example_message() -> None:
    with pytest.raises(InvalidArgument, match=r"^container name 'a b' is not a valid identifier \(letters"):
        validate_identifier("container name", "a b")


def test_namespace_and_name_checked(host: LocalHost, request_: Container) -> None:
    assert rejected(host, request_, namespace="../etc").startswith("namespace '../etc' is not a valid")
    assert rejected(host, change(request_, name="../../x")).startswith("container name '../../x' is not")
    assert rejected(host, change(request_, name="")).startswith("container name '' is not")


def test_log_path(tmp_path: Path) -> None:
    assert log_path(tmp_path, "ns1", "web") == tmp_path / "logs" / "ns1" / "web.log"
    with pytest.raises(InvalidArgument, match=r"^namespace '\.\.' "):
        log_path(tmp_path, "..", "web")
    with pytest.raises(InvalidArgument, match=r"^container name '\.\./x' "):
        log_path(tmp_path, "ns1", "../x")


# ------------------------------------------------------------ rootfs, netns


def test_rootfs(host: LocalHost, request_: Container, tree: Path) -> None:
    assert rejected(host, change(request_, rootfs="")) == "rootfs is required"
    assert rejected(host, change(request_, rootfs="rootfs")) == "rootfs 'rootfs' is not an absolute path"
    missing = str(tree / "nope")
    assert (
        rejected(host, change(request_, rootfs=missing)) == f"rootfs {missing!r} is not an existing directory"
    )
    (tree / "file").touch()
    file = str(tree / "file")
    assert rejected(host, change(request_, rootfs=file)) == f"rootfs {file!r} is not an existing directory"


def test_netns(host: LocalHost, request_: Container, tree: Path) -> None:
    def net(name: str) -> str:
        return rejected(host, change(request_, network=NetworkInfo(name)))

    assert net("") == "network namespace is required"
    for bad in ("a/b", "..", ".", "/n1", "n\0"):
        assert net(bad) == f"network namespace {bad!r} is not a plain name"
    assert net("n2") == f"network namespace 'n2' does not exist (no {str(tree / 'netns' / 'n2')!r})"


# ------------------------------------------------------------ mounts


def test_mounts(host: LocalHost, request_: Container, tree: Path) -> None:
    data = str(tree / "data")

    def mount(*mounts: MountInfo) -> str:
        return rejected(host, change(request_, mounts=list(mounts)))

    missing = str(tree / "missing")
    assert mount(MountInfo(missing, "/data")) == f"mounts[0] source {missing!r} does not exist"
    assert (
        mount(MountInfo(data, "/a"), MountInfo("data", "/b"))
        == "mounts[1] source 'data' is not an absolute path"
    )
    assert mount(MountInfo("", "/b")) == "mounts[0] source '' is not an absolute path"
    assert mount(MountInfo(data, "data")) == "mounts[0] target 'data' is not an absolute path"
    assert mount(MountInfo(data, "")) == "mounts[0] target '' is not an absolute path"
    assert mount(MountInfo(data, "/a/../../etc")) == "mounts[0] target '/a/../../etc' must not contain '..'"
    assert mount(MountInfo(missing, "/d", "bind", ["rbind", "ro"])).endswith("does not exist")


def test_non_bind_mounts_take_any_source(host: LocalHost, request_: Container) -> None:
    plan = prepare_run("tenant", change(request_, mounts=[MountInfo("whatever", "/scratch", "tmpfs")]), host)
    assert plan.container.mounts == [MountInfo("whatever", "/scratch", "tmpfs", [])]


def test_mounts_normalised(host: LocalHost, request_: Container, tree: Path) -> None:
    data = str(tree / "data")
    plan = prepare_run(
        "tenant",
        change(request_, mounts=[MountInfo(data, "/data"), MountInfo(data, "/ro", "", ["rbind", "ro"])]),
        host,
    )
    assert plan.container.mounts == [
        MountInfo(data, "/data", "bind", ["rbind"]),
        MountInfo(data, "/ro", "bind", ["rbind", "ro"]),
    ]


# ------------------------------------------------------------ entrypoint, env


def test_entrypoint(host: LocalHost, request_: Container) -> None:
    expected = "entrypoint is required (none given, and the rootfs has no .startup.toml entry naming one)"
    assert rejected(host, change(request_, entrypoint="")) == expected
    assert rejected(host, change(request_, entrypoint="   ")) == expected
    assert rejected(host, change(request_, entrypoint="/bin/sh -c 'oops")) == (
        'entrypoint "/bin/sh -c \'oops": No closing quotation'
    )
    assert (
        rejected(host, change(request_, entrypoint="/bin/x \\"))
        == "entrypoint '/bin/x \\\\': No escaped character"
    )


def test_entrypoint_split(host: LocalHost, request_: Container) -> None:
    plan = prepare_run("tenant", change(request_, entrypoint="/bin/sh -c 'echo \"a b\"'"), host)
    assert plan.args == ["/bin/sh", "-c", 'echo "a b"']


def test_interactive_runs_corex_whatever_the_entrypoint(host: LocalHost, request_: Container) -> None:
    for entrypoint in ("", "/bin/sh -c 'unclosed"):
        plan = prepare_run("tenant", change(request_, interactive=True, entrypoint=entrypoint), host)
        assert plan.args == COREX
        assert plan.container.entrypoint == entrypoint


def test_env(host: LocalHost, request_: Container) -> None:
    assert rejected(host, change(request_, env=["A=1", "FOO"])) == "env entry 'FOO' is not KEY=VALUE"
    assert rejected(host, change(request_, env=["=x"])) == "env entry '=x' is not KEY=VALUE"
    assert rejected(host, change(request_, env=["A=\0"])) == "env entry 'A=\\x00' contains a NUL character"
    plan = prepare_run("tenant", change(request_, env=["A=1", "B="]), host)
    assert plan.env == [PATH, "A=1", "B="]
    plan = prepare_run("tenant", change(request_, env=["PATH=/bin", "A=1"]), host)
    assert plan.env == ["PATH=/bin", "A=1"]


def test_working_dir(host: LocalHost, request_: Container) -> None:
    assert rejected(host, change(request_, working_dir="srv")) == "working dir 'srv' is not an absolute path"
    assert prepare_run("tenant", change(request_, working_dir="/srv"), host).cwd == "/srv"


# ------------------------------------------------------------ limits


def test_cpu(host: LocalHost, request_: Container) -> None:
    assert rejected(host, change(request_, cpu=5)) == "cpu 5 is more than the 4 CPUs of this node"
    assert rejected(host, change(request_, cpu=-1)) == "cpu -1 is negative"
    assert prepare_run("tenant", change(request_, cpu=4), host).container.cpu == 4


def test_memory_and_shutdown(host: LocalHost, request_: Container) -> None:
    assert rejected(host, change(request_, memory=-1)) == "memory -1 is negative"
    assert rejected(host, change(request_, shutdown_timeout_ns=-5)) == "shutdown timeout -5ns is negative"


@pytest.mark.parametrize("memory", [1, 4096, 1 << 20, 2 << 20, (6 << 20) - 1])
def test_memory_below_what_runc_can_set_is_refused(host: LocalHost, request_: Container, memory: int) -> None:
    assert rejected(host, change(request_, memory=memory)) == (
        f"memory {memory} is below the minimum of 6291456 bytes (6 MiB)"
    )


@pytest.mark.parametrize("memory", [1 << 63, (1 << 64) - 1, 1 << 100])
def test_memory_past_int64_is_refused(host: LocalHost, request_: Container, memory: int) -> None:
    assert rejected(host, change(request_, memory=memory)) == (
        f"memory {memory} is more than the largest limit, 2^63-1 bytes"
    )


@pytest.mark.parametrize("memory", [6 << 20, (1 << 63) - 1])
def test_memory_limits_inclusive(host: LocalHost, request_: Container, memory: int) -> None:
    assert prepare_run("tenant", change(request_, memory=memory), host).container.memory == memory


def test_interactive_needs_an_executable_corex(host: LocalHost, request_: Container, tree: Path) -> None:
    corex = tree / "corex"
    expected = f"interactive: the corex binary {corex} is not an executable file on this node"
    corex.chmod(0o644)
    assert rejected(host, change(request_, interactive=True)) == expected
    corex.unlink()
    assert rejected(host, change(request_, interactive=True)) == expected
    corex.mkdir()
    assert rejected(host, change(request_, interactive=True)) == expected
    assert prepare_run("tenant", request_, host).args == ["/bin/sleep", "100"]  # only interactive needs it


def test_what_execve_would_refuse_is_refused_early(host: LocalHost, request_: Container) -> None:
    assert rejected(host, change(request_, entrypoint="/bin/echo 'a\0b'")) == (
        "entrypoint argument 'a\\x00b' contains a NUL character"
    )
    long_arg = "é" * 70_000  # fewer characters than any string may have, but 140,000 bytes
    assert rejected(host, change(request_, entrypoint=f"/bin/echo {long_arg}")).endswith(
        "is longer than 131071 bytes"
    )
    assert rejected(host, change(request_, env=["A=" + long_arg])).endswith("is longer than 131071 bytes")
    many = [f"K{i}=" + "v" * 100_000 for i in range(11)]
    assert rejected(host, change(request_, env=many)).startswith("entrypoint and env are ")
    assert prepare_run("tenant", change(request_, env=many[:10]), host).env[-1] == many[9]
    assert rejected(host, change(request_, working_dir="/" + "d" * 5000)).endswith("longer than 4096 bytes")


def test_long_values_are_quoted_short(host: LocalHost, request_: Container) -> None:
    huge = "x" * 100_000  # within what a string may be, too long to quote whole
    for container in (
        change(request_, name=huge),
        change(request_, rootfs="/" + huge),
        change(request_, network=NetworkInfo(huge)),
        change(request_, env=[huge]),
        change(request_, entrypoint="'" + huge),
        change(request_, working_dir=huge),
        change(request_, rootfs_propagation=huge),
        change(request_, logs=[Logs(huge, LogsRedis())]),
    ):
        message = rejected(host, container)
        assert len(message) < 300 and "…" in message, message[:300]


@pytest.mark.parametrize("mode", ["", "private", "rprivate", "shared", "rshared", "slave", "rslave"])
def test_rootfs_propagation_known(host: LocalHost, request_: Container, mode: str) -> None:
    assert (
        prepare_run("tenant", change(request_, rootfs_propagation=mode), host).container.rootfs_propagation
        == mode
    )


def test_rootfs_propagation_unknown(host: LocalHost, request_: Container) -> None:
    assert rejected(host, change(request_, rootfs_propagation="unbindable")) == (
        "rootfs propagation 'unbindable' is not one of private, rprivate, rshared, rslave, shared, slave"
    )


# ------------------------------------------------------------ logs, stats


def test_logs(host: LocalHost, request_: Container) -> None:
    def logs(*entries: Logs) -> str:
        return rejected(host, change(request_, logs=list(entries)))

    url = "redis://10.0.0.1:6379/out"
    assert logs(Logs("file", LogsRedis(url, url))) == "logs[0] type 'file' is not known (known: redis)"
    assert logs(Logs("redis", LogsRedis("", ""))) == "logs[0] has neither a stdout nor a stderr URL"
    assert logs(Logs("redis", LogsRedis(url, "http://h/err"))) == (
        "logs[0] stderr 'http://h/err' is not a redis://host[:port]/channel URL: the scheme must be redis://"
    )
    assert logs(Logs("redis", LogsRedis("redis://h:6379", ""))).startswith(
        "logs[0] stdout 'redis://h:6379' is not"
    )
    assert logs(Logs("redis", LogsRedis("redis://:6379/x", ""))).startswith("logs[0] stdout")
    assert logs(Logs("redis", LogsRedis("redis://h:99999/x", ""))).endswith(
        "the port must be from 1 to 65535"
    )
    assert logs(Logs("redis", LogsRedis("redis://h:port/x", ""))).endswith("the port must be a number")
    # What the stats monitors and the log shim once choked on is refused up front.
    assert logs(Logs("redis", LogsRedis("redis://h:/x", ""))).endswith("the port must be a number")
    assert "IPv6" in logs(Logs("redis", LogsRedis("redis://[nothost]/x", "")))


def test_stats(host: LocalHost, request_: Container) -> None:
    def stats(*entries: Stats) -> str:
        return rejected(host, change(request_, stats=list(entries)))

    assert stats(Stats("influx", "redis://h:1/s")) == "stats[0] type 'influx' is not known (known: redis)"
    assert stats(Stats("redis", "")) == (
        "stats[0] endpoint '' is not a redis://host[:port]/channel URL: the scheme must be redis://"
    )
    assert stats(Stats("redis", "redis://h/")) == (
        "stats[0] endpoint 'redis://h/' is not a redis://host[:port]/channel URL: "
        "the channel (the path after the host) is missing"
    )


def test_good_backends_kept(host: LocalHost, request_: Container) -> None:
    logs = [Logs("redis", LogsRedis("redis://h:1/o", "")), Logs("redis", LogsRedis("", "redis://[::1]/e"))]
    stats = [Stats("redis", "redis://stats.local/key")]
    plan = prepare_run("tenant", change(request_, logs=logs, stats=stats), host)
    assert plan.container.logs == logs and plan.container.stats == stats


# ------------------------------------------------------------ defaults


def test_defaults(host: LocalHost, request_: Container) -> None:
    plan = prepare_run("tenant", request_, host)
    assert plan == RunPlan(
        namespace="tenant",
        container=change(
            request_,
            env=[PATH],
            mounts=[],
            cpu=1,
            memory=268435456,
            shutdown_timeout_ns=3_000_000_000,
            logs=[],
            stats=[],
        ),
        args=["/bin/sleep", "100"],
        env=[PATH],
        cwd="/",
    )


def test_given_values_kept(host: LocalHost, request_: Container) -> None:
    container = change(request_, cpu=2, memory=1 << 30, shutdown_timeout_ns=10**10, elevated=True)
    plan = prepare_run("tenant", container, host)
    assert (plan.container.cpu, plan.container.memory, plan.container.shutdown_timeout_ns) == (
        2,
        1 << 30,
        10**10,
    )
    assert plan.container.elevated is True


def test_request_not_modified(host: LocalHost, request_: Container) -> None:
    container = change(request_, env=["A=1"], mounts=[MountInfo("x", "/x", "tmpfs")])
    before = change(container, env=["A=1"], mounts=[MountInfo("x", "/x", "tmpfs")])
    prepare_run("tenant", container, host)
    assert container == before


def test_plan_round_trips_through_the_spec(host: LocalHost, request_: Container, tree: Path) -> None:
    """What Inspect reads back from the spec is the plan's container."""
    container = change(
        request_,
        env=["A=1"],
        mounts=[MountInfo(str(tree / "data"), "/data")],
        working_dir="/srv",
        interactive=True,
        logs=[Logs("redis", LogsRedis("redis://h:1/o", "redis://h:1/e"))],
    )
    plan = prepare_run("tenant", container, host)
    spec = build_spec(spec_request(plan), host.facts)
    assert read_container(spec) == change(plan.container, name="")


# ------------------------------------------------------------ .startup.toml

STARTUP = """
[startup.entry]
name = "core.system"

[startup.entry.args]
name = "/start"
dir = "/data"
args = ["--port", "25565"]

[startup.entry.args.env]
LEVEL = "world"
DIFFICULTY = "easy"
"""


def test_startup_supplies_entrypoint_dir_env(host: LocalHost, request_: Container, tree: Path) -> None:
    (tree / "rootfs" / ".startup.toml").write_text(STARTUP)
    plan = prepare_run("tenant", change(request_, entrypoint="", env=["DIFFICULTY=hard", "EXTRA=1"]), host)
    assert plan.args == ["/start", "--port", "25565"]
    assert plan.cwd == "/data"
    assert plan.container.entrypoint == '/start "--port" "25565"'
    assert plan.container.working_dir == "/data"
    assert plan.env == [PATH, "LEVEL=world", "DIFFICULTY=hard", "EXTRA=1"]
    assert plan.container.env == plan.env


def test_request_wins_over_startup(host: LocalHost, request_: Container, tree: Path) -> None:
    (tree / "rootfs" / ".startup.toml").write_text(STARTUP)
    plan = prepare_run("tenant", change(request_, entrypoint="/bin/run", working_dir="/srv"), host)
    assert plan.args == ["/bin/run"]
    assert plan.cwd == "/srv"
    assert plan.env == [PATH, "LEVEL=world", "DIFFICULTY=easy"]


def test_startup_env_applies_to_interactive(host: LocalHost, request_: Container, tree: Path) -> None:
    (tree / "rootfs" / ".startup.toml").write_text(STARTUP)
    plan = prepare_run("tenant", change(request_, entrypoint="", interactive=True), host)
    assert plan.args == COREX
    assert plan.container.entrypoint == '/start "--port" "25565"'
    assert "LEVEL=world" in plan.env


def test_startup_without_program_still_needs_entrypoint(
    host: LocalHost, request_: Container, tree: Path
) -> None:
    (tree / "rootfs" / ".startup.toml").write_text('[startup.entry]\nname = "core.base"\n')
    assert rejected(host, change(request_, entrypoint="")).startswith("entrypoint is required")


def test_malformed_startup(host: LocalHost, request_: Container, tree: Path) -> None:
    (tree / "rootfs" / ".startup.toml").write_text("[startup.entry\n")
    assert rejected(host, request_).startswith("rootfs .startup.toml: ")


def test_startup_dir_must_be_absolute(host: LocalHost, request_: Container, tree: Path) -> None:
    (tree / "rootfs" / ".startup.toml").write_text('[startup.entry.args]\ndir = "data"\n')
    assert rejected(host, request_) == "working dir 'data' is not an absolute path"


def test_startup_symlink_inside_rootfs_is_followed(host: LocalHost, request_: Container, tree: Path) -> None:
    (tree / "rootfs" / "etc").mkdir()
    (tree / "rootfs" / "etc" / "startup.toml").write_text(STARTUP)
    (tree / "rootfs" / ".startup.toml").symlink_to("etc/startup.toml")
    assert prepare_run("tenant", change(request_, entrypoint=""), host).cwd == "/data"


def test_startup_symlink_out_of_rootfs_is_refused(host: LocalHost, request_: Container, tree: Path) -> None:
    (tree / "secret.toml").write_text(STARTUP)
    (tree / "rootfs" / ".startup.toml").symlink_to(tree / "secret.toml")
    assert rejected(host, request_).endswith(".startup.toml': points outside its directory")


def test_startup_dangling_symlink_is_no_file(host: LocalHost, request_: Container, tree: Path) -> None:
    (tree / "rootfs" / ".startup.toml").symlink_to("nowhere.toml")
    assert prepare_run("tenant", request_, host).args == ["/bin/sleep", "100"]


def test_startup_fifo_is_refused(host: LocalHost, request_: Container, tree: Path) -> None:
    os.mkfifo(tree / "rootfs" / ".startup.toml")
    assert rejected(host, request_).endswith(".startup.toml': not a regular file")


def test_startup_directory_is_refused(host: LocalHost, request_: Container, tree: Path) -> None:
    (tree / "rootfs" / ".startup.toml").mkdir()
    assert rejected(host, request_).endswith(".startup.toml': not a regular file")


def test_startup_too_large_or_binary(host: LocalHost, request_: Container, tree: Path) -> None:
    path = tree / "rootfs" / ".startup.toml"
    path.write_bytes(b"#" * (2 << 20))
    assert "larger than" in rejected(host, request_)
    path.write_bytes(b"\xff\xfe")
    assert "not UTF-8 text" in rejected(host, request_)


class _FakeHost:
    """A HostView without a filesystem: everything exists, the file fails."""

    facts = HostFacts(cpu_count=1)

    def is_dir(self, path: str) -> bool:
        return True

    def exists(self, path: str) -> bool:
        return True

    def realpath(self, path: str) -> str:
        return path

    def stat_mode(self, path: str, *, follow_symlinks: bool = True) -> int | None:
        return stat.S_IFDIR | 0o755

    def mount_table(self) -> list[MountEntry]:
        return [MountEntry("/", "/", "8:1", "ext4")]

    def read_text(self, path: str) -> str | None:
        raise PermissionError(13, "Permission denied", path)


def test_unreadable_startup_is_an_invalid_argument() -> None:
    container = Container(name="c", rootfs="/r", network=NetworkInfo("n"), entrypoint="/x")
    with pytest.raises(InvalidArgument, match=r"^rootfs \.startup\.toml: Permission denied$"):
        prepare_run("ns", container, _FakeHost())


def test_local_host_counts_cpus() -> None:
    assert LocalHost().facts.cpu_count == (os.cpu_count() or 1)
