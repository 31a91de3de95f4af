"""``tools/bench``: every comparison of the performance table, in one run.

Each part (``run``, ``zbus``, ``containerd``, ``memory``, ``inspect``,
``restart``) starts what it measures on private services (Redis,
containerd, a busybox rootfs, a network namespace) and gives back
:class:`~.common.Figure` rows; ``__main__`` runs the parts asked for and
writes them as JSON and as a Markdown table.
"""
