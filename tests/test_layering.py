"""The layering rules of docs/architecture.md, checked on the source.

- A package imports another package's public ``__init__`` only, never its private ``_module``
  (``from forkpath.store._base import ...`` outside ``store/`` is refused).
- The packages do not import each other in a circle (the import graph between them is acyclic),
  except through imports inside functions that break a cycle on purpose (none today).
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {
    "forkpath.flows": ROOT / "flows",
    "forkpath.strategies": ROOT / "strategies",
    "forkpath.routers": ROOT / "routers",
    "forkpath.verifiers": ROOT / "verifiers",
    "forkpath.store": ROOT / "store",
    "forkpath.models": ROOT / "forkpath" / "models",
    "forkpath.batch": ROOT / "forkpath" / "batch",
    "forkpath.sweep": ROOT / "forkpath" / "sweep",
    "forkpath.server": ROOT / "forkpath" / "server",
    "forkpath.tools": ROOT / "forkpath" / "tools",
    "forkpath._cli": ROOT / "forkpath" / "_cli",
}
CORE = ROOT / "forkpath"


def _package_of(path: Path) -> str:
    for name, folder in PACKAGES.items():
        if folder in path.parents:
            return name
    return "forkpath"  # a core module


def _imports(path: Path) -> list[tuple[int, str, bool]]:
    """(line, imported module, at module level) of every absolute forkpath import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found += [(node.lineno, n, id(node) in top) for n in names if n.split(".")[0] == "forkpath"]
    return found


def _sources() -> list[Path]:
    files = [p for folder in PACKAGES.values() for p in folder.rglob("*.py")]
    files += [p for p in CORE.glob("*.py")]
    return sorted(set(files))


def _target_package(module: str) -> str | None:
    for name in PACKAGES:
        if module == name or module.startswith(name + "."):
            return name
    return None


def test_no_package_imports_another_packages_private_modules() -> None:
    offences = []
    for path in _sources():
        own = _package_of(path)
        for line, module, _ in _imports(path):
            target = _target_package(module)
            if target is None or target == own:
                continue
            rest = module[len(target) :].lstrip(".")
            if rest.startswith("_"):
                offences.append(f"{path.relative_to(ROOT)}:{line}: {module}")
    assert offences == []


def test_packages_do_not_import_each_other_in_a_circle() -> None:
    graph: nx.DiGraph = nx.DiGraph()
    for path in _sources():
        own = _package_of(path)
        for _, module, top_level in _imports(path):
            target = _target_package(module) or "forkpath"
            if target != own and top_level:
                graph.add_edge(own, target)
    cycles = [c for c in nx.simple_cycles(graph) if "forkpath" not in c]
    assert cycles == []
