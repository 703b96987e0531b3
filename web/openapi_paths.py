"""The OpenAPI paths: every HTTP operation with its parameters and answers.

Built from the same constants the handlers check against (resolutions, limits, chart formats,
ranges and sizes), so the document cannot promise what a handler refuses. ``path_items()``
builds them afresh each time: ``web.openapi_links`` adds links to the copy it is given. The event
stream ``/api/v1/stream`` is described (its parameters and errors), though its events are
documented in README: they are the websocket's messages.
"""

from __future__ import annotations

from collections.abc import Iterable

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
from web.api import MAX_CANDLES, MAX_DEADLETTERS, MAX_FILTER_CHARS
from web.live import MAX_HZ_LIMIT
from web.openapi_schemas import SYMBOL_PATTERN, Schema, ref

MAX_TIME_MS = 2**53


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> Schema:
    return _json(ref("Error"), description)


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


def path_items() -> dict[str, Schema]:
    """Every documented URL template and its operations, built afresh."""
    health = _json(ref("Health"), "Healthy")
    return {
        "/api/v1/symbols": {
            "get": {
                "operationId": "listSymbols",
                "summary": "Every symbol with its latest quote",
                "responses": {
                    "200": _json({"type": "array", "items": ref("Quote")}, "Quotes"),
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
                    "200": _json(ref("Quote"), "The quote"),
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
                    "200": _json(ref("Candles"), "The candles"),
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
                    "200": _json(ref("DeadLetters"), "A page of dead letters"),
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
                        "content": {"text/event-stream": {"schema": ref("Event")}},
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
                    "200": _json({"type": "array", "items": ref("Vendor")}, "Vendors"),
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
                "responses": {"200": health, "503": _json(ref("Health"), "Not ready")},
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
