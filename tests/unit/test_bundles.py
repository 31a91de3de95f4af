"""Stale task bundles: removed only when nothing serves them (on fake
/proc and state trees; tests/integration/test_faults.py kills a real
containerd to make real ones)."""

from __future__ import annotations

import os
from pathlib import Path

from contd_trio.containerd import bundles


def _bundle(state: Path, root: Path, ns: str, cid: str) -> Path:
    bundle = bundles.bundle_path(state, ns, cid)
    (bundle / "rootfs").mkdir(parents=True)
    (bundle / "config.json").write_text("{}")
    work = root / bundles.RUNTIME_DIR / ns / cid
    work.mkdir(parents=True)
    (bundle / "work").symlink_to(work)
    return bundle


def _shim(proc: Path, pid: int, ns: str, cid: str) -> None:
    (proc / str(pid)).mkdir(parents=True)
    argv = ["/usr/bin/containerd-shim-runc-v2", "-namespace", ns, "-id", cid, "-address", "/x.sock"]
    (proc / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")


def _pid_namespace(proc: Path, pid: int | str, namespace: str) -> None:
    (proc / str(pid) / "ns").mkdir(parents=True)
    (proc / str(pid) / "ns" / "pid").symlink_to(namespace)


def test_a_bundle_nobody_serves_is_removed_with_its_work_dir(tmp_path: Path) -> None:
    state, root = tmp_path / "state", tmp_path / "root"
    bundle = _bundle(state, root, "ns", "c1")
    work = Path(os.readlink(bundle / "work"))
    assert bundles.remove_stale_bundle(state, "ns", "c1")
    assert not bundle.exists() and not work.exists()


def test_a_served_bundle_is_kept(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    _shim(proc, 42, "ns", "c1")
    _shim(proc, 43, "other", "c2")
    assert bundles.shim_serves("ns", "c1", proc)
    assert not bundles.shim_serves("ns", "c2", proc)
    assert not bundles.shim_serves("other", "c1", proc)


def test_nothing_to_remove(tmp_path: Path) -> None:
    assert not bundles.remove_stale_bundle(tmp_path, "ns", "c1")


def test_the_error_it_answers_is_recognised() -> None:
    assert bundles.is_stale_bundle_error(
        "failed to start shim: mkdir /run/containerd/io.containerd.runtime.v2.task/ns/c1: file exists"
    )
    assert not bundles.is_stale_bundle_error("failed to start shim: exec: not found")


def test_only_idle_old_shims_of_this_containerd_without_a_bundle_count(tmp_path: Path) -> None:
    state, root, proc = tmp_path / "state", tmp_path / "root", tmp_path / "proc"
    _bundle(state, root, "ns", "live")
    (proc).mkdir()
    (proc / "uptime").write_text("1000.0 10.0\n")
    ticks = os.sysconf("SC_CLK_TCK")
    # Children: 99 a container's init, 98 the log shim of a task's output,
    # 97 a container's init that names itself like a log shim.
    host, container = "pid:[4026531836]", "pid:[4026532999]"
    (proc / "99").mkdir()
    (proc / "99" / "cmdline").write_bytes(b"/bin/sleep\x001000\x00")
    _pid_namespace(proc, 99, container)
    log_shim_argv = b"/usr/bin/python3\x00-S\x00/root/bin/python/contd-logshim\x00--log\x00x\x00"
    (proc / "98").mkdir()
    (proc / "98" / "cmdline").write_bytes(log_shim_argv)
    _pid_namespace(proc, 98, host)
    (proc / "97").mkdir()
    (proc / "97" / "cmdline").write_bytes(log_shim_argv)
    _pid_namespace(proc, 97, container)
    children = {"busy": "99 98", "orphan": "98", "disguised": "98 97"}
    shims = ((10, "live", 1), (11, "orphan", 1), (12, "busy", 1), (14, "young", 998), (15, "disguised", 1))
    for pid, cid, started in shims:
        _shim(proc, pid, "ns", cid)
        _pid_namespace(proc, pid, host)
        (proc / str(pid) / "task" / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "task" / str(pid) / "children").write_text(children.get(cid, ""))
        fields = ["S"] + ["0"] * 18 + [str(started * ticks)]
        (proc / str(pid) / "stat").write_text(f"{pid} (containerd-shim) " + " ".join(fields))
    _shim(proc, 13, "ns", "elsewhere")
    (proc / "13" / "cmdline").write_bytes(
        (proc / "13" / "cmdline").read_bytes().replace(b"/x.sock", b"/y.sock")
    )
    assert bundles.idle_shims(state, Path("/x.sock"), proc) == [bundles.Shim(11, "ns", "orphan")]


def test_a_tenant_process_named_like_a_shim_is_no_shim(tmp_path: Path) -> None:
    """A container's process may name itself ``containerd-shim-runc-v2`` with
    another tenant's namespace and id (its command line is the tenant's):
    it lives in the container's pid namespace, not the daemon's, where
    containerd's shims are. Counted as a shim, it kept another tenant's
    stale bundle from being removed (every Run of that name failed), and
    was SIGKILLed by the idle-shim sweep as "a shim serving nothing"."""
    state, proc = tmp_path / "state", tmp_path / "proc"
    (proc).mkdir()
    (proc / "uptime").write_text("1000.0 10.0\n")
    host, container = "pid:[4026531836]", "pid:[4026532999]"
    (proc / "self").mkdir()
    _pid_namespace(proc, "self", host)
    ticks = os.sysconf("SC_CLK_TCK")
    for pid, cid, namespace in ((42, "real", host), (50, "victim", container)):
        _shim(proc, pid, "ns", cid)
        _pid_namespace(proc, pid, namespace)
        (proc / str(pid) / "task" / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "task" / str(pid) / "children").write_text("")
        fields = ["S"] + ["0"] * 18 + [str(ticks)]
        (proc / str(pid) / "stat").write_text(f"{pid} (containerd-shim) " + " ".join(fields))
    assert bundles.shim_serves("ns", "real", proc)
    assert not bundles.shim_serves("ns", "victim", proc)
    assert bundles.idle_shims(state, Path("/x.sock"), proc) == [bundles.Shim(42, "ns", "real")]
