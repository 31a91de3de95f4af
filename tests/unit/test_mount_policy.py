"""The mount policy, through ``prepare_run``: every refusal names the mount
and says why; whatever passes is safe to hand to runc.

The host is a temporary tree standing in for this node's control paths
(containerd's socket, root and state, the daemon's root, the netns
directory, the broker's socket), plus the machine's real ``/proc``,
``/sys``, ``/dev`` and ``/etc``, which exist everywhere.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contd_trio.containerd.spec import HostFacts, build_spec
from contd_trio.errors import InvalidArgument
from contd_trio.module.mount_policy import MAX_MOUNTS, MAX_OPTIONS, MAX_PATH, MountEntry, parse_mountinfo
from contd_trio.module.spec_mapping import spec_request
from contd_trio.module.types import Container, MountInfo, NetworkInfo
from contd_trio.module.validate import LocalHost, prepare_run


def build_tree(base: Path) -> Path:
    for sub in (
        "rootfs",
        "netns",
        "data/sub",
        "containerd/root",
        "containerd/state",
        "contd-root",
        "corex-dir",
    ):
        (base / sub).mkdir(parents=True, exist_ok=True)
    (base / "netns" / "n1").touch()
    (base / "data" / "file.txt").write_text("x")
    for name in ("containerd/containerd.sock", "redis.sock", "other.sock"):
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(base / name))
        listener.close()
    os.mknod(base / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    links = {
        "to-proc": "/proc",
        "to-root": "/",
        "to-data": str(base / "data"),
        "to-state": str(base / "containerd" / "state"),
        "to-netns": str(base / "netns"),
        "relative-up": "../../../../../../../../..",
        "loop-a": str(base / "loop-b"),
        "loop-b": str(base / "loop-a"),
    }
    for name, target in links.items():
        (base / name).symlink_to(target)
    return base


def facts_of(tree: Path) -> HostFacts:
    return HostFacts(
        cpu_count=2,
        netns_dir=str(tree / "netns"),
        corex_path=str(tree / "corex-dir" / "corex"),
        containerd_socket=str(tree / "containerd" / "containerd.sock"),
        containerd_root=str(tree / "containerd" / "root"),
        containerd_state=str(tree / "containerd" / "state"),
        daemon_root=str(tree / "contd-root"),
        broker_socket=str(tree / "redis.sock"),
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return build_tree(tmp_path)


@pytest.fixture
def host(tree: Path) -> LocalHost:
    return LocalHost(facts_of(tree))


def request(tree: Path, *mounts: MountInfo, **fields: object) -> Container:
    return Container(
        name="web",
        rootfs=str(tree / "rootfs"),
        network=NetworkInfo("n1"),
        entrypoint="/bin/sleep 100",
        mounts=list(mounts),
        **fields,  # type: ignore[arg-type]
    )


def refusal(host: LocalHost, container: Container) -> str:
    with pytest.raises(InvalidArgument) as info:
        prepare_run("tenant", container, host)
    return str(info.value)


def accepted(host: LocalHost, container: Container) -> list[MountInfo]:
    return list(prepare_run("tenant", container, host).container.mounts or ())


# ------------------------------------------------------------ types


@pytest.mark.parametrize(
    "type_",
    ["proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue", "debugfs", "securityfs", "overlay",
     "ext4", "/dev/sda", "BIND", "Bind", "TMPFS", " bind", "bind ", "tmpfs\0", "rbind", "none"],
)  # fmt: skip
def test_types_other_than_bind_and_tmpfs_are_refused(host: LocalHost, tree: Path, type_: str) -> None:
    message = refusal(host, request(tree, MountInfo("proc", "/hostproc", type_)))
    assert message == f"mounts[0] type {type_!r} is not allowed (allowed: bind, tmpfs)"


@pytest.mark.parametrize("elevated", [False, True])
def test_elevated_does_not_relax_the_policy(host: LocalHost, tree: Path, elevated: bool) -> None:
    container = request(tree, MountInfo("sysfs", "/hostsys", "sysfs", ["rw"]), elevated=elevated)
    assert refusal(host, container) == "mounts[0] type 'sysfs' is not allowed (allowed: bind, tmpfs)"
    container = request(tree, MountInfo("/", "/host"), elevated=elevated)
    assert refusal(host, container) == "mounts[0] source '/' is not allowed: it is the host's root directory"


def test_the_failing_mount_is_named(host: LocalHost, tree: Path) -> None:
    data = str(tree / "data")
    message = refusal(
        host,
        request(tree, MountInfo(data, "/a"), MountInfo("", "/t", "tmpfs"), MountInfo("proc", "/p", "proc")),
    )
    assert message.startswith("mounts[2] type 'proc'")


# ------------------------------------------------------------ options

BIND_ALLOWED = "ro, rw, nosuid, nodev, noexec, private, rprivate, shared, rshared, slave, rslave, bind, rbind"
TMPFS_ALLOWED = (
    "ro, rw, nosuid, nodev, noexec, private, rprivate, shared, rshared, slave, rslave, "
    "size=, mode=, nr_inodes=, uid=, gid="
)


@pytest.mark.parametrize(
    ("type_", "option", "why"),
    [
        ("bind", "rbind,ro", "it is not an allowed option"),
        ("bind", "RO", "it is not an allowed option"),
        ("bind", "ro ", "it is not an allowed option"),
        ("bind", "", "it is not an allowed option"),
        ("bind", "suid", "it is not an allowed option"),
        ("bind", "dev", "it is not an allowed option"),
        ("bind", "exec", "it is not an allowed option"),
        ("bind", "remount", "it is not an allowed option"),
        ("bind", "rro", "it is not an allowed option"),
        ("bind", "idmap", "it is not an allowed option"),
        ("bind", "unbindable", "it is not an allowed option"),
        ("bind", "x-anything", "it is not an allowed option"),
        ("bind", "ro\0", "it is not an allowed option"),
        ("bind", "size=1m", "size= is for tmpfs mounts only"),
        ("bind", "mode=755", "mode= is for tmpfs mounts only"),
        ("tmpfs", "bind", "'bind' is for bind mounts only"),
        ("tmpfs", "rbind", "'rbind' is for bind mounts only"),
        ("tmpfs", "size=-1", "size= takes a number with k, m, g or %"),
        ("tmpfs", "size=1t", "size= takes a number with k, m, g or %"),
        ("tmpfs", "size=", "size= takes a number with k, m, g or %"),
        ("tmpfs", "mode=abc", "mode= takes a number"),
        ("tmpfs", "mode=8", "mode= takes a number"),
        ("tmpfs", "mode=17777", "mode= takes a number"),
        ("tmpfs", "uid=root", "uid= takes a number"),
        ("tmpfs", "gid=-1", "gid= takes a number"),
        ("tmpfs", "nr_inodes=10%", "nr_inodes= takes a number"),
        ("tmpfs", "size=1m,exec", "size= takes a number with k, m, g or %"),
        ("tmpfs", "huge=always", "it is not an allowed option"),
        ("tmpfs", "context=system_u", "it is not an allowed option"),
    ],
)
def test_options_outside_the_allow_list_are_refused(
    host: LocalHost, tree: Path, type_: str, option: str, why: str
) -> None:
    source = str(tree / "data") if type_ == "bind" else "tmpfs"
    message = refusal(host, request(tree, MountInfo(source, "/m", type_, ["nosuid", option])))
    allowed = BIND_ALLOWED if type_ == "bind" else TMPFS_ALLOWED
    assert message == f"mounts[0] option {option!r} is not allowed: {why} (allowed on {type_}: {allowed})"


def test_allowed_options_pass(host: LocalHost, tree: Path) -> None:
    data = str(tree / "data")
    bind_options = ["rbind", "ro", "nosuid", "nodev", "noexec", "rprivate"]
    tmpfs_options = ["size=64m", "mode=1777", "nr_inodes=1k", "uid=1000", "gid=1000", "nosuid", "rw"]
    assert accepted(
        host,
        request(
            tree,
            MountInfo(data, "/a", "", bind_options),
            MountInfo("scratch", "/b", "tmpfs", tmpfs_options),
            MountInfo("tmpfs", "/c", "tmpfs", ["size=50%"]),
            MountInfo(data, "/d", "bind", ["bind", "rslave"]),
        ),
    ) == [
        MountInfo(data, "/a", "bind", bind_options),
        MountInfo("scratch", "/b", "tmpfs", tmpfs_options),
        MountInfo("tmpfs", "/c", "tmpfs", ["size=50%"]),
        MountInfo(data, "/d", "bind", ["bind", "rslave"]),
    ]


def test_a_bind_without_bind_or_rbind_becomes_an_rbind(host: LocalHost, tree: Path) -> None:
    data = str(tree / "data")
    assert accepted(host, request(tree, MountInfo(data, "/a", "bind", ["ro"]))) == [
        MountInfo(data, "/a", "bind", ["rbind", "ro"])
    ]


def test_too_many_options(host: LocalHost, tree: Path) -> None:
    options = ["ro"] * (MAX_OPTIONS + 1)
    message = refusal(host, request(tree, MountInfo(str(tree / "data"), "/a", "", options)))
    assert message == f"mounts[0] has {MAX_OPTIONS + 1} options, more than {MAX_OPTIONS}"


def test_too_many_mounts(host: LocalHost, tree: Path) -> None:
    mounts = [MountInfo("t", f"/m{i}", "tmpfs") for i in range(MAX_MOUNTS + 1)]
    assert (
        refusal(host, request(tree, *mounts))
        == f"mounts: {MAX_MOUNTS + 1} given, at most {MAX_MOUNTS} allowed"
    )
    assert len(accepted(host, request(tree, *mounts[:MAX_MOUNTS]))) == MAX_MOUNTS


# ------------------------------------------------------------ bind sources


def source_refusal(host: LocalHost, tree: Path, source: str) -> str:
    return refusal(host, request(tree, MountInfo(source, "/mnt")))


@pytest.mark.parametrize(
    ("source", "why"),
    [
        ("/proc", "it is the host's processes and kernel settings (/proc)"),
        ("/proc/", "it is the host's processes and kernel settings (/proc)"),
        ("//proc", "it is the host's processes and kernel settings (/proc)"),
        ("/./proc/.", "it is the host's processes and kernel settings (/proc)"),
        ("/proc/sys/kernel", "it is inside the host's processes and kernel settings (/proc)"),
        ("/sys", "it is the host's kernel objects (/sys)"),
        ("/sys/fs/cgroup", "it is inside the host's kernel objects (/sys)"),
        ("/dev", "it is the host's devices (/dev)"),
        ("/dev/null", "it is inside the host's devices (/dev)"),
        ("/etc", "it is the host's configuration (/etc)"),
        ("/etc/hostname", "it is inside the host's configuration (/etc)"),
    ],
)
def test_kernel_and_system_paths_are_refused(host: LocalHost, tree: Path, source: str, why: str) -> None:
    assert source_refusal(host, tree, source) == f"mounts[0] source {source!r} is not allowed: {why}"


def test_paths_are_checked_as_written_before_they_are_resolved(host: LocalHost, tree: Path) -> None:
    """/proc/1/root is in /proc, though the link cannot be read (no
    CAP_SYS_PTRACE here) and would resolve to "/" where it can."""
    assert source_refusal(host, tree, "/proc/1/root") == (
        "mounts[0] source '/proc/1/root' is not allowed: "
        "it is inside the host's processes and kernel settings (/proc)"
    )


def test_the_host_root_in_any_spelling(host: LocalHost, tree: Path) -> None:
    for source in ("/", "//", "/.", "/..", str(tree / "to-root"), str(tree / "data") + "/.." * 30):
        message = source_refusal(host, tree, source)
        assert message.endswith("is not allowed: it is the host's root directory"), message


def test_control_paths_of_this_node_are_refused(host: LocalHost, tree: Path) -> None:
    expected = {
        "containerd/containerd.sock": "it is containerd's socket",
        "containerd/root": "it is containerd's root directory",
        "containerd/root/x": "it is inside containerd's root directory",
        "data/missing": None,
        "containerd/state": "it is containerd's state directory",
        "contd-root": "it is the daemon's root directory",
        "netns": "it is the network namespaces directory",
        "netns/n1": "it is inside the network namespaces directory",
        "redis.sock": "it is the zbus broker's socket",
        "containerd": "it contains containerd's socket",
        ".": "it contains the network namespaces directory",
    }
    for relative, why in expected.items():
        source = os.path.normpath(tree / relative)
        message = source_refusal(host, tree, source)
        if why is None:
            assert message == f"mounts[0] source {source!r} does not exist"
        else:
            assert message.startswith(f"mounts[0] source {source!r} is not allowed: {why} ("), message


def test_symlinks_are_resolved_before_the_check(host: LocalHost, tree: Path) -> None:
    link = str(tree / "to-proc")
    assert source_refusal(host, tree, link) == (
        f"mounts[0] source {link!r} (resolves to '/proc') is not allowed: "
        "it is the host's processes and kernel settings (/proc)"
    )
    for name in ("to-state", "to-netns"):
        assert "is not allowed: it is " in source_refusal(host, tree, str(tree / name))
    assert source_refusal(host, tree, str(tree / "relative-up")).endswith("it is the host's root directory")
    dotted = str(tree / "data" / ".." / "netns")
    assert source_refusal(host, tree, dotted).startswith(
        f"mounts[0] source {dotted!r} is not allowed: it is the network namespaces directory"
    )
    through_link = str(tree / "to-data" / ".." / "netns")  # to-data/.. is tree: the same place
    message = source_refusal(host, tree, through_link)
    assert "is not allowed: it is the network namespaces directory" in message


def test_a_symlink_source_is_mounted_as_its_target(host: LocalHost, tree: Path) -> None:
    """What was checked is what runc mounts: swapping the link afterwards changes nothing."""
    mounts = accepted(host, request(tree, MountInfo(str(tree / "to-data") + "/", "/a")))
    assert mounts == [MountInfo(str(tree / "data"), "/a", "bind", ["rbind"])]


def test_sockets_and_devices_anywhere_are_refused(host: LocalHost, tree: Path) -> None:
    assert source_refusal(host, tree, str(tree / "other.sock")).endswith("is not allowed: it is a socket")
    assert source_refusal(host, tree, str(tree / "null")).endswith("is not allowed: it is a device")


@pytest.mark.parametrize("source", ["", "data", "./data", "../data", "~/data", "rootfs/../data"])
def test_relative_sources_are_refused(host: LocalHost, tree: Path, source: str) -> None:
    assert source_refusal(host, tree, source) == f"mounts[0] source {source!r} is not an absolute path"


def test_odd_sources(host: LocalHost, tree: Path) -> None:
    assert (
        source_refusal(host, tree, "/data\0/x") == "mounts[0] source '/data\\x00/x' is not an absolute path"
    )
    assert source_refusal(host, tree, str(tree / "loop-a")).endswith("does not exist")
    huge = "/" + "a" * 100_000
    message = source_refusal(host, tree, huge)
    assert message.startswith("mounts[0] source '/aaaa") and message.endswith(f"longer than {MAX_PATH} bytes")
    assert "…" in message and len(message) < 250
    deep = "/" + "/".join(["a" * 255] * 15)  # under PATH_MAX, each name at NAME_MAX
    assert source_refusal(host, tree, deep).endswith("does not exist")
    too_long_name = "/" + "a" * 300
    assert source_refusal(host, tree, too_long_name).endswith("does not exist")


def test_tmpfs_source_is_a_name_only(host: LocalHost, tree: Path) -> None:
    assert accepted(host, request(tree, MountInfo("/proc", "/scratch", "tmpfs"))) == [
        MountInfo("/proc", "/scratch", "tmpfs", [])
    ]
    assert (
        refusal(host, request(tree, MountInfo("a\0", "/s", "tmpfs")))
        == "mounts[0] source 'a\\x00' is not a tmpfs name"
    )


# ------------------------------------------------------------ through other mounts


class HostWithMounts(LocalHost):
    """This machine's paths under a mount table of the test's choosing."""

    def __init__(self, facts: HostFacts, mounts: list[MountEntry] | None) -> None:
        super().__init__(facts)
        self.mounts = mounts

    def mount_table(self) -> list[MountEntry]:
        if self.mounts is None:
            raise PermissionError(13, "Permission denied", "/proc/self/mountinfo")
        return self.mounts


ROOT_DEVICE = "8:1"


def with_mounts(tree: Path, *extra: tuple[str, str, str, str]) -> HostWithMounts:
    """The root filesystem on ROOT_DEVICE, /proc on its own, plus ``extra``
    (mount point relative to the tree, root, device, type)."""
    mounts = [MountEntry("/", "/", ROOT_DEVICE, "ext4"), MountEntry("/proc", "/", "0:21", "proc")]
    mounts += [MountEntry(str(tree / point), root, device, kind) for point, root, device, kind in extra]
    return HostWithMounts(facts_of(tree), mounts)


def alias_refusal(tree: Path, source: str, *extra: tuple[str, str, str, str]) -> str:
    return refusal(with_mounts(tree, *extra), request(tree, MountInfo(str(tree / source), "/mnt")))


def test_a_kernel_filesystem_mounted_elsewhere_is_refused(tree: Path) -> None:
    message = alias_refusal(tree, "data", ("data", "/", "0:21", "proc"))
    assert message.endswith(
        f"is not allowed: it is on a proc filesystem of the host's kernel ({tree / 'data'})"
    )
    message = alias_refusal(tree, "data/sub", ("data", "/", "0:77", "sysfs"))
    assert message.endswith(f"it is on a sysfs filesystem of the host's kernel ({tree / 'data'})")


def test_a_source_holding_a_kernel_mount_is_refused(tree: Path) -> None:
    message = alias_refusal(tree, "data", ("data/sub", "/", "0:4", "nsfs"))
    assert message.endswith(f"it contains a nsfs mount of the host's kernel ({tree / 'data' / 'sub'})")


def test_protected_places_seen_through_another_mount_are_refused(tree: Path) -> None:
    data = tree / "data"
    assert alias_refusal(tree, "data", ("data", "/", ROOT_DEVICE, "ext4")).endswith(
        f"it is the host's root directory, seen through the mount at {data}"
    )
    assert alias_refusal(tree, "data", ("data", "/etc", ROOT_DEVICE, "ext4")).endswith(
        f"it is the host's configuration (/etc), seen through the mount at {data}"
    )
    assert alias_refusal(tree, "data/sub", ("data", "/usr", ROOT_DEVICE, "ext4")).endswith(
        f"it is inside the host's programs (/usr), seen through the mount at {data}"
    )
    assert alias_refusal(tree, "data", ("data", "/var", ROOT_DEVICE, "ext4")).endswith(
        "it contains containerd's default root directory (/var/lib/containerd), "
        f"seen through the mount at {data}"
    )


def test_a_disk_holding_containerd_root_is_refused(tree: Path) -> None:
    """containerd's root is /containerd of disk 9:0; that disk mounted whole elsewhere contains it."""
    root = tree / "containerd" / "root"
    message = alias_refusal(
        tree, "data", ("containerd/root", "/containerd", "9:0", "ext4"), ("data", "/", "9:0", "ext4")
    )
    assert message.endswith(
        f"it contains containerd's root directory ({root}), seen through the mount at {tree / 'data'}"
    )


def test_a_source_holding_a_mount_of_a_protected_place_is_refused(tree: Path) -> None:
    message = alias_refusal(tree, "data", ("data/sub", "/etc/ssh", ROOT_DEVICE, "ext4"))
    assert message.endswith(
        f"it contains the mount at {tree / 'data' / 'sub'}, which is inside the host's configuration (/etc)"
    )


def test_other_mounts_are_fine(tree: Path) -> None:
    host = with_mounts(tree, ("data", "/volumes/v1", "9:0", "btrfs"), ("data/sub", "/", "0:50", "tmpfs"))
    assert accepted(host, request(tree, MountInfo(str(tree / "data"), "/mnt"))) == [
        MountInfo(str(tree / "data"), "/mnt", "bind", ["rbind"])
    ]


def test_no_mount_table_no_container(tree: Path) -> None:
    host = HostWithMounts(facts_of(tree), None)
    assert refusal(host, request(tree)) == "cannot read the host's mount table: Permission denied"


def test_mountinfo_parsing() -> None:
    text = (
        "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
        "30 27 8:1 /srv/a\\040b /mnt/with\\040space\\134x rw shared:1 master:2 - ext4 /dev/sda1 rw\n"
        "garbage line\n"
        "31 27 0:4 net:[4026532] /run/netns/x rw - nsfs nsfs rw\n"
    )
    assert parse_mountinfo(text) == [
        MountEntry("/proc", "/", "0:21", "proc"),
        MountEntry("/mnt/with space\\x", "/srv/a b", "8:1", "ext4"),
        MountEntry("/run/netns/x", "net:[4026532]", "0:4", "nsfs"),
    ]
    assert parse_mountinfo(Path("/proc/self/mountinfo").read_text())[0].mount_point.startswith("/")


# ------------------------------------------------------------ targets


@pytest.mark.parametrize("target", ["/", "//", "///", "/.", "/./", "/./."])
def test_the_container_root_is_no_target(host: LocalHost, tree: Path, target: str) -> None:
    message = refusal(host, request(tree, MountInfo(str(tree / "data"), target)))
    assert message == f"mounts[0] target {target!r} is the container's root: not allowed"


@pytest.mark.parametrize("target", ["/proc", "/proc/", "//proc", "/proc/sys", "/./proc/sysrq-trigger"])
def test_proc_is_no_target(host: LocalHost, tree: Path, target: str) -> None:
    message = refusal(host, request(tree, MountInfo("t", target, "tmpfs")))
    assert message == f"mounts[0] target {target!r} is in /proc: not allowed"


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("", "is not an absolute path"),
        ("mnt", "is not an absolute path"),
        ("/a/../..", "must not contain '..'"),
        ("/mnt\0", "is not an absolute path"),
        ("/" + "x" * 5000, f"is longer than {MAX_PATH} bytes"),
    ],
)
def test_bad_targets(host: LocalHost, tree: Path, target: str, why: str) -> None:
    message = refusal(host, request(tree, MountInfo("t", target, "tmpfs")))
    assert message.startswith("mounts[0] target ") and message.endswith(why)


# ------------------------------------------------------------ the rootfs


def test_rootfs_must_not_be_a_protected_path(host: LocalHost, tree: Path) -> None:
    def rootfs(path: str) -> str:
        return refusal(host, dataclasses.replace(request(tree), rootfs=path))

    assert rootfs("/") == "rootfs '/' is not allowed: it is the host's root directory"
    assert rootfs("/etc") == "rootfs '/etc' is not allowed: it is the host's configuration (/etc)"
    assert rootfs(str(tree)).startswith(f"rootfs {str(tree)!r} is not allowed: it contains ")
    state = str(tree / "containerd" / "state")
    assert rootfs(state).startswith(f"rootfs {state!r} is not allowed: it is containerd's state directory")


def test_rootfs_must_not_be_or_pass_through_a_symlink(host: LocalHost, tree: Path) -> None:
    (tree / "rootfs-link").symlink_to(tree / "rootfs")
    (tree / "parent-link").symlink_to(tree)
    for path in (tree / "rootfs-link", tree / "parent-link" / "rootfs"):
        message = refusal(host, dataclasses.replace(request(tree), rootfs=str(path)))
        assert message == (
            f"rootfs {str(path)!r} is or passes through a symlink: "
            f"give the directory itself ({str(tree / 'rootfs')!r})"
        )
    for spelling in (str(tree / "rootfs") + "/", str(tree) + "/./rootfs", "/" + str(tree / "rootfs")):
        prepare_run("tenant", dataclasses.replace(request(tree), rootfs=spelling), host)


# ------------------------------------------------------------ property


@pytest.fixture(scope="module")
def shared_tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield build_tree(tmp_path_factory.mktemp("policy"))


INTERESTING_SOURCES = [
    "/", "/proc", "/proc/1/root", "/proc/self/root", "/sys", "/dev", "/dev/null", "/etc", "/usr", "/boot",
    "/var", "/run", "/tmp", "/var/run/netns", "//", "/./proc/", "proc", "", "/nonexistent",
    "{tree}", "{tree}/data", "{tree}/data/", "{tree}/data/sub", "{tree}/data/file.txt", "{tree}/data/..",
    "{tree}/to-proc", "{tree}/to-root", "{tree}/to-data", "{tree}/to-state", "{tree}/to-netns",
    "{tree}/relative-up", "{tree}/loop-a", "{tree}/netns", "{tree}/netns/n1", "{tree}/containerd",
    "{tree}/containerd/containerd.sock", "{tree}/containerd/root", "{tree}/contd-root", "{tree}/redis.sock",
    "{tree}/other.sock", "{tree}/null", "{tree}/rootfs",
]  # fmt: skip
OPTIONS = [
    "ro", "rw", "bind", "rbind", "nosuid", "nodev", "noexec", "private", "rshared", "slave", "size=1m",
    "mode=1777", "uid=0", "nr_inodes=5", "rbind,ro", "suid", "exec", "dev", "remount", "size=x", "RO",
]  # fmt: skip
TYPES = ["", "bind", "tmpfs", "proc", "sysfs", "cgroup", "devpts", "overlay", "BIND", "mqueue", "bind\0"]


def forbidden_reason(real: str, facts: HostFacts) -> str | None:
    """Independent of the module: the rule as the README states it."""
    if real == "/":
        return "root"
    named = ["/proc", "/sys", "/dev", "/boot", "/etc", "/root", "/usr", "/bin", "/sbin", "/lib", "/lib32",
             "/lib64", "/libx32", "/run/containerd", "/var/lib/containerd", facts.netns_dir,
             facts.containerd_socket, facts.containerd_root, facts.containerd_state, facts.daemon_root,
             facts.broker_socket]  # fmt: skip
    for path in (os.path.realpath(p) for p in named):
        if real == path or real.startswith(path + "/") or path.startswith(real + "/"):
            return path
    mode = os.stat(real).st_mode
    if stat.S_ISSOCK(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "special file"
    return None


@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(
    entries=st.lists(
        st.tuples(
            st.sampled_from(INTERESTING_SOURCES) | st.text(max_size=30),
            st.sampled_from(["/", "/mnt", "/proc", "//", "/mnt/../..", "/data/", "rel", "/a/b"])
            | st.text(max_size=20),
            st.sampled_from(TYPES) | st.text(max_size=8),
            st.none() | st.lists(st.sampled_from(OPTIONS) | st.text(max_size=10), max_size=4),
        ),
        max_size=4,
    )
)
def test_whatever_passes_is_safe_in_the_spec(
    shared_tree: Path, entries: list[tuple[str, str, str, list[str] | None]]
) -> None:
    facts = facts_of(shared_tree)
    host = LocalHost(facts)
    mounts = [
        MountInfo(source.replace("{tree}", str(shared_tree)), target, type_, options)
        for source, target, type_, options in entries
    ]
    for elevated in (False, True):
        container = request(shared_tree, *mounts, elevated=elevated)
        try:
            plan = prepare_run("tenant", container, host)
        except InvalidArgument as exc:
            assert str(exc).startswith("mounts")
            continue
        spec = build_spec(spec_request(plan), facts)
        user_mounts = spec["mounts"][-len(mounts) :] if mounts else []
        assert len(spec["mounts"]) == 7 + len(mounts)  # containerd's six, resolv.conf, the user's
        for mount in user_mounts:
            assert mount["type"] in ("bind", "tmpfs")
            target = "/" + posixpath.normpath(mount["destination"]).lstrip("/")
            assert target != "/" and target != "/proc" and not target.startswith("/proc/")
            options = set(mount["options"])
            flags = {"ro", "rw", "nosuid", "nodev", "noexec", "private", "rprivate", "shared", "rshared",
                     "slave", "rslave"}  # fmt: skip
            if mount["type"] == "bind":
                assert options & {"bind", "rbind"} and options <= flags | {"bind", "rbind"}
                source = mount["source"]
                assert source == os.path.realpath(source)
                assert forbidden_reason(source, facts) is None, (source, forbidden_reason(source, facts))
            else:
                assert all(
                    o in flags or o.split("=")[0] in {"size", "mode", "nr_inodes", "uid", "gid"}
                    for o in options
                )
