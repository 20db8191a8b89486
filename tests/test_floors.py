"""The floors of DESIGN.md, read from the source: every import goes down (or stays in its own
package), the proxy reaches node code only through the wire contract, and no two files import
each other, directly or round a longer loop (imports for type checking and inside functions
included)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Package -> floor, bottom up. A package imports only from lower floors (and from itself).
FLOORS = {
    "ground": 1,  # logging, metrics, request ids, settings from the environment, shared types
    "wire": 2,  # the Zaqar wire contract: errors, limits, validation, headers, parameters
    "node": 3,
    "catalog": 3,
    "proxy": 4,
    "migrate": 4,
    "marconi": 5,  # the CLI: imports anything, imported by nothing
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_modules() -> dict[str, Path]:
    found = {}
    for package in FLOORS:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


def imported(path: Path, name: str, known: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """(module, line) for every project module that the file imports, anywhere in it."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            for alias in node.names:
                # `from package import module` imports the module itself.
                sub = f"{target}.{alias.name}"
                yield (sub if sub in known else target), node.lineno


def graph() -> dict[str, dict[str, int]]:
    known = source_modules()
    edges: dict[str, dict[str, int]] = {}
    for name, path in known.items():
        targets = edges.setdefault(name, {})
        for target, line in imported(path, name, known):
            if target.split(".")[0] in FLOORS and target != name:
                targets.setdefault(target, line)
    return edges


def floor_breaches(edges: dict[str, dict[str, int]]) -> list[str]:
    breaches = []
    for source, targets in edges.items():
        mine = source.split(".")[0]
        for target, line in targets.items():
            theirs = target.split(".")[0]
            if mine == theirs:
                continue
            if FLOORS[theirs] >= FLOORS[mine]:
                breaches.append(f"{source}:{line} imports {target} (floor {FLOORS[theirs]})")
            elif mine == "proxy" and theirs == "node":
                breaches.append(f"{source}:{line} imports {target}: the proxy uses only wire")
    return breaches


def cycles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """Every strongly connected set of modules larger than one (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, {}):
            if w not in edges:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_every_import_goes_down_a_floor() -> None:
    assert floor_breaches(graph()) == []


def test_no_files_import_each_other() -> None:
    assert cycles(graph()) == []


def test_every_package_has_a_floor() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench"}
    assert packages == set(FLOORS)


@pytest.mark.parametrize(
    ("edges", "breach"),
    [
        ({"wire.errors": {"node.errors": 3}}, "wire.errors:3 imports node.errors (floor 3)"),
        ({"proxy.app": {"node.api.app": 7}}, "proxy.app:7 imports node.api.app: the proxy"),
        ({"node.api": {"catalog.keys": 1}}, "node.api:1 imports catalog.keys (floor 3)"),
        ({"catalog.cache": {"marconi.cli": 2}}, "catalog.cache:2 imports marconi.cli (floor 5)"),
    ],
)
def test_the_checks_catch_what_they_are_for(edges: dict[str, dict[str, int]], breach: str) -> None:
    assert [b for b in floor_breaches(edges) if b.startswith(breach)]


def test_a_loop_of_three_files_is_a_cycle() -> None:
    loop = {"a.x": {"a.y": 1}, "a.y": {"a.z": 1}, "a.z": {"a.x": 1}, "a.w": {"a.x": 1}}
    assert cycles(loop) == [["a.x", "a.y", "a.z"]]
