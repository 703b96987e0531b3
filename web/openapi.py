"""``GET /openapi.json``: the HTTP API described in OpenAPI 3.0, built from the same constants
the handlers check against (resolutions, limits, chart formats, ranges and sizes).

``document(paths)`` is pure. ``serve`` answers with the operations the app really routes (the
charts are only there when the render role is). ``NOT_DOCUMENTED`` lists the routes that are
not part of the HTTP API: the live page, its assets and the websocket (README documents its
messages). ``tests/web/test_openapi.py`` keeps both in step with ``web/routes.py``. The event
stream ``/api/v1/stream`` is described (its parameters and errors), though its events are
documented in README: they are the websocket's messages.

Every operation has an ``operationId``, and the answers that feed another call say so in OpenAPI
``links`` (``LINKS``): a listed quote's ``symbol`` leads to its latest quote, candles, chart,
snapshot and stream; a page of candles to the page before it; a page of dead letters' ``next``
to the next page (same filters); a vendor's ``name`` to its dead letters. Clients may follow
them, and schemathesis' stateful phase chains calls along them. A link into a list takes its
first item (``$response.body#/0/symbol``). ``document`` keeps only the links whose target it
describes (a render-only process has charts but no quotes).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from aiohttp import web

from render.spec import (
    CHART_FORMATS,
    CHART_TYPES,
    CONTENT_TYPES,
    HEIGHT_PX,
    RANGES_MS,
    SNAPSHOT_FORMATS,
    THEMES,
    WIDTH_PX,
)
from stream.contract import RESOLUTIONS
from web.api import MAX_CANDLES, MAX_DEADLETTERS, MAX_FILTER_CHARS, json_response
from web.live import MAX_HZ_LIMIT

# The live page and its assets are not API; /ws is a websocket, which OpenAPI cannot describe
# (README documents its messages).
NOT_DOCUMENTED = frozenset({"/", "/static/plotly.min.js", "/static/{name}", "/ws"})
SECURITY_SCHEMES = {
    "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "Bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT (HS256)"},
}
SYMBOL_PATTERN = "^[A-Z0-9]{2,12}(-[A-Z0-9]{2,12})+$"
MAX_TIME_MS = 2**53

Schema = dict[str, Any]  # JSON, nested to any depth


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


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> Schema:
    return _json(_ref("Error"), description)


def _int(lo: int, hi: int, description: str, default: int | None = None) -> Schema:
    schema: Schema = {"type": "integer", "minimum": lo, "maximum": hi}
    if default is not None:
        schema["default"] = default
    return {"schema": schema, "description": description}


def _query(name: str, spec: Schema) -> Schema:
    return {"name": name, "in": "query", "required": False, **spec}


def _text(description: str, *, pattern: str | None = None) -> Schema:
    schema: Schema = {"type": "string", "minLength": 1, "maxLength": MAX_FILTER_CHARS}
    if pattern is not None:
        schema["pattern"] = pattern
    return {"schema": schema, "description": description}


def _enum(values: Iterable[str], description: str, default: str | None = None) -> Schema:
    schema: Schema = {"type": "string", "enum": list(values)}
    if default is not None:
        schema["default"] = default
    return {"schema": schema, "description": description}


SYMBOL_PARAM: Schema = {
    "name": "symbol",
    "in": "path",
    "required": True,
    "description": "A symbol like XAU-USD",
    "schema": {"type": "string", "pattern": SYMBOL_PATTERN},
    "example": "XAU-USD",
}

LIMITED: dict[str, Schema] = {
    "429": _error("Too many requests from this client; see the Retry-After header")
}

SCHEMAS: dict[str, Schema] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["status", "message"],
                "properties": {"status": {"type": "integer"}, "message": {"type": "string"}},
            }
        },
    },
    "Quote": {
        "type": "object",
        "required": ["symbol", "bid", "ask", "price", "ts_ms", "vendor"],
        "properties": {
            "symbol": {"type": "string", "pattern": SYMBOL_PATTERN},
            "bid": {"type": "number"},
            "ask": {"type": "number"},
            "price": {"type": "number"},
            "ts_ms": {"type": "integer", "description": "The vendor's time, ms since the epoch"},
            "vendor": {"type": "string"},
        },
    },
    "Candle": {
        "type": "object",
        "required": ["start_ms", "open", "high", "low", "close", "ticks", "closed"],
        "properties": {
            "start_ms": {"type": "integer"},
            "open": {"type": "number"},
            "high": {"type": "number"},
            "low": {"type": "number"},
            "close": {"type": "number"},
            "ticks": {"type": "integer", "minimum": 0},
            "closed": {"type": "boolean"},
        },
    },
    "Candles": {
        "type": "object",
        "required": ["symbol", "res", "candles"],
        "properties": {
            "symbol": {"type": "string"},
            "res": {"type": "string", "enum": list(RESOLUTIONS)},
            "candles": {"type": "array", "items": _ref("Candle"), "maxItems": MAX_CANDLES},
        },
    },
    "DeadLetter": {
        "type": "object",
        "required": ["reason", "source", "ts_ms", "raw"],
        "properties": {
            "reason": {"type": "string"},
            "source": {"type": "string"},
            "ts_ms": {"type": "integer"},
            "raw": {"type": "string", "description": "The rejected bytes, as UTF-8"},
        },
    },
    "DeadLetters": {
        "type": "object",
        "required": ["letters", "next"],
        "properties": {
            "letters": {
                "type": "array",
                "items": _ref("DeadLetter"),
                "maxItems": MAX_DEADLETTERS,
                "description": "Newest first (by ts_ms)",
            },
            "next": {
                "type": "string",
                "nullable": True,
                "description": "The before of the next (older) page; null on the last page",
            },
        },
    },
    "Event": {
        "type": "object",
        "description": "One event of /api/v1/stream: data is a websocket message, as JSON",
        "required": ["data"],
        "properties": {
            "data": {"type": "string", "contentMediaType": "application/json"},
            "id": {"type": "string", "description": "The last seq sent per channel"},
            "event": {"type": "string", "enum": ["message"]},
            "retry": {"type": "integer", "minimum": 0},
        },
    },
    "Vendor": {
        "type": "object",
        "required": [
            "name",
            "kind",
            "connected",
            "stale",
            "messages",
            "published",
            "rejects",
            "reporting",
            "status_ms",
        ],
        "properties": {
            "name": {"type": "string"},
            "kind": {"type": "string"},
            "profile": {"type": "string"},
            "connected": {"type": "boolean"},
            "stale": {"type": "boolean"},
            "last_message_age_ms": {"type": "integer", "nullable": True},
            **{
                name: {"type": "integer", "minimum": 0}
                for name in (
                    "messages",
                    "published",
                    "duplicates",
                    "gaps",
                    "missed",
                    "heartbeats",
                    "errors",
                    "reconnects",
                )
            },
            "rejects": {"type": "object", "additionalProperties": {"type": "integer"}},
            "last_error": {"type": "string", "nullable": True},
            "reporting": {"type": "boolean"},
            "status_ms": {"type": "integer"},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "ready", "unavailable"]},
            "reason": {"type": "string"},
            "roles": {"type": "array", "items": {"type": "string"}},
            "time_ms": {"type": "integer"},
        },
    },
}


def _render_params(chart: bool) -> list[Schema]:
    params = [
        _query("range", _enum(RANGES_MS, "The span ending at the newest tick", "1d")),
        _query("res", _enum(RESOLUTIONS, "Candle resolution; the range's own by default")),
    ]
    if chart:
        params += [
            _query("w", _int(*WIDTH_PX, "Width in pixels", 600)),
            _query("h", _int(*HEIGHT_PX, "Height in pixels", 300)),
            _query("type", _enum(CHART_TYPES, "Area or candlestick chart", "area")),
            _query("theme", _enum(THEMES, "Colours", "light")),
        ]
    return params


def _rendered(operation_id: str, formats: Iterable[str], what: str, chart: bool) -> Schema:
    fmts = list(formats)
    content: Schema = {CONTENT_TYPES[f].split(";")[0]: {"schema": {}} for f in fmts}
    return {
        "get": {
            "operationId": operation_id,
            "summary": f"A {what}, cached by request and data version",
            "parameters": [
                SYMBOL_PARAM,
                {
                    "name": "fmt",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "enum": fmts},
                },
                *_render_params(chart),
            ],
            "responses": {
                "200": {
                    "description": f"The {what}",
                    "content": content,
                    "headers": {"ETag": {"schema": {"type": "string"}}},
                },
                "304": {"description": "Not modified since the If-None-Match ETag"},
                "400": _error("A parameter is not allowed; the message says what is"),
                "401": _private_401(),
                "404": _error("No prices for the symbol"),
                "503": _error("The render queue is full; see Retry-After"),
                "504": _error("The render took longer than the timeout"),
                **LIMITED,
            },
        }
    }


def _private_401() -> Schema:
    return _error("A private symbol ([auth] private_symbols) and no valid credentials")


def _paths() -> dict[str, Schema]:
    health = _json(_ref("Health"), "Healthy")
    return {
        "/api/v1/symbols": {
            "get": {
                "operationId": "listSymbols",
                "summary": "Every symbol with its latest quote",
                "responses": {
                    "200": _json({"type": "array", "items": _ref("Quote")}, "Quotes"),
                    **LIMITED,
                },
            }
        },
        "/api/v1/symbols/{symbol}/latest": {
            "get": {
                "operationId": "getLatest",
                "summary": "The latest quote of one symbol",
                "parameters": [SYMBOL_PARAM],
                "responses": {
                    "200": _json(_ref("Quote"), "The quote"),
                    "400": _error("The symbol is malformed"),
                    "401": _private_401(),
                    "404": _error("No prices for the symbol"),
                    **LIMITED,
                },
            }
        },
        "/api/v1/symbols/{symbol}/candles": {
            "get": {
                "operationId": "getCandles",
                "summary": "Candles of one symbol, oldest first",
                "parameters": [
                    SYMBOL_PARAM,
                    _query("res", _enum(RESOLUTIONS, "Candle resolution", "1m")),
                    _query("limit", _int(1, MAX_CANDLES, "The newest this many", 500)),
                    _query("start_ms", _int(0, MAX_TIME_MS, "From this start time, inclusive")),
                    _query("end_ms", _int(0, MAX_TIME_MS, "Before this start time")),
                ],
                "responses": {
                    "200": _json(_ref("Candles"), "The candles"),
                    "400": _error("A parameter is not allowed; the message says what is"),
                    "401": _private_401(),
                    "404": _error("No prices for the symbol"),
                    **LIMITED,
                },
            }
        },
        "/api/v1/deadletters": {
            "get": {
                "operationId": "listDeadLetters",
                "summary": "Rejected messages with their reasons, newest first, a page at a time",
                "security": [{"ApiKey": []}, {"Bearer": []}],
                "parameters": [
                    _query("limit", _int(1, MAX_DEADLETTERS, "At most this many", 100)),
                    _query("before", _text("The next of the page before; none: the newest")),
                    _query("vendor", _text("Only from this vendor: source vendor:NAME")),
                    _query("source", _text("Only from this source, e.g. stream:ticks")),
                    _query(
                        "reason",
                        _text(
                            "Only of this kind: the reason's text before its first ':'"
                            " (crossed quote, unparsable, seq jump, late, ...)",
                            pattern="^[^:]*$",
                        ),
                    ),
                ],
                "responses": {
                    "200": _json(_ref("DeadLetters"), "A page of dead letters"),
                    "400": _error("A parameter is not allowed; the message names it"),
                    "401": _error("Credentials missing or refused; the message says which"),
                    **LIMITED,
                },
            }
        },
        "/api/v1/stream": {
            "get": {
                "operationId": "streamEvents",
                "summary": "Live ticks and candles as Server-Sent Events, until the client leaves",
                "description": "Every event's data is one websocket message (snapshot, "
                "subscribed, update) and its id lists the last seq sent per channel, e.g. "
                "ticks:XAU-USD=1041,candles:XAU-USD:1m=377. A client that reconnects sends it "
                "back (Last-Event-ID, or last_event_id) and resumes from there. Idle streams "
                "get a ': keep-alive' comment line every heartbeat_ms.",
                "parameters": [
                    {
                        "name": "channels",
                        "in": "query",
                        "required": True,
                        "description": "Comma-separated: ticks:SYMBOL and candles:SYMBOL:RES",
                        "schema": {"type": "string", "minLength": 1},
                        "example": "ticks:XAU-USD,candles:XAU-USD:1m",
                    },
                    _query(
                        "max_hz",
                        {
                            "schema": {
                                "type": "number",
                                "minimum": 0,
                                "exclusiveMinimum": True,
                                "maximum": MAX_HZ_LIMIT,
                            },
                            "description": "At most this many updates a second per channel",
                        },
                    ),
                    _query(
                        "last_event_id",
                        {
                            "schema": {"type": "string"},
                            "description": "As the Last-Event-ID header (which wins)",
                        },
                    ),
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "description": "The id of the last event received: resume after it",
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "The event stream (endless); the schema is each event's",
                        "content": {"text/event-stream": {"schema": _ref("Event")}},
                    },
                    "400": _error("channels, max_hz or Last-Event-ID is not allowed; says why"),
                    "401": _error("A private channel and no valid credentials"),
                    "404": _error("No prices for a channel's symbol"),
                    **LIMITED,
                },
            }
        },
        "/api/v1/vendors": {
            "get": {
                "operationId": "listVendors",
                "summary": "Every vendor feed's status",
                "responses": {
                    "200": _json({"type": "array", "items": _ref("Vendor")}, "Vendors"),
                    **LIMITED,
                },
            }
        },
        "/healthz": {
            "get": {"operationId": "healthz", "summary": "Liveness", "responses": {"200": health}}
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Readiness: the store answers and live updates are read",
                "responses": {"200": health, "503": _json(_ref("Health"), "Not ready")},
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "The Prometheus text format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.0"), **LIMITED},
            }
        },
        "/charts/{symbol}.{fmt}": _rendered("getChart", CHART_FORMATS, "chart", True),
        "/snapshots/{symbol}.{fmt}": _rendered(
            "getSnapshot", SNAPSHOT_FORMATS, "text snapshot", False
        ),
    }


def document(paths: Collection[str] | None = None) -> Schema:
    """The OpenAPI document of ``paths`` (every documented path when None)."""
    every = _paths()
    chosen = {p: op for p, op in every.items() if paths is None or p in paths}
    _add_links(chosen)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Pricestream",
            "version": "1",
            "description": "Real-time metals prices: quotes, candles, charts and snapshots. "
            'Errors are JSON: {"error": {"status": N, "message": "..."}}.',
        },
        "paths": chosen,
        "components": {"schemas": SCHEMAS, "securitySchemes": SECURITY_SCHEMES},
    }


def _add_links(paths: dict[str, Schema]) -> None:
    """Put on the 200 answers of ``paths``' operations (which ``_paths`` built afresh) their
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


def routed_paths(app: web.Application) -> set[str]:
    """The URL templates ``app`` routes, as OpenAPI writes them."""
    out = set()
    for resource in app.router.resources():
        info = resource.get_info()
        out.add(str(info.get("path") or info.get("formatter")))
    return out


async def serve(request: web.Request) -> web.Response:
    return json_response(document(routed_paths(request.app)))
