"""Shielded work that a stopping daemon can still end.

Work that must not stop half-way when its request is cancelled (creating a
container and settling what exists, removing one, the kill of a Delete) runs
in a shielded cancel scope, bounded by its own timeout. While containerd is
frozen, that bound is all that ends it: a stop would wait up to a call's
timeout (30 s) for each, long after the requests' grace. So every such scope
is taken from :class:`Shields`, which the daemon lifts when, the grace and
2 s of settling over, containerd stops answering (``app``): the scopes stop
shielding, the requests'
cancellation reaches the calls inside, and the daemon stops. What that
leaves half-made is pending, and the next daemon's start-up removes it, as
after a daemon that was killed. The one exception is the removal of a Run
whose confirm containerd did not answer: what a late confirm leaves is no
longer pending, so that removal keeps a shield of its own (see
``ContainerOps.remove_half_made``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import trio


class Shields:
    """The shielded scopes of one daemon, lifted together at its stop."""

    def __init__(self) -> None:
        self._open: set[trio.CancelScope] = set()
        #: Whether :meth:`lift` was called: scopes taken since do not shield.
        self.lifted = False

    @contextmanager
    def shield(self, deadline: float = float("inf")) -> Iterator[trio.CancelScope]:
        """A cancel scope that shields its contents until :meth:`lift`."""
        scope = trio.CancelScope(shield=not self.lifted, deadline=deadline)
        self._open.add(scope)
        try:
            with scope:
                yield scope
        finally:
            self._open.discard(scope)

    def lift(self) -> None:
        """Stop shielding: the cancellation of the work inside (its request
        cancelled, the daemon's nursery cancelled) reaches it now."""
        self.lifted = True
        for scope in self._open:
            scope.shield = False
