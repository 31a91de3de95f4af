"""The package's layering, checked on its import statements: the bridges alone
import asyncio libraries; containerd/ and zbus/ know nothing of the layers above
them or of each other."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "contd_trio"

#: Libraries that run on (or are) asyncio: imported by the bridge modules only.
FOREIGN_RUNTIMES = ("asyncio", "trio_asyncio", "redis", "grpclib", "h2")
BRIDGES = {"containerd/channel.py", "runtime.py"}


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


def _absolute_imports(module: str, tree: ast.Module) -> set[str]:
    """Every module ``module`` (a path under the package) imports, relative
    imports resolved: ``from ..module import x`` in ``containerd/spec.py``
    is ``contd_trio.module`` and ``contd_trio.module.x``."""
    package = ["contd_trio", *Path(module).parent.parts]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            origin = ".".join([*base, *(node.module.split(".") if node.module else [])])
            names.add(origin)
            names.update(f"{origin}.{alias.name}" for alias in node.names)
    return names


def _offenders(layer: str, above: tuple[str, ...]) -> dict[str, list[str]]:
    """The modules under ``layer`` importing from a package in ``above``."""
    found = {}
    for module, tree in _modules().items():
        if not module.startswith(f"{layer}/"):
            continue
        bad = sorted(
            name
            for name in _absolute_imports(module, tree)
            if any(name == pkg or name.startswith(f"{pkg}.") for pkg in above)
        )
        if bad:
            found[module] = bad
    return found


def test_the_import_resolver_sees_relative_and_absolute_imports() -> None:
    tree = ast.parse("from ..module.types import Container\nfrom . import seccomp\nimport contd_trio.zbus\n")
    assert _absolute_imports("containerd/spec.py", tree) == {
        "contd_trio.module.types",
        "contd_trio.module.types.Container",
        "contd_trio.containerd",
        "contd_trio.containerd.seccomp",
        "contd_trio.zbus",
    }
    assert "contd_trio.module" in _absolute_imports("containerd/x.py", ast.parse("from .. import module"))


def test_containerd_knows_nothing_of_the_module_or_the_bus() -> None:
    assert _offenders("containerd", ("contd_trio.module", "contd_trio.zbus")) == {}


def test_zbus_knows_nothing_of_the_module_or_containerd() -> None:
    assert _offenders("zbus", ("contd_trio.module", "contd_trio.containerd")) == {}


def test_the_programs_that_only_use_the_bus_load_no_asyncio_library() -> None:
    """contdctl, the REPL and the zbus demo run on plain Trio: importing
    grpclib (through the module layer) and asyncio cost contdctl's every
    start about a fifth of a second."""
    script = (
        "import sys\n"
        "import contd_trio.ctl, contd_trio.repl, contd_trio.zbus.demo\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(FOREIGN_RUNTIMES)!r}))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"
