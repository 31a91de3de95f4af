"""Where the container module lives on zbus: what its server registers and
its clients call. Kept apart from the method table (``service``) so that a
client imports neither the module nor containerd's client."""

from __future__ import annotations

from ..zbus import ObjectID

MODULE = "container"
OBJECT = ObjectID("container", "0.0.1")
#: The event stream: ``container.container@0.0.1.Events``.
EVENTS = "Events"
