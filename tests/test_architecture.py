"""The folders show the architecture, and the imports keep to it.

Arrows point one way: generator -> core, orchestrate -> core and report, report -> core; the
generator and the orchestrator never import each other (the orchestrator starts Locust with a
run spec file); the stand-in and the exporter import at most ``tfsload.core`` (and the
package's version). Checked on the source's import statements, lazy ones included.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("tfsload", "standin", "model_export")

# part -> the parts it may import (itself always allowed)
ALLOWED = {
    "tfsload.core": {"tfsload"},
    "tfsload.generator": {"tfsload.core", "tfsload"},
    "tfsload.orchestrate": {"tfsload.core", "tfsload.report", "tfsload"},
    "tfsload.report": {"tfsload.core", "tfsload"},
    "tfsload.cli": {"tfsload.core", "tfsload.orchestrate", "tfsload.report", "tfsload"},
    "tfsload.locustfile": {"tfsload.generator"},
    "tfsload": {"tfsload.cli"},
    "standin": {"tfsload.core", "tfsload"},
    "model_export": {"tfsload.core"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def part_of(module: str) -> str:
    """The architectural part a module belongs to: the longest ALLOWED key it starts with."""
    matches = [p for p in ALLOWED if module == p or module.startswith(p + ".")]
    return max(matches, key=len)


def imports_of(path: Path) -> set[str]:
    """Every project module ``path`` imports (``from x import y`` may name a module y)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def source_files() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (REPO / package).rglob("*.py"))


def known_modules() -> set[str]:
    return {module_name(p) for p in source_files()}


@cache
def graph() -> dict[str, set[str]]:
    modules = known_modules()
    result = {}
    for path in source_files():
        # keep names that are modules (``from tfsload.core import protos`` -> tfsload.core.protos)
        result[module_name(path)] = {name for name in imports_of(path) if name in modules}
    return result


def test_every_module_belongs_to_a_known_part():
    for module in known_modules():
        assert part_of(module), module


@pytest.mark.parametrize("module", sorted(graph()))
def test_imports_point_one_way(module):
    own = part_of(module)
    for imported in graph()[module]:
        target = part_of(imported)
        assert target == own or target in ALLOWED[own], f"{module} imports {imported}"


def test_no_import_cycles_between_modules():
    edges = graph()
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycle = [*path[path.index(module) :], module]
            # A package's __init__ importing its own submodules is not a cycle of the design.
            if not all(m == cycle[0] or m.startswith(cycle[0] + ".") for m in cycle):
                raise AssertionError(" -> ".join(cycle))
            return
        if module in done:
            return
        for imported in sorted(edges.get(module, ())):
            visit(imported, [*path, module])
        done.add(module)

    for module in sorted(edges):
        visit(module, [])


def test_the_checker_sees_a_forbidden_import(tmp_path):
    """The rule above would catch a generator module importing the runner."""
    bad = tmp_path / "bad.py"
    bad.write_text("from tfsload.orchestrate import runner\n")
    imported = imports_of(bad)
    assert "tfsload.orchestrate.runner" in imported
    assert part_of("tfsload.orchestrate.runner") not in ALLOWED["tfsload.generator"]
