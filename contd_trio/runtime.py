"""Running a Trio program with the asyncio bridge: the one place that does.

grpclib is an asyncio library, so the daemon (``contd``), which talks to
containerd, runs its Trio main under trio-asyncio's loop; the programs that
only use the bus (``contdctl``, the REPL, the zbus demo) run on plain Trio
(``taskgroups.run``) and never import asyncio. Whatever the main raises comes out as one
exception (see :mod:`.taskgroups`), so the command lines handle their
errors with plain ``except`` clauses.

After this module, asyncio and the libraries built on it are imported only
by ``containerd.channel`` (grpclib); the zbus transport is plain Trio.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio_asyncio

from .taskgroups import single_errors

T = TypeVar("T")


def run(main: Callable[..., Awaitable[T]], *args: object) -> T:
    """Run ``main(*args)`` on Trio with an asyncio loop beside it.

    Raises:
        BaseException: whatever ``main`` raised, as one exception.
    """
    with single_errors():
        result: T = trio_asyncio.run(main, *args)
        return result
