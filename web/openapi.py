"""``GET /openapi.json``: the OpenAPI 3.0 document of the operations the app really routes.

``document(paths)`` is pure: it puts together the operations (``web.openapi_paths``), the
components (``web.openapi_schemas``) and the links between them (``web.openapi_links``).
``serve`` answers with the paths the app routes (the charts are only there when the render role
is). ``NOT_DOCUMENTED`` lists the routes that are not part of the HTTP API: the live page, its
assets and the websocket (README documents its messages). ``tests/web/test_openapi.py`` keeps
both in step with ``web/routes.py``.
"""

from __future__ import annotations

from collections.abc import Collection

from aiohttp import web

from web.api import json_response
from web.openapi_links import add_links
from web.openapi_paths import path_items
from web.openapi_schemas import SCHEMAS, SECURITY_SCHEMES, Schema

# The live page and its assets are not API; /ws is a websocket, which OpenAPI cannot describe
# (README documents its messages).
NOT_DOCUMENTED = frozenset({"/", "/static/plotly.min.js", "/static/{name}", "/ws"})


def document(paths: Collection[str] | None = None) -> Schema:
    """The OpenAPI document of ``paths`` (every documented path when None)."""
    every = path_items()
    chosen = {p: op for p, op in every.items() if paths is None or p in paths}
    add_links(chosen)
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


def routed_paths(app: web.Application) -> set[str]:
    """The URL templates ``app`` routes, as OpenAPI writes them."""
    out = set()
    for resource in app.router.resources():
        info = resource.get_info()
        out.add(str(info.get("path") or info.get("formatter")))
    return out


async def serve(request: web.Request) -> web.Response:
    return json_response(document(routed_paths(request.app)))
