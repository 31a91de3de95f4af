"""A Container to and from the plain values of the OCI spec layer.

Run: :func:`spec_request` turns a validated :class:`~.validate.RunPlan` into
the :class:`~contd_trio.containerd.spec.SpecRequest` that ``containerd.spec``
writes. Inspect, Delete and supervision: :func:`read_container` reads a
Container back from the spec containerd holds (:func:`container_of` from its
:class:`~contd_trio.containerd.spec.SpecSummary`). The name and creation time
are not in a spec: they stay zero here and come from containerd's record.

A spec alone cannot say what was *asked*: the entrypoint of an interactive
container (which runs corex), the working dir when none was given (the spec
says "/"), which mounts are the user's (the daemon binds resolv.conf and corex
too, and a tmpfs looks like containerd's own), the log and stats backends. So
Run writes two annotations:

``shutdown_timeout``
    0-OS's own, unchanged: the shutdown timeout in decimal nanoseconds
    (``"3000000000"``). Delete reads it.

``contd.request``
    Ours: one JSON object, compact UTF-8, with every field always written::

        {"version": 1,
         "entrypoint": "/bin/server --port 8080",
         "interactive": false,
         "working_dir": "/srv",
         "mounts": [{"source": "/data/web", "target": "/data",
                     "type": "bind", "options": ["rbind"]}],
         "logs": [{"type": "redis", "stdout": "redis://h:6379/out",
                   "stderr": "redis://h:6379/err"}],
         "stats": [{"type": "redis", "endpoint": "redis://h:6379/stats"}]}

    ``entrypoint`` and ``working_dir`` as asked (or taken from
    ``.startup.toml``), ``mounts`` as mounted (type and options filled in, a
    bind's source resolved), ``logs`` and ``stats`` the backends. ``version``
    changes only when a field's meaning does: a reader ignores keys it does not
    know, and the whole object when the version is not one it knows.

Reading forgives anything, since a spec may come from anyone (0-OS's Go
daemon, ``ctr``, an earlier contd). A field that is missing, of the wrong type
or unreadable falls back to what the spec itself says: its args joined as a
shell would split them for the entrypoint, whether they are corex's for
interactive, the process's cwd for the working dir, its bind mounts minus the
daemon's two for the mounts; unknown backends are None. An entry of a list
that is not an object of the fields above makes the whole list unreadable.

Containers made before ``contd.request`` hold the earlier daemon's
annotations, read when ``contd.request`` is absent or unreadable, each with
the same fall-back as above: ``contd.entrypoint``, ``contd.workdir`` (plain
strings), ``contd.interactive`` (``"true"``, anything else is false),
``contd.mounts`` (a JSON list of the mount objects above), and ``contd.logs``
and ``contd.stats``: JSON lists in the bus's wire shape,
``{"Type", "Data": {"Stdout", "Stderr"}}`` and ``{"Type", "Endpoint"}``.
They are never written any more.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from ..containerd import spec as oci
from ..containerd.spec import SpecMount, SpecRequest, SpecSummary
from ..zbus.gotypes import ArgumentTypeError
from .mount_policy import effective_mount
from .types import Container, Logs, LogsRedis, MountInfo, NetworkInfo, Stats
from .validate import RunPlan

T = TypeVar("T")

#: 0-OS's own annotation (Delete reads it): decimal nanoseconds.
ANNOTATION_SHUTDOWN_TIMEOUT = "shutdown_timeout"
#: Ours: what was asked that a spec cannot say, as one JSON object.
ANNOTATION_REQUEST = "contd.request"
REQUEST_VERSION = 1

#: What the daemon wrote before ``contd.request``; read, never written.
LEGACY_ENTRYPOINT = "contd.entrypoint"
LEGACY_INTERACTIVE = "contd.interactive"
LEGACY_WORKDIR = "contd.workdir"
LEGACY_MOUNTS = "contd.mounts"
LEGACY_LOGS = "contd.logs"
LEGACY_STATS = "contd.stats"


def spec_request(plan: RunPlan) -> SpecRequest:
    """What the spec of ``plan`` holds, annotations included."""
    container = plan.container
    mounts = [effective_mount(m) for m in container.mounts or ()]
    return SpecRequest(
        namespace=plan.namespace,
        container_id=container.name,
        rootfs=container.rootfs,
        args=tuple(plan.args),
        env=tuple(plan.env),
        cwd=plan.cwd,
        netns=container.network.namespace,
        mounts=tuple(SpecMount(m.source, m.target, m.type, tuple(m.options or ())) for m in mounts),
        memory=container.memory,
        cpu=container.cpu,
        rootfs_propagation=container.rootfs_propagation,
        elevated=container.elevated,
        interactive=container.interactive,
        annotations=_annotations(container, mounts),
    )


def _annotations(container: Container, mounts: list[MountInfo]) -> dict[str, str]:
    request = {
        "version": REQUEST_VERSION,
        "entrypoint": container.entrypoint,
        "interactive": container.interactive,
        "working_dir": container.working_dir,
        "mounts": [
            {"source": m.source, "target": m.target, "type": m.type, "options": list(m.options or ())}
            for m in mounts
        ],
        "logs": [
            {"type": entry.type, "stdout": entry.data.stdout, "stderr": entry.data.stderr}
            for entry in container.logs or ()
        ],
        "stats": [{"type": entry.type, "endpoint": entry.endpoint} for entry in container.stats or ()],
    }
    return {
        ANNOTATION_SHUTDOWN_TIMEOUT: str(container.shutdown_timeout_ns),
        ANNOTATION_REQUEST: json.dumps(request, separators=(",", ":"), ensure_ascii=False),
    }


def read_container(spec: Mapping[str, Any]) -> Container:
    """The Container a spec describes (see :func:`container_of`); never raises."""
    return container_of(oci.read_spec(spec))


@dataclass(frozen=True)
class _Recorded:
    """What the annotations say was asked; None where they say nothing readable."""

    entrypoint: str | None = None
    interactive: bool | None = None
    working_dir: str | None = None
    mounts: list[MountInfo] | None = None
    logs: list[Logs] | None = None
    stats: list[Stats] | None = None


def container_of(summary: SpecSummary) -> Container:
    """The Container a spec summary describes: what the annotations recorded,
    what the spec says where they recorded nothing readable."""
    recorded = _request(summary.annotations) or _legacy_request(summary.annotations)
    if recorded.mounts is not None:
        mounts = recorded.mounts
    else:
        mounts = [MountInfo(m.source, m.target, m.type, list(m.options)) for m in summary.mounts]
    return Container(
        rootfs=summary.rootfs,
        env=None if summary.env is None else list(summary.env),
        working_dir=summary.cwd if recorded.working_dir is None else recorded.working_dir,
        network=NetworkInfo(summary.netns),
        mounts=mounts,
        entrypoint=shlex.join(summary.args) if recorded.entrypoint is None else recorded.entrypoint,
        interactive=summary.interactive if recorded.interactive is None else recorded.interactive,
        cpu=summary.cpu,
        memory=summary.memory,
        logs=recorded.logs,
        stats=recorded.stats,
        elevated=summary.elevated,
        rootfs_propagation=summary.rootfs_propagation,
        shutdown_timeout_ns=_shutdown_timeout_ns(summary.annotations),
    )


def _shutdown_timeout_ns(annotations: Mapping[str, str]) -> int:
    try:
        return max(int(annotations.get(ANNOTATION_SHUTDOWN_TIMEOUT, "")), 0)
    except ValueError:
        return 0


def _json(raw: str | None) -> Any:
    """The JSON value of ``raw``, or None when absent or unreadable."""
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested too deep
        return None


# ------------------------------------------------------------ contd.request


def _request(annotations: Mapping[str, str]) -> _Recorded | None:
    """What ``contd.request`` recorded; None when it is absent, unreadable
    or of a version we do not know."""
    value = _json(annotations.get(ANNOTATION_REQUEST))
    if not isinstance(value, dict):
        return None
    version = value.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version != REQUEST_VERSION:
        return None
    interactive = value.get("interactive")
    return _Recorded(
        entrypoint=_text(value.get("entrypoint")),
        interactive=interactive if isinstance(interactive, bool) else None,
        working_dir=_text(value.get("working_dir")),
        mounts=_entries(value.get("mounts"), _mount_entry),
        logs=_entries(value.get("logs"), _logs_entry),
        stats=_entries(value.get("stats"), _stats_entry),
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _entries(value: Any, read: Callable[[Mapping[str, Any]], T | None]) -> list[T] | None:
    """Each object of the list ``value`` read; None when it is not a list or
    one of its entries cannot be read."""
    if not isinstance(value, list):
        return None
    entries = []
    for item in value:
        entry = read(item) if isinstance(item, dict) else None
        if entry is None:
            return None
        entries.append(entry)
    return entries


def _fields(item: Mapping[str, Any], *names: str) -> list[str] | None:
    """The string fields ``names`` of ``item`` ("" when absent); None when one is not a string."""
    found = [item.get(name, "") for name in names]
    return found if all(isinstance(value, str) for value in found) else None


def _mount_entry(item: Mapping[str, Any]) -> MountInfo | None:
    fields = _fields(item, "source", "target", "type")
    options = item.get("options", [])
    if fields is None or not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        return None
    source, target, type_ = fields
    return MountInfo(source=source, target=target, type=type_, options=list(options))


def _logs_entry(item: Mapping[str, Any]) -> Logs | None:
    fields = _fields(item, "type", "stdout", "stderr")
    if fields is None:
        return None
    type_, stdout, stderr = fields
    return Logs(type=type_, data=LogsRedis(stdout=stdout, stderr=stderr))


def _stats_entry(item: Mapping[str, Any]) -> Stats | None:
    fields = _fields(item, "type", "endpoint")
    if fields is None:
        return None
    type_, endpoint = fields
    return Stats(type=type_, endpoint=endpoint)


# ------------------------------------------------------------ the earlier daemon's


def _legacy_request(annotations: Mapping[str, str]) -> _Recorded:
    """What the earlier daemon's ``contd.*`` annotations recorded, read as it read them."""
    interactive = annotations.get(LEGACY_INTERACTIVE)
    return _Recorded(
        entrypoint=annotations.get(LEGACY_ENTRYPOINT),
        interactive=None if interactive is None else interactive == "true",
        working_dir=annotations.get(LEGACY_WORKDIR),
        mounts=_legacy_mounts(annotations),
        logs=_legacy_backends(annotations, LEGACY_LOGS, Logs.from_go),
        stats=_legacy_backends(annotations, LEGACY_STATS, Stats.from_go),
    )


def _legacy_list(annotations: Mapping[str, str], key: str) -> list[Any] | None:
    value = _json(annotations.get(key))
    return value if isinstance(value, list) else None


def _legacy_mounts(annotations: Mapping[str, str]) -> list[MountInfo] | None:
    recorded = _legacy_list(annotations, LEGACY_MOUNTS)
    if recorded is None:
        return None
    mounts = []
    for raw in recorded:
        item = raw if isinstance(raw, dict) else {}
        options = item.get("options")
        mounts.append(
            MountInfo(
                source=_text(item.get("source")) or "",
                target=_text(item.get("target")) or "",
                type=_text(item.get("type")) or "",
                options=[o for o in options if isinstance(o, str)] if isinstance(options, list) else [],
            )
        )
    return mounts


def _legacy_backends(annotations: Mapping[str, str], key: str, decode: Callable[[Any], T]) -> list[T] | None:
    """A list in the bus's wire shape (``Logs.from_go``, ``Stats.from_go``)."""
    recorded = _legacy_list(annotations, key)
    if recorded is None:
        return None
    try:
        return [decode(item) for item in recorded]
    except ArgumentTypeError:
        return None
