"""Tenant isolation on the real containerd and runc.

A refused request is refused before containerd: a call error naming the
field, no namespace, no container, no shim, nothing mounted. What a running
container can and cannot do is observed from inside it, with Exec (which
runs under the container's own seccomp filter, capabilities and mounts).
"""

from __future__ import annotations

import dataclasses
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from pyroute2 import NetNS

from contd_trio.app import open_daemon
from contd_trio.config import Config
from contd_trio.module.client import ContainerClient
from contd_trio.module.types import Container, MountInfo, NetworkInfo
from contd_trio.zbus.client import open_client
from contd_trio.zbus.errors import CallError
from contd_trio.zbus.transport import parse_broker_url
from tools import services

COOPERATIVE = "sh -c 'trap \"exit 0\" TERM; sleep 1000 & wait'"
#: Serves /www on 127.0.0.1:8080 and leaves on SIGTERM.
WEB_SERVER = (
    "sh -c 'mkdir -p /www && echo hello-from-httpd > /www/index.html && "
    'httpd -f -p 127.0.0.1:8080 -h /www & trap "kill $!; exit 0" TERM; wait\''
)


def container(rootfs: Path, netns: str, name: str = "c1", **fields: Any) -> Container:
    fields.setdefault("entrypoint", COOPERATIVE)
    return Container(name=name, rootfs=str(rootfs), network=NetworkInfo(netns), **fields)


def mounts_at(path: str) -> set[str]:
    """The host's mounts at or under ``path``."""
    return {line for line in Path("/proc/self/mountinfo").read_text().splitlines() if path in line}


async def assert_refused_and_nothing_made(
    contd: ContainerClient,
    containerd: services.ContainerdService,
    ns: str,
    bad: Container,
    message: str,
) -> None:
    before = mounts_at(bad.rootfs)
    with pytest.raises(CallError) as info:
        await contd.run(ns, bad)
    assert str(info.value) == message
    assert ns not in await contd.list_ns()
    assert (
        services.ctr(containerd.address, "containers", "list", "-q", namespace=ns, check=False).split() == []
    )
    assert services.shim_pids(containerd.address, ns) == []
    assert mounts_at(bad.rootfs) == before


# ------------------------------------------------------------ refused mounts


@pytest.mark.parametrize(
    "type_",
    ["proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue", "debugfs", "securityfs", "overlay", "BIND"],
)
async def test_refused_mount_types(
    contd: ContainerClient,
    containerd: services.ContainerdService,
    ns: str,
    netns_name: str,
    rootfs: Path,
    type_: str,
) -> None:
    bad = container(rootfs, netns_name, mounts=[MountInfo(type_, "/host", type_, ["rw"])], elevated=True)
    await assert_refused_and_nothing_made(
        contd, containerd, ns, bad, f"mounts[0] type {type_!r} is not allowed (allowed: bind, tmpfs)"
    )


@pytest.mark.parametrize(
    ("type_", "option", "why"),
    [
        ("", "rbind,ro", "it is not an allowed option"),
        ("bind", "suid", "it is not an allowed option"),
        ("bind", "size=1g", "size= is for tmpfs mounts only"),
        ("tmpfs", "rbind", "'rbind' is for bind mounts only"),
        ("tmpfs", "mode=u+s", "mode= takes a number"),
        ("tmpfs", "exec", "it is not an allowed option"),
    ],
)
async def test_refused_mount_options(
    contd: ContainerClient,
    containerd: services.ContainerdService,
    ns: str,
    netns_name: str,
    rootfs: Path,
    tmp_path: Path,
    type_: str,
    option: str,
    why: str,
) -> None:
    (tmp_path / "data").mkdir()
    source = str(tmp_path / "data") if type_ != "tmpfs" else "tmpfs"
    bad = container(rootfs, netns_name, mounts=[MountInfo(source, "/m", type_, [option])])
    with pytest.raises(CallError, match=r"^mounts\[0\] option ") as info:
        await contd.run(ns, bad)
    assert f"{option!r} is not allowed: {why} (allowed on " in str(info.value)
    await assert_refused_and_nothing_made(contd, containerd, ns, bad, str(info.value))


@pytest.mark.parametrize(
    ("source", "resolved", "why"),
    [
        ("/", "", "it is the host's root directory"),
        ("/proc", "", "it is the host's processes and kernel settings (/proc)"),
        ("/proc/1/root", "", "it is inside the host's processes and kernel settings (/proc)"),
        ("/sys/fs/cgroup", "", "it is inside the host's kernel objects (/sys)"),
        ("/dev", "", "it is the host's devices (/dev)"),
        ("/boot", "", "it is the host's kernels (/boot)"),
        ("/etc", "", "it is the host's configuration (/etc)"),
        ("/var", "", "it contains containerd's default root directory (/var/lib/containerd)"),
        ("/var/run/netns", "", "it is the network namespaces directory (/var/run/netns)"),
        ("/var/run/netns/{netns}", "", "it is inside the network namespaces directory (/var/run/netns)"),
        ("{containerd_socket}", "", "it is containerd's socket ({containerd_socket})"),
        ("{containerd_root}", "", "it is containerd's root directory ({containerd_root})"),
        ("{containerd_state}/", "", "it is containerd's state directory ({containerd_state})"),
        ("{containerd_root}/..", "", "it contains containerd's socket ({containerd_socket})"),
        ("{daemon_root}", "", "it is the daemon's root directory ({daemon_root})"),
        ("{broker_socket}", "", "it is the zbus broker's socket ({broker_socket})"),
        ("{tmp}/to-proc", "/proc", "it is the host's processes and kernel settings (/proc)"),
        ("{tmp}/to-state", "{containerd_state}", "it is containerd's state directory ({containerd_state})"),
    ],
)
async def test_refused_bind_sources(
    contd: ContainerClient,
    containerd: services.ContainerdService,
    daemon_config: Config,
    ns: str,
    netns_name: str,
    rootfs: Path,
    tmp_path: Path,
    source: str,
    resolved: str,
    why: str,
) -> None:
    values = {
        "netns": netns_name,
        "containerd_socket": str(containerd.address),
        "containerd_root": str(containerd.root),
        "containerd_state": str(containerd.state),
        "daemon_root": str(daemon_config.root),
        "broker_socket": parse_broker_url(daemon_config.broker).unix_path or "",
        "tmp": str(tmp_path),
    }
    (tmp_path / "to-proc").symlink_to("/proc")
    (tmp_path / "to-state").symlink_to(containerd.state)
    source = source.format(**values)
    shown = f"{source!r} (resolves to {resolved.format(**values)!r})" if resolved else repr(source)
    for elevated in (False, True):
        bad = container(rootfs, netns_name, mounts=[MountInfo(source, "/host")], elevated=elevated)
        expected = f"mounts[0] source {shown} is not allowed: {why.format(**values)}"
        await assert_refused_and_nothing_made(contd, containerd, ns, bad, expected)


@pytest.fixture
def aliases(tmp_path: Path) -> Iterator[dict[str, Path]]:
    """Host places seen through bind mounts of the test's own (undone after):
    /proc, /etc, and a directory holding a bind of /sys."""
    made: list[Path] = []
    places = {"proc": tmp_path / "proc-alias", "etc": tmp_path / "etc-alias", "holder": tmp_path / "holder"}
    try:
        for name, source in (("proc", "/proc"), ("etc", "/etc")):
            places[name].mkdir()
            subprocess.run(["mount", "--bind", source, str(places[name])], check=True)
            made.append(places[name])
        (places["holder"] / "sys").mkdir(parents=True)
        subprocess.run(["mount", "--bind", "/sys", str(places["holder"] / "sys")], check=True)
        made.append(places["holder"] / "sys")
        yield places
    finally:
        for target in reversed(made):
            subprocess.run(["umount", "-l", str(target)], check=False)


async def test_protected_places_seen_through_other_mounts_are_refused(
    contd: ContainerClient,
    containerd: services.ContainerdService,
    ns: str,
    netns_name: str,
    rootfs: Path,
    aliases: dict[str, Path],
) -> None:
    proc, etc, holder = aliases["proc"], aliases["etc"], aliases["holder"]
    for source, why in (
        (proc, f"it is on a proc filesystem of the host's kernel ({proc})"),
        (etc, f"it is the host's configuration (/etc), seen through the mount at {etc}"),
        (holder, f"it contains a sysfs mount of the host's kernel ({holder / 'sys'})"),
    ):
        bad = container(rootfs, netns_name, mounts=[MountInfo(str(source), "/host")])
        await assert_refused_and_nothing_made(
            contd, containerd, ns, bad, f"mounts[0] source {str(source)!r} is not allowed: {why}"
        )
    bad = container(etc, netns_name)
    why = f"it is the host's configuration (/etc), seen through the mount at {etc}"
    message = f"rootfs {str(etc)!r} is not allowed: {why}"
    await assert_refused_and_nothing_made(contd, containerd, ns, bad, message)


async def test_refused_targets(
    contd: ContainerClient, containerd: services.ContainerdService, ns: str, netns_name: str, rootfs: Path
) -> None:
    for target, message in (
        ("/", "mounts[0] target '/' is the container's root: not allowed"),
        ("//.", "mounts[0] target '//.' is the container's root: not allowed"),
        ("/proc/sys", "mounts[0] target '/proc/sys' is in /proc: not allowed"),
    ):
        bad = container(rootfs, netns_name, mounts=[MountInfo("t", target, "tmpfs")])
        await assert_refused_and_nothing_made(contd, containerd, ns, bad, message)


# ------------------------------------------------------------ early refusals


@pytest.mark.parametrize(
    ("memory", "message"),
    [
        (1, "memory 1 is below the minimum of 6291456 bytes (6 MiB)"),
        (4096, "memory 4096 is below the minimum of 6291456 bytes (6 MiB)"),
        (1 << 63, "memory 9223372036854775808 is more than the largest limit, 2^63-1 bytes"),
        ((1 << 64) - 1, "memory 18446744073709551615 is more than the largest limit, 2^63-1 bytes"),
    ],
)
async def test_memory_runc_cannot_set_is_refused_early(
    contd: ContainerClient,
    containerd: services.ContainerdService,
    ns: str,
    netns_name: str,
    rootfs: Path,
    memory: int,
    message: str,
) -> None:
    await assert_refused_and_nothing_made(
        contd, containerd, ns, container(rootfs, netns_name, memory=memory), message
    )


async def test_the_smallest_memory_accepted_runs(
    contd: ContainerClient, ns: str, netns_name: str, rootfs: Path
) -> None:
    await contd.run(ns, container(rootfs, netns_name, memory=6 << 20))
    assert (await contd.inspect(ns, "c1")).memory == 6 << 20
    await contd.delete(ns, "c1")


async def test_a_symlinked_rootfs_is_refused_early(
    contd: ContainerClient,
    containerd: services.ContainerdService,
    ns: str,
    netns_name: str,
    rootfs: Path,
    tmp_path: Path,
) -> None:
    link = tmp_path / "rootfs-link"
    link.symlink_to(rootfs)
    message = (
        f"rootfs {str(link)!r} is or passes through a symlink: give the directory itself ({str(rootfs)!r})"
    )
    await assert_refused_and_nothing_made(contd, containerd, ns, container(link, netns_name), message)


async def test_interactive_without_corex_is_refused_early(
    daemon_config: Config,
    broker: str,
    containerd: services.ContainerdService,
    ns: str,
    netns_name: str,
    rootfs: Path,
    tmp_path: Path,
) -> None:
    missing = tmp_path / "no-corex"
    config = dataclasses.replace(daemon_config, corex=missing)
    async with open_daemon(config), open_client(broker) as bus:
        contd = ContainerClient(bus, timeout=60)
        bad = container(rootfs, netns_name, interactive=True)
        message = f"interactive: the corex binary {missing} is not an executable file on this node"
        await assert_refused_and_nothing_made(contd, containerd, ns, bad, message)


# ------------------------------------------------------------ from inside


def loopback_up(netns: str) -> None:
    with NetNS(netns) as ns:
        (index,) = ns.link_lookup(ifname="lo")
        ns.link("set", index=index, state="up")


async def fails_with(contd: ContainerClient, ns: str, cid: str, script: str, words: str) -> None:
    """``script`` fails inside the container, saying ``words``.

    The check runs inside, on the output kept in a file there: Exec's error
    quotes the output, but it can lose the race with the shim's copy.
    """
    check = (
        f"if ( {script} ) >/tmp/out 2>&1; then echo unexpectedly succeeded; exit 1; fi; "
        f"grep -qF {shlex.quote(words)} /tmp/out || {{ cat /tmp/out; exit 1; }}"
    )
    await contd.exec_process(ns, cid, "sh", "-c", check)


async def test_a_plain_container_is_confined_and_still_works(
    contd: ContainerClient, ns: str, netns_name: str, rootfs: Path
) -> None:
    await trio.to_thread.run_sync(loopback_up, netns_name)  # pyroute2 wants no event loop of its own
    await contd.run(ns, container(rootfs, netns_name, entrypoint=WEB_SERVER))
    # The filter is there, for the entrypoint and for every exec.
    await contd.exec_process(ns, "c1", "sh", "-c", 'grep -q "^Seccomp:[[:space:]]*2$" /proc/1/status')
    await contd.exec_process(ns, "c1", "sh", "-c", 'grep -q "^Seccomp:[[:space:]]*2$" /proc/self/status')
    # A user namespace needs no capability: only seccomp stops it.
    await fails_with(contd, ns, "c1", "unshare -U true", "Operation not permitted")
    await fails_with(contd, ns, "c1", "unshare -n true", "Operation not permitted")
    await fails_with(contd, ns, "c1", "mkdir -p /mnt/t && mount -t tmpfs none /mnt/t", "permission denied")
    await fails_with(contd, ns, "c1", "mkdir -p /mnt/p && mount -t proc proc /mnt/p", "permission denied")
    await fails_with(contd, ns, "c1", "echo 1 > /proc/sys/vm/stat_interval", "Read-only file system")
    await fails_with(contd, ns, "c1", "echo /x > /proc/sys/kernel/core_pattern", "Read-only file system")
    await contd.exec_process(ns, "c1", "sh", "-c", 'test -z "$(cat /proc/keys /proc/kcore)"')  # masked: empty
    # Ordinary work: a shell, busybox tools, chroot (CAP_SYS_CHROOT), the web server.
    await contd.exec_process(
        ns, "c1", "sh", "-c", "echo hi | tr a-z A-Z | grep -qx HI && ls /bin >/dev/null && chroot / true"
    )
    await contd.exec_process(
        ns, "c1", "sh", "-c", "wget -qO- http://127.0.0.1:8080/index.html | grep -qx hello-from-httpd"
    )
    assert (await contd.inspect(ns, "c1")).task.status == "running"  # type: ignore[union-attr]
    await contd.delete(ns, "c1")


async def test_an_elevated_container_mounts_but_stays_filtered(
    contd: ContainerClient, ns: str, netns_name: str, rootfs: Path
) -> None:
    asked = container(rootfs, netns_name, elevated=True)
    await contd.run(ns, asked)
    await contd.exec_process(
        ns,
        "c1",
        "sh",
        "-c",
        "mkdir -p /mnt/t && mount -t tmpfs none /mnt/t && grep -q ' /mnt/t tmpfs ' /proc/mounts",
    )
    await contd.exec_process(ns, "c1", "sh", "-c", "test -c /dev/fuse")
    await contd.exec_process(ns, "c1", "sh", "-c", 'grep -q "^Seccomp:[[:space:]]*2$" /proc/self/status')
    # CAP_SYS_ADMIN would allow swapoff; the profile does not (without it: "No such file").
    await fails_with(contd, ns, "c1", "swapoff /nonexistent", "Operation not permitted")
    got = await contd.inspect(ns, "c1")
    assert got.elevated and got.mounts == []
    await contd.delete(ns, "c1")


async def test_a_bind_through_a_symlink_mounts_what_was_checked(
    contd: ContainerClient, ns: str, netns_name: str, rootfs: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "marker").write_text("checked\n")
    link = tmp_path / "link"
    link.symlink_to(data)
    await contd.run(ns, container(rootfs, netns_name, mounts=[MountInfo(str(link), "/data", "", ["ro"])]))
    # The link now points at /etc: the container still has what was checked.
    link.unlink()
    link.symlink_to("/etc")
    await contd.exec_process(ns, "c1", "sh", "-c", "grep -qx checked /data/marker")
    await fails_with(contd, ns, "c1", "touch /data/new", "Read-only file system")
    assert (await contd.inspect(ns, "c1")).mounts == [MountInfo(str(data), "/data", "bind", ["rbind", "ro"])]
    await contd.delete(ns, "c1")
