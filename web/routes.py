"""The whole URL map in one place: which handler answers which path, for each kind of app.

Only the app factory (``web.app``) imports this module; the handlers' modules never do, so the
map depends on the handlers and not the other way round.
"""

from __future__ import annotations

from aiohttp import web

from web import api, charts, metrics, openapi, page, sse


def setup(app: web.Application) -> None:
    app.router.add_get("/", page.index)
    app.router.add_get("/static/plotly.min.js", page.plotly_js)
    app.router.add_get("/static/{name}", page.asset)
    app.router.add_get("/healthz", api.healthz)
    app.router.add_get("/readyz", api.readyz)
    app.router.add_get("/ws", api.websocket)
    app.router.add_get("/api/v1/symbols", api.symbols)
    app.router.add_get("/api/v1/symbols/{symbol}/latest", api.latest)
    app.router.add_get("/api/v1/symbols/{symbol}/candles", api.candles)
    app.router.add_get("/api/v1/deadletters", api.deadletters)
    app.router.add_get("/api/v1/vendors", api.vendors)
    app.router.add_get("/api/v1/stream", sse.stream)
    app.router.add_get("/metrics", metrics.serve)
    app.router.add_get("/openapi.json", openapi.serve)


def setup_health(app: web.Application) -> None:
    """A process without the web role answers health checks and ``/metrics`` only."""
    app.router.add_get("/healthz", api.healthz)
    app.router.add_get("/readyz", api.role_readyz)
    app.router.add_get("/metrics", metrics.serve)


def setup_render(app: web.Application) -> None:
    """The render role's URL map: in the all-in-one app, or alone behind nginx."""
    app.router.add_get("/charts/{symbol}.{fmt}", charts.chart)
    app.router.add_get("/snapshots/{symbol}.{fmt}", charts.snapshot)
