"""The container labels the daemon keeps in containerd, its only durable state.

Labels (unlike spec annotations) can be changed after creation, so they hold
what changes over a container's life: whether somebody asked it to go away,
how often it was restarted, whether it was given up.
"""

from __future__ import annotations

from collections.abc import Mapping

#: Set on every container this daemon made: reconciliation only touches those.
MANAGED = "contd.managed"
#: Set when Run creates the container, removed right before Run answers
#: success. A container still pending when no Run is working on it belongs to
#: a Run that failed or died: reconciliation removes it, never starts it.
PENDING = "contd.pending"
#: Delete or SignalDelete asked for it to go: never restart it. Never expires.
GOING_AWAY = "contd.going-away"
#: How many times supervision restarted it.
RESTARTS = "contd.restarts"
#: Supervision gave up on it (the reason); its task is removed, the container kept.
FAILED = "contd.failed"
#: Recent crash times (wall clock, comma-separated), for the restart policy.
CRASHES = "contd.crashes"
#: How its last task ended, once that task is gone (Inspect reports it).
EXIT_STATUS = "contd.exit-status"
EXITED_AT = "contd.exited-at"


def restarts(container_labels: Mapping[str, str]) -> int:
    try:
        return max(int(container_labels.get(RESTARTS, "0")), 0)
    except ValueError:
        return 0


def going_away(container_labels: Mapping[str, str]) -> bool:
    return container_labels.get(GOING_AWAY) == "true"


def exit_status(container_labels: Mapping[str, str]) -> int:
    try:
        return int(container_labels.get(EXIT_STATUS, "0"))
    except ValueError:
        return 0


def exited_at_ns(container_labels: Mapping[str, str]) -> int | None:
    try:
        return int(container_labels[EXITED_AT])
    except (KeyError, ValueError):
        return None


def pending(container_labels: Mapping[str, str]) -> bool:
    return container_labels.get(PENDING) == "true"
