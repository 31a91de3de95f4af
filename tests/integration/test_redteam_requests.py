"""Red team: request values that pass validation piecewise and break later.

Each test fails on the code as it is (see the report of the red team pass).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from contd_trio.module.client import ContainerClient
from contd_trio.module.types import Container, NetworkInfo
from contd_trio.zbus.errors import CallError
from tests.helpers import STEADY, cgroup_value, wait_until
from tests.integration.faultkit import FORBIDDEN
from tools import services


def containers_left(containerd: services.ContainerdService, ns: str) -> list[str]:
    return services.ctr(containerd.address, "containers", "list", "-q", namespace=ns, check=False).split()


@pytest.mark.parametrize(
    "document",
    [
        pytest.param("a = " + "[" * 2000 + "]" * 2000, id="nested-arrays"),
        pytest.param("a = " + "{b = " * 2000 + "1" + "}" * 2000, id="nested-inline-tables"),
    ],
)
async def test_a_deeply_nested_startup_toml_is_a_clear_error(
    contd: ContainerClient,
    containerd: services.ContainerdService,
    ns: str,
    netns_name: str,
    rootfs: Path,
    document: str,
) -> None:
    """The rootfs is the tenant's: its ``.startup.toml`` (8 KiB here, well
    under the 1 MiB read limit) must be refused as the request's fault,
    not crash validation with a bug's traceback."""
    (rootfs / ".startup.toml").write_text(document)
    spec = Container(name="c1", rootfs=str(rootfs), network=NetworkInfo(netns_name))
    with pytest.raises(CallError) as refused:
        await contd.run(ns, spec)
    message = refused.value.message
    assert not any(word in message for word in FORBIDDEN), message
    assert ".startup.toml" in message, message
    assert containers_left(containerd, ns) == []


async def test_exec_args_too_large_for_containerd_are_refused_naming_them(
    contd: ContainerClient, ns: str, netns_name: str, rootfs: Path
) -> None:
    """Exec checks each argument (128 KiB) and their count (4096), not their
    sum: 20 MB of arguments reach containerd, which refuses the message with
    gRPC's words. Run refuses the same thing early ("entrypoint and env are
    N bytes together, more than 1048576")."""
    spec = Container(name="c1", rootfs=str(rootfs), network=NetworkInfo(netns_name), entrypoint=STEADY)
    await contd.run(ns, spec)
    try:
        with pytest.raises(CallError) as refused:
            await contd.exec_process(ns, "c1", "echo", *(["y" * 100_000] * 200), timeout=10)
    finally:
        await contd.delete(ns, "c1")
    message = refused.value.message
    assert "grpc" not in message, message
    assert "args" in message, message


async def test_a_container_cannot_take_every_pid_of_the_node(
    contd: ContainerClient, ns: str, netns_name: str, rootfs: Path
) -> None:
    """No pids limit is set: a fork bomb in any container (well within its
    memory limit, sleeping processes cost little) takes every pid of the
    node (``kernel.pid_max`` is 32768 here), and then containerd, runc and
    the daemon cannot start a process. The cgroup must cap the container's
    tasks (the test does not run a fork bomb on a shared machine)."""
    spec = Container(name="c1", rootfs=str(rootfs), network=NetworkInfo(netns_name), entrypoint=STEADY)
    await contd.run(ns, spec)
    try:
        limit = cgroup_value(ns, "c1", "pids", "pids.max", "pids.max")
    finally:
        await contd.delete(ns, "c1")
    assert limit != "max", "the container's pids cgroup has no limit"


async def test_deleting_a_container_leaves_the_exec_output_of_another_alone(
    contd: ContainerClient, ns: str, netns_name: str, rootfs: Path
) -> None:
    """Delete removes ``<root>/exec/<ns>/<id>.exec-*.out``; a container
    named ``a.exec-b`` (a valid identifier) keeps its exec outputs as
    ``a.exec-b.exec-<hex>.out``, which the glob of container ``a`` matches:
    deleting ``a`` unlinks the output of an Exec running in ``a.exec-b``,
    whose error then quotes nothing."""

    def spec(name: str) -> Container:
        return Container(name=name, rootfs=str(rootfs), network=NetworkInfo(netns_name), entrypoint=STEADY)

    await contd.run(ns, spec("a"))
    await contd.run(ns, spec("a.exec-b"))
    message = ""
    try:
        async with trio.open_nursery() as nursery:

            async def exec_in_the_other() -> None:
                nonlocal message
                script = "echo hello; touch /exec-started; sleep 2; exit 3"
                with pytest.raises(CallError) as failed:
                    await contd.exec_process(ns, "a.exec-b", "sh", "-c", script, timeout=30)
                message = failed.value.message

            nursery.start_soon(exec_in_the_other)
            await wait_until(lambda: (rootfs / "exec-started").exists(), timeout=30)
            await contd.delete(ns, "a")
    finally:
        await contd.delete(ns, "a.exec-b")
    assert "non-zero exit code: 3" in message, message
    assert "output: hello" in message, f"the exec's output was removed with another container: {message}"


#: The longest error an answer may carry (as the request fuzzing tests hold it).
MAX_ERROR_CHARS = 2000


@pytest.mark.parametrize("method", ["Run", "Exec"])
@pytest.mark.parametrize("length", [5_000, 40_000], ids=["5k", "40k"])
async def test_a_binary_with_a_long_name_is_reported_as_unusable(
    contd: ContainerClient, ns: str, netns_name: str, rootfs: Path, method: str, length: int
) -> None:
    """Arguments up to 128 KiB pass validation. runc quotes a missing
    binary's name (twice) in its error, which comes back unshortened
    (5,000 characters make a 10 KB answer); past about 32 KB the error no
    longer travels back at all: Run answers that containerd is unavailable
    (its gRPC stream was reset) and Exec waits 30 s for "context deadline
    exceeded". Either way the caller is told something untrue."""
    missing = "/" + "z" * length

    def spec(entrypoint: str) -> Container:
        network = NetworkInfo(netns_name)
        return Container(name="c1", rootfs=str(rootfs), network=network, entrypoint=entrypoint)

    if method == "Exec":
        await contd.run(ns, spec(STEADY))
    try:
        with pytest.raises(CallError) as failed:
            if method == "Run":
                await contd.run(ns, spec(missing))
            else:
                await contd.exec_process(ns, "c1", missing, timeout=10)
    finally:
        if method == "Exec":
            await contd.delete(ns, "c1")
    message = failed.value.message
    shown = message if len(message) <= 300 else message[:150] + " ... " + message[-150:]
    says_why = "file name too long" in message or "no such file or directory" in message
    assert says_why, f"{len(message)} characters: {shown}"
    assert len(message) <= MAX_ERROR_CHARS, f"{len(message)} characters: {shown}"
