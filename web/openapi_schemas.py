"""The OpenAPI components: the JSON schemas of the API's bodies and its security schemes.

``ref(name)`` points at one of ``SCHEMAS``; ``web.openapi_paths`` uses it for the answers of the
operations. The bounds come from the constants the handlers check against.
"""

from __future__ import annotations

from typing import Any

from stream.contract import RESOLUTIONS
from web.api import MAX_CANDLES, MAX_DEADLETTERS

Schema = dict[str, Any]  # JSON, nested to any depth

SECURITY_SCHEMES = {
    "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "Bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT (HS256)"},
}
SYMBOL_PATTERN = "^[A-Z0-9]{2,12}(-[A-Z0-9]{2,12})+$"


def ref(name: str) -> Schema:
    """A reference to ``SCHEMAS[name]``."""
    return {"$ref": f"#/components/schemas/{name}"}


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
            "candles": {"type": "array", "items": ref("Candle"), "maxItems": MAX_CANDLES},
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
                "items": ref("DeadLetter"),
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
