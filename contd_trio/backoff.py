"""Exponential delays for retrying a lost connection."""

from __future__ import annotations


class Backoff:
    """Doubles from ``first`` up to ``maximum``; :meth:`reset` after a success."""

    def __init__(self, first: float = 0.1, maximum: float = 5.0) -> None:
        self.first = first
        self.maximum = maximum
        self._next = first

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.maximum)
        return delay

    def reset(self) -> None:
        self._next = self.first
