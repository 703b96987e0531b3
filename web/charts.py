"""``/charts`` and ``/snapshots``: cached chart images, plotly figures and text snapshots.

``install(app, store=..., config=...)`` puts a ``Renderer`` (its worker pools started and
stopped with the app) and these routes on any aiohttp app: the all-in-one web app, or a
render-only app for a separate render role behind the same URL paths.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping

from aiohttp import web

from render.pool import Busy, RenderFailed, RenderTimeout, WorkerDied
from render.service import NoData, RenderConfig, Rendered, Renderer
from render.spec import FRESH_MS, Spec, SpecError, parse_chart, parse_snapshot
from stream.contract import Store
from web import routes
from web.api import BadRequest, guard_symbol, json_response
from web.keys import RENDERER

log = logging.getLogger(__name__)


def install(app: web.Application, *, store: Store, config: RenderConfig) -> None:
    """Add the renderer and the chart and snapshot routes to ``app``."""

    async def renderer_ctx(app: web.Application) -> AsyncIterator[None]:
        renderer = app[RENDERER] = Renderer(store, config=config)
        await renderer.start()
        yield
        await renderer.close()

    app.cleanup_ctx.append(renderer_ctx)
    routes.setup_render(app)


async def chart(request: web.Request) -> web.Response:
    spec = _spec(request, parse_chart)
    guard_symbol(request, spec.symbol)
    return await _serve(request, spec)


async def snapshot(request: web.Request) -> web.Response:
    spec = _spec(request, parse_snapshot)
    guard_symbol(request, spec.symbol)
    return await _serve(request, spec)


Parser = Callable[[str, str, Mapping[str, str]], Spec]


def _spec(request: web.Request, parse: Parser) -> Spec:
    """The request's spec; the same URL is parsed once (clients repeat a few URLs constantly)."""
    info = request.match_info
    parsed = request.app[RENDERER].parsed
    key = (parse.__name__, info["symbol"], info["fmt"], request.query_string)
    spec = parsed.get(key)
    if spec is None:
        try:
            spec = parse(info["symbol"], info["fmt"], request.query)
        except SpecError as exc:
            raise BadRequest(str(exc)) from exc
        parsed.put(key, spec)
    return spec


async def _serve(request: web.Request, spec: Spec) -> web.Response:
    renderer = request.app[RENDERER]
    try:
        version, cached = await renderer.prepare(spec)
        if version.etag in request.headers.get("If-None-Match", ""):
            max_age = f"public, max-age={FRESH_MS[spec.range] // 1000}"
            headers = {"ETag": version.etag, "Cache-Control": max_age}
            return web.Response(status=304, headers=headers)
        rendered = cached or await renderer.render(spec, version)
    except NoData as exc:
        raise web.HTTPNotFound(text=str(exc)) from exc
    except Busy as exc:
        return json_response(
            {"error": {"status": 503, "message": str(exc)}},
            status=503,
            headers={"Retry-After": str(exc.retry_after_s)},
        )
    except RenderTimeout as exc:
        return json_response({"error": {"status": 504, "message": str(exc)}}, status=504)
    except WorkerDied as exc:
        return json_response(
            {"error": {"status": 503, "message": f"render failed: {exc}"}},
            status=503,
            headers={"Retry-After": "1"},
        )
    except RenderFailed as exc:
        log.error("render of %s failed: %s", spec.key, exc)
        return json_response({"error": {"status": 500, "message": str(exc)}}, status=500)
    return _response(rendered)


def _response(rendered: Rendered) -> web.Response:
    return web.Response(
        body=rendered.body,
        headers={
            "Content-Type": rendered.content_type,
            "ETag": rendered.etag,
            "Cache-Control": f"public, max-age={rendered.max_age_s}",
        },
    )
