"""Exec processes nobody waits for: removed by reconciliation.

Exec promises that its process and output files are removed whatever
happens, but a daemon killed mid-Exec (SIGKILL, a crash, the node's OOM
killer) is not there to do it: the process runs on, past its timeout, for
good, and its files stay. The daemon that comes next knows them two ways,
and removes every one it is not running itself (killed, deleted, files
unlinked):

* from their output files (:mod:`.exec_outputs`), made before any exec
  process and removed after it: found at every reconciliation;
* from containerd: the runc shim names the exec process of each of a
  task's processes (``Tasks.ListPids``), which finds those whose files were
  removed while their process could not be (containerd was away when the
  daemon that started them died). It costs a ``runc ps``, so it is asked
  once for each container running when the daemon started (the first
  reconciliation), a few at once: a task started since is this daemon's,
  and so is every exec process in it.

Only exec ids the daemon makes (:data:`.exec_outputs.EXEC_ID_PREFIX`) are
touched: an operator's ``ctr task exec`` is left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import trio

from .. import logs
from ..containerd.client import Containerd
from ..errors import NotFound
from ..taskgroups import open_nursery
from .exec_outputs import ExecKey, ExecOutputs, is_ours
from .exec_runner import kill_and_remove_exec
from .lifecycle import Key
from .shields import Shields

log = logging.getLogger("contd.supervisor")

#: ``Tasks.ListPids`` calls made at once (each runs ``runc ps``).
LISTINGS_AT_ONCE = 8


class StrayExecs:
    """Args:
    containerd: the client.
    outputs: the exec output files, and which exec processes run now.
    shields: the daemon's shielded scopes, lifted at its stop.
    """

    def __init__(self, containerd: Containerd, outputs: ExecOutputs, shields: Shields) -> None:
        self.containerd = containerd
        self.outputs = outputs
        self.shields = shields
        #: The containers running at the first pass, whose processes may be
        #: a previous daemon's; each is forgotten once listed.
        self._unlisted: set[Key] | None = None
        self._busy = False

    async def remove(self, running: Iterable[Key]) -> None:
        """Find the exec processes of the daemon's that nobody waits for and
        remove them; ``running`` are the managed containers whose task runs.
        A call while another is under way does nothing.

        Raises:
            ContdError: containerd failed (what is left is found next time).
        """
        if self._busy:
            return
        self._busy = True
        try:
            found = await self._from_containerd(running)
            found |= await trio.to_thread.run_sync(self.outputs.on_disk)
            # Judged after listing: an exec started since is not listed, one
            # running now is this daemon's.
            for namespace, container_id, exec_id in sorted(found):
                if exec_id not in self.outputs.running:
                    await self._remove(namespace, container_id, exec_id)
        finally:
            self._busy = False

    async def _from_containerd(self, running: Iterable[Key]) -> set[ExecKey]:
        """The daemon's exec processes in the containers running at the first
        pass that were not listed yet. Each listing is a ``runc ps`` in the
        container's shim: after a restart with hundreds of containers they
        are made a few at once, not one after the other."""
        if self._unlisted is None:
            self._unlisted = set(running)
        unlisted = self._unlisted
        found: set[ExecKey] = set()
        limiter = trio.CapacityLimiter(LISTINGS_AT_ONCE)

        async def list_one(key: Key) -> None:
            async with limiter:
                try:
                    processes = await self.containerd.processes(*key)
                except NotFound:
                    unlisted.discard(key)  # gone meanwhile, and its processes with it
                    return
            found.update((*key, p.exec_id) for p in processes if is_ours(p.exec_id))
            unlisted.discard(key)

        async with open_nursery() as nursery:
            for key in unlisted.intersection(running):
                nursery.start_soon(list_one, key)
        return found

    async def _remove(self, namespace: str, container_id: str, exec_id: str) -> None:
        logs.event(
            log,
            logging.WARNING,
            "removing an exec process nobody waits for (its daemon was cut off)",
            ns=namespace,
            id=container_id,
            exec_id=exec_id,
        )
        with self.shields.shield():
            await kill_and_remove_exec(self.containerd, namespace, container_id, exec_id)
            await self.outputs.remove(namespace, container_id, exec_id)
