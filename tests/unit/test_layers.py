"""The package's layering, checked on its import statements."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "contd_trio"

#: Libraries that run on (or are) asyncio: imported by the bridge modules only.
FOREIGN_RUNTIMES = ("asyncio", "trio_asyncio", "redis", "grpclib", "h2")
BRIDGES = {"zbus/transport.py", "containerd/channel.py", "runtime.py"}


def _modules() -> dict[str, ast.Module]:
    return {
        str(path.relative_to(PACKAGE)): ast.parse(path.read_text())
        for path in PACKAGE.rglob("*.py")
        if "_proto" not in path.parts
    }


def _imported(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_only_the_bridges_import_asyncio_libraries() -> None:
    offenders = {
        module: sorted(n for n in _imported(tree) if n.split(".")[0] in FOREIGN_RUNTIMES)
        for module, tree in _modules().items()
        if module not in BRIDGES
    }
    assert {m: names for m, names in offenders.items() if names} == {}
    assert len(BRIDGES) <= 3
