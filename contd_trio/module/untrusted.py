"""The strings of a request before anything else looks at them.

A Go string is any bytes, so a Go module passing a tenant's data through
can send a string that is not UTF-8. Our decoder keeps such bytes (as
surrogate escapes) instead of failing the whole request as a protocol
error, which would crash the calling Go stub; this module then refuses them
with a call error naming the field (``Entrypoint: not valid UTF-8``), since
nothing below (JSON for containerd, paths, runc) can carry them. It also
bounds their size: a value is quoted back shortened, but a 100 MB env entry
must not reach containerd either.

Field names are Go's (``Mounts[1].Source``), as the caller wrote them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from ..errors import InvalidArgument
from ..text import quote
from .types import Container

#: The longest single string accepted (Linux's own limit on one argument or
#: environment entry, MAX_ARG_STRLEN, is 128 KiB).
MAX_TEXT_BYTES = 128 * 1024
#: The most list entries (env, mounts, backends, exec args) accepted.
MAX_ITEMS = 4096
#: The most bytes an argument list takes together (execve's limit is about 2 MiB
#: with the environment; containerd's messages, 16 MiB).
MAX_ARGS_BYTES = 1024 * 1024


def is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_text(field: str, value: str) -> None:
    """Raises: InvalidArgument: ``value`` is not UTF-8, or too long."""
    if not is_utf8(value):
        raise InvalidArgument(f"{field}: not valid UTF-8")
    if len(value) > MAX_TEXT_BYTES:  # characters, a lower bound of bytes
        raise InvalidArgument(f"{field}: {len(value)} characters, more than {MAX_TEXT_BYTES} allowed")


def _check_items(field: str, items: Sequence[object] | None) -> None:
    if items is not None and len(items) > MAX_ITEMS:
        raise InvalidArgument(f"{field}: {len(items)} entries, more than {MAX_ITEMS} allowed")


def container_text(container: Container) -> Iterator[tuple[str, str]]:
    """Every string of a Container, with its Go field name."""
    yield "Name", container.name
    yield "RootFS", container.rootfs
    for i, entry in enumerate(container.env or ()):
        yield f"Env[{i}]", entry
    yield "WorkingDir", container.working_dir
    yield "Network.Namespace", container.network.namespace
    for i, mount in enumerate(container.mounts or ()):
        yield f"Mounts[{i}].Source", mount.source
        yield f"Mounts[{i}].Target", mount.target
        yield f"Mounts[{i}].Type", mount.type
        for j, option in enumerate(mount.options or ()):
            yield f"Mounts[{i}].Options[{j}]", option
    yield "Entrypoint", container.entrypoint
    for i, backend in enumerate(container.logs or ()):
        yield f"Logs[{i}].Type", backend.type
        yield f"Logs[{i}].Data.Stdout", backend.data.stdout
        yield f"Logs[{i}].Data.Stderr", backend.data.stderr
    for i, stats in enumerate(container.stats or ()):
        yield f"Stats[{i}].Type", stats.type
        yield f"Stats[{i}].Endpoint", stats.endpoint
    yield "RootFsPropagation", container.rootfs_propagation


def check_container(container: Container) -> None:
    """Every string of a Run request is UTF-8 and of a sane size.

    Raises:
        InvalidArgument: naming the first field that is not.
    """
    _check_items("Env", container.env)
    _check_items("Mounts", container.mounts)
    _check_items("Logs", container.logs)
    _check_items("Stats", container.stats)
    for mount_index, mount in enumerate(container.mounts or ()):
        _check_items(f"Mounts[{mount_index}].Options", mount.options)
    for field, value in container_text(container):
        check_text(field, value)


#: The longest path and the longest name in it the kernel takes (PATH_MAX, NAME_MAX).
MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255


def check_program(field: str, program: str) -> None:
    """The program of a process (``argv[0]``) can name a file at all: runc
    would fail on it late (and quote it whole in its error).

    Raises:
        InvalidArgument: file name too long.
    """
    encoded = program.encode("utf-8", "surrogateescape")
    if len(encoded) >= MAX_PATH_BYTES or any(len(part) > MAX_NAME_BYTES for part in encoded.split(b"/")):
        raise InvalidArgument(
            f"{field}: the program {quote(program)} cannot be run: file name too long "
            f"(paths take at most {MAX_PATH_BYTES - 1} bytes, names {MAX_NAME_BYTES})"
        )


def check_args(field: str, args: Iterable[str]) -> None:
    """An argument list (Exec's ``args ...string``).

    Raises:
        InvalidArgument: naming the first argument that is not UTF-8, too
            long, or holds a NUL.
    """
    args = list(args)
    _check_items(field, args)
    total = 0
    for i, arg in enumerate(args):
        check_text(f"{field}[{i}]", arg)
        if "\0" in arg:  # execve takes C strings: runc would refuse it late
            raise InvalidArgument(f"{field}[{i}]: contains a NUL character")
        total += len(arg.encode("utf-8", "surrogateescape")) + 1
    if total > MAX_ARGS_BYTES:
        raise InvalidArgument(f"{field}: {total} bytes together, more than {MAX_ARGS_BYTES} allowed")
    if args:
        check_program(f"{field}[0]", args[0])
