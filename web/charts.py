"""``/charts`` and ``/snapshots``: cached chart images, plotly figures and text snapshots.

``install(app, store=..., config=...)`` puts a ``Renderer`` (its worker pools started and
stopped with the app) on any aiohttp app: the all-in-one web app, or a render-only app for a
separate render role behind the same URL paths. ``web.routes.setup_render`` routes the URLs to
``chart`` and ``snapshot`` (the whole URL map is there; ``web.app`` calls both).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator, Mapping

from aiohttp import web
from multidict import MultiMapping

from render.cache import SizedLRU
from render.pool import Busy, RenderFailed, RenderTimeout, WorkerDied
from render.service import NoData, RenderConfig, Rendered, Renderer
from render.spec import FRESH_MS, Spec, SpecError, parse_chart, parse_snapshot
from stream.contract import Store
from web.api import guard_symbol, json_response
from web.errors import BadRequest
from web.keys import RENDERER

log = logging.getLogger(__name__)


def install(app: web.Application, *, store: Store, config: RenderConfig) -> None:
    """Give ``app`` the renderer the chart and snapshot handlers use, started and stopped with it
    (``web.routes.setup_render`` routes to them)."""

    async def renderer_ctx(app: web.Application) -> AsyncIterator[None]:
        renderer = app[RENDERER] = Renderer(store, config=config)
        await renderer.start()
        yield
        await renderer.close()

    app[PARSED] = ParsedUrls()
    app.cleanup_ctx.append(renderer_ctx)


async def chart(request: web.Request) -> web.Response:
    spec, key = _spec(request, parse_chart)
    guard_symbol(request, spec.symbol)
    return await _serve(request, spec, key)


async def snapshot(request: web.Request) -> web.Response:
    spec, key = _spec(request, parse_snapshot)
    guard_symbol(request, spec.symbol)
    return await _serve(request, spec, key)


Parser = Callable[[str, str, Mapping[str, str]], Spec]
#: A request's URL parts: parser, symbol, format and the (decoded) query string.
UrlKey = tuple[str, str, str, str]


class ParsedUrls(SizedLRU[UrlKey, Spec]):
    """The specs of chart and snapshot URLs already answered from data, by their URL parts.

    Clients repeat a few URLs constantly; a hit skips parsing the query. Only a URL that was
    valid, named a symbol with prices and carried nothing but the parameters its parser reads
    (each once) is kept, and only if its query string is at most ``max_query_chars``: a bad
    request (400), an unknown symbol (404), a private one refused (401) or a junk parameter is
    parsed again each time and never stored. Bounded by ``max_entries`` and by ``max_bytes``,
    the estimated memory of the entries; the least recently used go first.
    """

    #: what one entry costs besides its strings: the key tuple, the spec, the map's slot
    #: (tracemalloc: 450 bytes an entry in all for URLs like ``range=1d&w=640&h=300``)
    ENTRY_BYTES = 400

    def __init__(
        self,
        *,
        max_entries: int = 4_096,
        max_bytes: int = 2 * 1024 * 1024,
        max_query_chars: int = 256,
    ) -> None:
        super().__init__(max_bytes, _entry_bytes, max_items=max_entries)
        self.max_query_chars = max_query_chars

    @property
    def bytes(self) -> int:
        return self.total

    def put(self, key: UrlKey, spec: Spec) -> None:
        if len(key[3]) <= self.max_query_chars:
            super().put(key, spec)


def _entry_bytes(key: UrlKey, _spec: Spec) -> int:
    return ParsedUrls.ENTRY_BYTES + sum(len(part) for part in key)


PARSED: web.AppKey[ParsedUrls] = web.AppKey("parsed_urls", ParsedUrls)


class _Reads(Mapping[str, str]):
    """A request's query that notes which names the parser looked up."""

    def __init__(self, query: MultiMapping[str]) -> None:
        self.query = query
        self.read: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.read.add(name)
        return self.query[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.query)

    def __len__(self) -> int:
        return len(set(self.query))

    def only_what_was_read(self) -> bool:
        """Every parameter is one the parser read, and none is repeated."""
        names = set(self.query)  # each name once; len(query) counts every pair
        return len(names) == len(self.query) and self.read.issuperset(names)


def _spec(request: web.Request, parse: Parser) -> tuple[Spec, UrlKey | None]:
    """The request's spec, and the key to keep it under once it is answered from data (None:
    never). The same URL is parsed once (clients repeat a few URLs constantly)."""
    info = request.match_info
    key = (parse.__name__, info["symbol"], info["fmt"], request.query_string)
    spec = request.app[PARSED].get(key)
    if spec is not None:
        return spec, None
    query = _Reads(request.query)
    try:
        spec = parse(info["symbol"], info["fmt"], query)
    except SpecError as exc:
        raise BadRequest("bad_request", str(exc)) from exc
    return spec, key if query.only_what_was_read() else None


async def _serve(request: web.Request, spec: Spec, key: UrlKey | None) -> web.Response:
    """``key``: where to keep ``spec`` once the symbol is known to have prices."""
    renderer = request.app[RENDERER]
    try:
        version, cached = await renderer.prepare(spec)
        if key is not None:
            request.app[PARSED].put(key, spec)
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
