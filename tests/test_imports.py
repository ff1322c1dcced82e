"""The package's import graph: every module imports, no cycles, dependencies point inward.

The graph is read from the source (module-level imports; ``TYPE_CHECKING`` blocks and
imports inside functions are not edges), so a cycle is found whatever order modules
happen to be imported in.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import memshift

ROOT = Path(memshift.__file__).parent
NO_AIOHTTP = ("memshift.config", "memshift.compare", "memshift.control", "memshift.errors")


def _module_of(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_of(p): p for p in sorted(ROOT.rglob("*.py"))}


def _top_level(tree: ast.Module, typing: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports made at module level (not in functions); those for type checkers only
    (under ``TYPE_CHECKING``) with ``typing``."""
    stack: list[ast.stmt] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            if typing or "TYPE_CHECKING" not in ast.unparse(node.test):
                stack += [*node.body, *node.orelse]
        elif isinstance(node, ast.Try):
            stack += [*node.body, *node.orelse, *node.finalbody]
            for handler in node.handlers:
                stack += handler.body


def _imports(module: str, typing: bool = False) -> set[str]:
    """What ``module`` imports at load time (and for type checkers, with ``typing``)."""
    tree = ast.parse(MODULES[module].read_text())
    found: set[str] = set()
    for node in _top_level(tree, typing):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
            continue
        base = node.module or ""
        if node.level:  # relative import
            base = ".".join(module.split(".")[: -node.level] + ([base] if base else []))
        for alias in node.names:
            full = f"{base}.{alias.name}"
            found.add(full if full in MODULES else base)
    return found


GRAPH = {name: {i for i in _imports(name) if i in MODULES and i != name} for name in MODULES}
# The design's dependencies: what a module needs to run or to be type-checked.
DESIGN = {
    name: {i for i in _imports(name, typing=True) if i in MODULES and i != name} for name in MODULES
}


def _closure(start: str, graph: dict[str, set[str]] = GRAPH) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        for nxt in graph.get(name, ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_every_module_imports() -> None:
    """One fresh interpreter imports every module (the entry point of ``-m`` aside)."""
    names = sorted(n for n in MODULES if n != "memshift.__main__")
    code = "import importlib, sys\nfor n in sys.argv[1:]: importlib.import_module(n)"
    done = subprocess.run(
        [sys.executable, "-c", code, *names], capture_output=True, text=True, timeout=120
    )
    assert 0 == done.returncode, done.stderr


def test_there_is_no_import_cycle() -> None:
    """No module reaches itself through what it imports, type checkers' imports included."""
    cycles = sorted(name for name in DESIGN if name in _closure(name, DESIGN))
    assert [] == cycles


def test_inner_parts_stay_off_aiohttp() -> None:
    """config, compare, control and errors never pull in aiohttp, even indirectly."""
    for name in MODULES:
        if name.startswith(NO_AIOHTTP):
            reached = {name, *_closure(name)}
            third = {i.split(".")[0] for m in reached for i in _imports(m)}
            assert "aiohttp" not in third, name


def test_the_shadow_helper_imports_no_part_of_the_proxy() -> None:
    """The idle-priority helper needs the stores, the id map and the comparison: no more."""
    reached = _closure("memshift.shadow.helper")
    assert [] == sorted(m for m in reached if m.startswith(("memshift.proxy", "memshift.store")))
    assert len(reached) <= 30, sorted(reached)
