"""When a crashed container is restarted, and when it is given up. Pure.

The crash history is kept in a container label as wall-clock times, so it
survives the daemon's own restarts (0-OS kept it in a one-minute in-memory
cache keyed by id alone: a container crashing every 61 s restarted forever).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass


class Decision(enum.Enum):
    RESTART = "restart"
    GIVE_UP = "give up"


@dataclass(frozen=True)
class RestartPolicy:
    """Restart after ``delay`` seconds; give up at the ``limit``-th crash
    within ``window`` seconds."""

    delay: float = 2.0
    limit: int = 3
    window: float = 60.0

    def on_crash(self, history: Sequence[float], now: float) -> tuple[Decision, list[float]]:
        """Decide about a crash at ``now``; returns the decision and the
        history to keep (crashes within the window, this one included)."""
        recent = sorted(t for t in history if 0 <= now - t < self.window)
        recent.append(now)
        recent = recent[-self.limit :]
        return (Decision.GIVE_UP if len(recent) >= self.limit else Decision.RESTART), recent


def format_history(history: Sequence[float]) -> str:
    return ",".join(f"{t:.3f}" for t in history)


def parse_history(text: str | None) -> list[float]:
    """The crash times of a label; anything unreadable counts as no history."""
    times = []
    for item in (text or "").split(","):
        try:
            times.append(float(item))
        except ValueError:
            continue
    return times
