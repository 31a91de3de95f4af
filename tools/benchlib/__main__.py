"""Run benchmark parts side by side with their references; write JSON and Markdown.

``tools/bench [PART ...|all] [--repeat N] [--out DIR]`` prints the table
and writes it as ``<out>/<date>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from . import containerd, inspect, memory, restart, run, zbus
from .common import ROOT, Figure, machine
from .report import markdown, write

PARTS: dict[
    str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], list[Figure]]]
] = {
    "run": (run.add_arguments, run.measure),
    "zbus": (zbus.add_arguments, zbus.measure),
    "containerd": (containerd.add_arguments, containerd.measure),
    "memory": (memory.add_arguments, memory.measure),
    "inspect": (inspect.add_arguments, inspect.measure),
    "restart": (restart.add_arguments, restart.measure),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "parts",
        nargs="+",
        choices=[*PARTS, "all"],
        metavar="PART",
        help=f"what to measure: {', '.join(PARTS)} or all",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each figure that varies; the median is shown"
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench-results", help="where results go (%(default)s)"
    )
    for add_arguments, _ in PARTS.values():
        add_arguments(parser)
    args = parser.parse_args(argv)
    chosen = list(PARTS) if "all" in args.parts else list(dict.fromkeys(args.parts))
    command = shlex.join(["tools/bench", *(argv if argv is not None else sys.argv[1:])])
    figures: list[Figure] = []
    for name in chosen:
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        figures += PARTS[name][1](args)
    facts = machine()
    print(markdown(figures, facts, command))
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H%M%SZ")
    json_path, md_path = write(figures, facts, command, args.out, stamp)
    print(f"written: {json_path} {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
