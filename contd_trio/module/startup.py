"""A rootfs's ``.startup.toml``: the entrypoint an flist brings with it.

Pure parsing, as 0-OS's ``pkg/container/startup.go``. An flist converted
from a 0-Initramfs/zinit image carries one entry, ``[startup.entry]``, whose
``name`` says what kind it is; only ``core.system`` (and ``core.base`` with a
program name) describe a program to run::

    [startup.entry]
    name = "core.system"

    [startup.entry.args]
    name = "/start"          # the program
    dir = "/data"            # its working directory
    args = ["extra"]         # its arguments
    [startup.entry.args.env] # its environment (the request's values win)
    LEVEL = "world"

0-OS builds the entrypoint string by quoting each argument, so it can be
split again like a user-given one. We escape backslashes as well as quotes,
so every argument comes back exactly from ``shlex.split`` (0-OS's quoting
lost backslashes).
"""

from __future__ import annotations

import shlex
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidArgument
from ..text import quote, shorten

#: Where the file lives, relative to the rootfs.
STARTUP_FILE = ".startup.toml"
#: The entry kinds that name a program to run.
_PROGRAM_ENTRIES = ("core.system", "core.base")


@dataclass
class Startup:
    """What ``[startup.entry]`` supplies. ``entrypoint`` is "" when the entry
    names no program (then only ``working_dir`` and ``env`` apply, as in
    0-OS)."""

    entrypoint: str = ""
    working_dir: str = ""
    env: dict[str, str] = field(default_factory=dict)


def _fail(reason: str) -> InvalidArgument:
    return InvalidArgument(f"rootfs {STARTUP_FILE}: {reason}")


def _typed(table: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    value = table.get(key)
    if value is not None and not isinstance(value, kind):
        raise _fail(f"{where}{key} must be a {_KIND_NAMES[kind]}, not {type(value).__name__}")
    return value


_KIND_NAMES: dict[type, str] = {str: "string", list: "list", dict: "table"}


def _quote(arg: str) -> str:
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_startup(text: str) -> Startup | None:
    """The startup entry of a ``.startup.toml``, or None when it has no
    ``[startup.entry]`` table.

    Raises:
        InvalidArgument: the TOML is malformed, or a field has the wrong type
            (0-OS's decoder refused those too).
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _fail(str(exc)) from exc
    except RecursionError:
        # tomllib parses nested arrays and tables by recursion: a file of a
        # few thousand brackets would otherwise end the request as a bug.
        raise _fail("nested too deeply") from None
    startup = _typed(document, "startup", dict, "")
    entry = _typed(startup or {}, "entry", dict, "startup.")
    if entry is None:
        return None
    kind = _typed(entry, "name", str, "startup.entry.") or ""
    args = _typed(entry, "args", dict, "startup.entry.") or {}
    where = "startup.entry.args."
    program = _typed(args, "name", str, where) or ""
    directory = _typed(args, "dir", str, where) or ""
    arguments = _typed(args, "args", list, where) or []
    env = _typed(args, "env", dict, where) or {}
    for i, arg in enumerate(arguments):
        if not isinstance(arg, str):
            raise _fail(f"{where}args[{i}] must be a string, not {type(arg).__name__}")
    for key, value in env.items():
        if not key or "=" in key or "\0" in key:
            raise _fail(f"{where}env key {quote(key)} is not a variable name")
        if not isinstance(value, str):
            raise _fail(f"{where}env.{shorten(key)} must be a string, not {type(value).__name__}")

    entrypoint = ""
    if kind in _PROGRAM_ENTRIES and program:
        entrypoint = " ".join([shlex.quote(program), *(_quote(arg) for arg in arguments)])
    return Startup(entrypoint=entrypoint, working_dir=directory, env=dict(env))


def merge_env(request_env: Iterable[str] | None, startup_env: Mapping[str, str]) -> list[str]:
    """The startup file's env under the request's: the request wins a key.

    Startup keys come first in their order (with the request's value when it
    has one), then the request's other entries in their order. A key given
    twice in the request keeps its last value at its first place. 0-OS merged
    through a Go map, so its order was random; ours is stable.
    """
    request: dict[str, str] = {}
    for entry in request_env or ():
        key = entry.split("=", 1)[0]
        request[key] = entry
    merged = [request.pop(key, f"{key}={value}") for key, value in startup_env.items()]
    merged.extend(request.values())
    return merged
