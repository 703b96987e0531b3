"""OpenAPI links: which values of an answer feed which next call.

Every operation has an ``operationId``, and the answers that feed another call say so in OpenAPI
``links`` (``LINKS``): a listed quote's ``symbol`` leads to its latest quote, candles, chart,
snapshot and stream; a page of candles to the page before it; a page of dead letters' ``next``
to the next page (same filters); a vendor's ``name`` to its dead letters. Clients may follow
them, and schemathesis' stateful phase chains calls along them. A link into a list takes its
first item (``$response.body#/0/symbol``). ``add_links`` keeps only the links whose target the
document describes (a render-only process has charts but no quotes).
"""

from __future__ import annotations

from web.openapi_schemas import Schema


def _link(operation_id: str, description: str, **parameters: str) -> Schema:
    """An OpenAPI link: call ``operation_id`` with ``parameters`` (runtime expressions)."""
    return {"operationId": operation_id, "description": description, "parameters": parameters}


def _symbol_links(symbol: str, *operation_ids: str) -> dict[str, Schema]:
    """Links passing ``symbol`` (a runtime expression) to each of ``operation_ids`` and to the
    stream of its ticks."""
    links = {op: _link(op, "The same symbol", symbol=symbol) for op in operation_ids}
    links["streamEvents"] = _link("streamEvents", "Its live ticks", channels=f"ticks:{{{symbol}}}")
    return links


FIRST_SYMBOL = "$response.body#/0/symbol"  # of a list of quotes: its first
SYMBOL = "$response.body#/symbol"  # of a quote, or of a page of candles
RENDERED = ("getChart", "getSnapshot")

#: operationId -> the links of its 200 answer, by name.
LINKS: dict[str, dict[str, Schema]] = {
    "listSymbols": _symbol_links(FIRST_SYMBOL, "getLatest", "getCandles", *RENDERED),
    "getLatest": _symbol_links(SYMBOL, "getCandles", *RENDERED),
    "getCandles": {
        "olderCandles": _link(
            "getCandles",
            "The page before: same symbol, resolution and limit, ending where this one starts",
            symbol=SYMBOL,
            res="$response.body#/res",
            limit="$request.query.limit",
            end_ms="$response.body#/candles/0/start_ms",
        ),
        "getLatest": _link("getLatest", "The same symbol", symbol=SYMBOL),
    },
    "listDeadLetters": {
        "nextPage": _link(
            "listDeadLetters",
            "The next (older) page with the same filters; there is none after the last",
            before="$response.body#/next",
            **{name: f"$request.query.{name}" for name in ("limit", "vendor", "source", "reason")},
        ),
        "sameSource": _link(
            "listDeadLetters",
            "Those from the source of this page's first",
            source="$response.body#/letters/0/source",
        ),
    },
    "listVendors": {
        "vendorDeadLetters": _link(
            "listDeadLetters", "What the first vendor rejected", vendor="$response.body#/0/name"
        ),
    },
}


def add_links(paths: dict[str, Schema]) -> None:
    """Put on the 200 answers of ``paths``' operations (built afresh by ``path_items``) their
    ``LINKS`` to operations of ``paths``."""
    operations = [op for item in paths.values() for op in item.values()]
    described = {op["operationId"] for op in operations}
    for op in operations:
        links = {
            name: link
            for name, link in LINKS.get(op["operationId"], {}).items()
            if link["operationId"] in described
        }
        if links:
            op["responses"]["200"]["links"] = links
