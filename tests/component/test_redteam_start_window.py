"""Red team, component test of our error handling, with a fault injected at
the containerd channel (``faults.FaultProxy``): containerd's answer to
Run's ``Tasks.Wait`` is held back while its event stream goes on.

While a container is starting, its exits are Run's business: the
supervisor drops a TaskExit it sees then, and Run learns of the exit from
its own ``Tasks.Wait``. containerd produces both at once but delivers them
on two streams; when the Wait answer is the later one (a loaded containerd,
an exit at the end of the settle window), Run's settle window ends without
it, Run answers success, and the exit the supervisor dropped is nobody's:
the container stays dead until the next periodic reconciliation (60 s by
default). The proxy makes "the Wait answer is later" certain.

Fails on the code as it is (see the report of the red team pass).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import trio

from contd_trio import errors
from contd_trio.config import Config
from contd_trio.containerd.client import TASKS_WAIT
from contd_trio.module.client import ContainerClient
from contd_trio.zbus.errors import CallError
from tests.component.faults import FaultProxy
from tests.component.support import Leftovers, container

#: Dies 50 ms after its start the first time, runs (and leaves on SIGTERM)
#: when started again.
ONCE_THEN_STEADY = (
    'sh -c \'trap "exit 0" TERM; if [ -e /started-once ]; then sleep 1000 & wait; exit 0; fi; '
    "touch /started-once; sleep 0.05; exit 3'"
)


@pytest.fixture
def daemon_config(daemon_config: Config) -> Config:
    # A settle window the exit falls well inside.
    return dataclasses.replace(daemon_config, start_settle=1.0)


async def test_an_exit_in_the_settle_window_is_never_lost(
    contd: ContainerClient, proxy: FaultProxy, leftovers: Leftovers, ns: str, netns_name: str, rootfs: Path
) -> None:
    held = proxy.hang(TASKS_WAIT, forward_first=True, container="c1", exec_process=False, caller="Run")
    try:
        await contd.run(ns, container(rootfs, netns_name, "c1", entrypoint=ONCE_THEN_STEADY))
    except CallError as exc:
        # Run saw the exit after all: that is a true answer.
        assert "exited with status 3" in exc.message, exc.message
        return
    finally:
        held.release()
    # Run answered success: the container must run, now or once restarted.

    async def running() -> bool:
        try:
            state = await leftovers.real.get_process(ns, "c1")
        except errors.NotFound:
            return False
        return state.status == "running"

    with trio.move_on_after(10):
        while not await running():
            await trio.sleep(0.05)
    assert await running(), (
        "Run answered success, its entrypoint exited within the settle window, "
        "and nothing restarted it (the supervisor dropped the exit as Run's)"
    )
    await contd.delete(ns, "c1")
