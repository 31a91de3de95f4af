"""``container@0.0.1`` on zbus: the method table Go stubs call.

Signatures are 0-OS's ``pkg.ContainerModule``, argument for argument, so the
generated Go stubs call every method unchanged. The methods 0-OS does not
have (ExecOutput, LogsFrom, LogsTail, Stats, Update) come after them, with
Go-style typed arguments and results; Go stubs ignore what they do not know.
"""

from __future__ import annotations

from typing import Any

from ..zbus import gotypes
from ..zbus.dispatch import Method
from .container import ContainerModule
from .types import CONTAINER, CONTAINER_ID, CONTAINER_STATS, EXEC_OUTPUT, LOG_CHUNK

S = gotypes.STRING


def _ns(namespace: str, *_: Any) -> dict[str, Any]:
    return {"ns": namespace}


def _ns_id(namespace: str, target: Any, *_: Any) -> dict[str, Any]:
    return {"ns": namespace, "id": getattr(target, "name", target)}


def container_methods(module: ContainerModule) -> dict[str, Method]:
    return {
        # Run(ns string, data Container) (ContainerID, error)
        "Run": Method(module.run, params=(S, CONTAINER), results=(CONTAINER_ID,), describe=_ns_id),
        # Inspect(ns string, id ContainerID) (Container, error)
        "Inspect": Method(module.inspect, params=(S, CONTAINER_ID), results=(CONTAINER,), describe=_ns_id),
        # Delete(ns string, id ContainerID) error
        "Delete": Method(module.delete, params=(S, CONTAINER_ID), describe=_ns_id),
        # SignalDelete(ns string, id ContainerID) error
        "SignalDelete": Method(module.signal_delete, params=(S, CONTAINER_ID), describe=_ns_id),
        # List(ns string) ([]ContainerID, error)
        "List": Method(
            module.list_containers, params=(S,), results=(gotypes.slice_of(CONTAINER_ID),), describe=_ns
        ),
        # ListNS() ([]string, error)
        "ListNS": Method(module.list_ns, results=(gotypes.slice_of(S),)),
        # Exec(ns, containerID string, timeout time.Duration, args ...string) error
        "Exec": Method(module.exec_process, params=(S, S, gotypes.DURATION), variadic=S, describe=_ns_id),
        # ExecOutput(ns, containerID string, timeout time.Duration, args ...string) (ExecOutput, error)
        "ExecOutput": Method(
            module.exec_output,
            params=(S, S, gotypes.DURATION),
            variadic=S,
            results=(EXEC_OUTPUT,),
            describe=_ns_id,
        ),
        # Logs(ns, containerID string) (string, error)
        "Logs": Method(module.logs, params=(S, S), results=(S,), describe=_ns_id),
        # LogsFrom(ns, containerID string, cursor string, max int) (LogChunk, error)
        "LogsFrom": Method(
            module.logs_from, params=(S, S, S, gotypes.INT), results=(LOG_CHUNK,), describe=_ns_id
        ),
        # LogsTail(ns, containerID string, lines int, since time.Time) (LogChunk, error)
        "LogsTail": Method(
            module.logs_tail, params=(S, S, gotypes.INT, gotypes.TIME), results=(LOG_CHUNK,), describe=_ns_id
        ),
        # Update(ns, containerID string, cpu uint, memory uint64) error
        "Update": Method(module.update, params=(S, S, gotypes.UINT, gotypes.UINT64), describe=_ns_id),
        # Stats(ns, containerID string) (ContainerStats, error)
        "Stats": Method(module.stats, params=(S, S), results=(CONTAINER_STATS,), describe=_ns_id),
    }
