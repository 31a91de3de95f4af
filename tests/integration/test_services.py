"""The test set-up itself: a private containerd that really runs a busybox rootfs."""

from __future__ import annotations

from pathlib import Path

from tools import services


def test_private_containerd_runs_the_busybox_rootfs(
    containerd: services.ContainerdService, busybox_rootfs: Path, ns: str
) -> None:
    assert str(containerd.address) != "/run/containerd/containerd.sock"
    out = services.ctr(
        containerd.address,
        "run",
        "--rm",
        "--rootfs",
        str(busybox_rootfs),
        "probe",
        "/bin/echo",
        "hello",
        namespace=ns,
    )
    assert out.strip() == "hello"
    assert services.ctr(containerd.address, "containers", "list", "-q", namespace=ns).strip() == ""
