"""The live chart page and its assets, served from the package (plotly.js from plotly's own)."""

from __future__ import annotations

from pathlib import Path

import plotly
from aiohttp import web

STATIC = Path(__file__).parent / "static"
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
ASSETS = {"app.js", "style.css"}

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; font-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(
        STATIC / "index.html", headers={**_HEADERS, "Cache-Control": "no-cache"}
    )


async def plotly_js(request: web.Request) -> web.FileResponse:
    return web.FileResponse(
        PLOTLY_JS,
        headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )


async def asset(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    if name not in ASSETS:
        raise web.HTTPNotFound(text=f"no asset {name[:40]!r}")
    return web.FileResponse(
        STATIC / name, headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    )
