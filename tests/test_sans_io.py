"""The pure cores stay pure: the modules that ARCHITECTURE.md calls sans-I/O import nothing that
does I/O, waits or reads a clock, so their rules stay testable as tables (read with ``ast``, as in
``test_imports``: nothing is imported)."""

from __future__ import annotations

import ast

from tests.test_imports import ROOT, _module_level_imports

#: the cores that take time and bytes as arguments and return what to do
PURE = [
    "stream/windows.py",
    "ingest/composite.py",
    "ingest/validate.py",
    "ingest/vendors/base.py",
    "render/reduce.py",
    "render/axes.py",
    "web/live/protocol.py",
    "web/live/outbox.py",
    "web/live/frames.py",
]
#: what does I/O, waits or reads the time, among what the project uses
IMPURE = {
    "aiohttp", "aiokafka", "asyncio", "http", "logging", "os", "pymongo",
    "socket", "sqlite3", "subprocess", "threading", "time", "urllib.request", "uvloop",
    "websockets", "web.live.client", "web.live.hub", "web.live.websocket", "web.live.guard",
}  # fmt: skip


def imported(path: str) -> set[str]:
    tree = ast.parse((ROOT / path).read_text(), path)
    names = set()
    for node in _module_level_imports(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif node.module is not None:
            names.add(node.module)
    return names


def impure(name: str) -> bool:
    return name in IMPURE or name.split(".")[0] in IMPURE


def test_the_pure_cores_import_no_io() -> None:
    found = {path: sorted(filter(impure, imported(path))) for path in PURE}
    assert {path: names for path, names in found.items() if names} == {}


def test_the_check_sees_an_impure_import() -> None:
    assert sorted(filter(impure, imported("web/live/client.py"))) == ["asyncio", "logging", "time"]
