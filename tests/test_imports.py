"""The import graph of the project's modules: no cycles, and each part imports only what
ARCHITECTURE.md allows.

Read with ``ast`` from the source (nothing is imported): the imports at module level, including
those under a module-level ``if`` or ``try``. An import inside a function runs late, on purpose,
and is left out.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: part -> the other parts it may import (ARCHITECTURE.md, "who may import whom")
MAY_IMPORT = {
    "stream": set(),
    "ingest": {"stream"},
    "render": {"stream"},
    "web": {"stream", "render"},
    "pricestream": {"stream", "ingest", "render", "web"},
}


def modules() -> dict[str, Path]:
    """Every module of the parts, by dotted name (a package by its own name)."""
    out = {}
    for part in MAY_IMPORT:
        for path in (ROOT / part).rglob("*.py"):
            names = path.relative_to(ROOT).with_suffix("").parts
            if names[-1] == "__init__":
                names = names[:-1]
            out[".".join(names)] = path
    return out


def _module_level_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If | ast.Try):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import | ast.ImportFrom):
                    yield inner


def imports(name: str, path: Path, known: Mapping[str, Path]) -> set[str]:
    """The project's modules that ``name`` imports at module level."""

    def owner(dotted: str) -> str | None:  # the module itself, else its nearest package
        while dotted and dotted not in known:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in _module_level_imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {owner(alias.name) for alias in node.names}
            continue
        base = node.module or ""
        if node.level:  # relative: from the package, up level - 1
            parts = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*parts, *([node.module] if node.module else [])])
        for alias in node.names:  # `from web import routes` imports the module web.routes
            sub = f"{base}.{alias.name}"
            found.add(sub if sub in known else owner(base))
    return {m for m in found if m is not None and m != name}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def cycles(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(edges[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while (top := stack.pop()) != node:
                component.append(top)
            if component:
                found.append(sorted([node, *component]))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle_and_only_it() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(edges) == [["a", "b", "c"]]


def test_the_graph_sees_from_imports_of_modules_and_of_names() -> None:
    edges = graph()
    assert "web.routes" in edges["web.app"]  # from web import charts, metrics, middleware, routes
    assert "stream.contract" in edges["web.app"]  # from stream.contract import UPDATES, ...


def test_no_module_imports_itself_through_others() -> None:
    assert cycles(graph()) == []


def test_each_part_imports_only_the_parts_below_it() -> None:
    wrong = [
        f"{name} imports {other}"
        for name, others in graph().items()
        for other in others
        if (mine := name.split(".")[0]) != (theirs := other.split(".")[0])
        and theirs not in MAY_IMPORT[mine]
    ]
    assert wrong == []


def test_only_the_app_factory_imports_the_url_map() -> None:
    importers = {name for name, others in graph().items() if "web.routes" in others}
    assert importers == {"web.app"}
