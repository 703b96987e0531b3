"""HTTP API handlers. Every error is JSON: ``{"error": {"status": N, "message": "..."}}``."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping

import orjson
from aiohttp import web

from stream.contract import (
    RESOLUTIONS,
    DeadLetter,
    DecodeError,
    InvalidSymbol,
    Store,
    SymbolState,
    Tick,
    check_symbol,
    now_ms,
    round_price,
)
from web.auth import AuthError, unauthorized
from web.errors import BadRequest
from web.keys import AUTH, HUB, NOT_READY, PRECISION, ROLES, STORE, VENDOR_BOARD
from web.live import newest_candles, serve_client
from web.vendors import vendor_public

MAX_CANDLES = 5_000
MAX_DEADLETTERS = 1_000
#: The longest ``vendor``, ``source``, ``reason`` and ``before`` of ``/api/v1/deadletters``.
MAX_FILTER_CHARS = 200
#: Headers of an HTTP error that its JSON answer keeps (RFC 9110 requires Allow on a 405).
KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(
    data: object, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=headers
    )


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn HTTP errors into JSON bodies that say what is wrong."""
    try:
        return await handler(request)
    except BadRequest as exc:
        return json_response({"error": {"status": 400, "message": exc.message}}, status=400)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        headers = {name: exc.headers[name] for name in KEPT_HEADERS if name in exc.headers}
        if isinstance(exc, web.HTTPMethodNotAllowed):
            allowed = ", ".join(sorted(exc.allowed_methods))
            message = f"method {exc.method[:20]} is not allowed here; use {allowed}"
        return json_response(
            {"error": {"status": exc.status, "message": message}},
            status=exc.status,
            headers=headers,
        )


def _quote(tick: Tick, decimals: int) -> dict[str, object]:
    return {
        "symbol": tick.symbol,
        "bid": round_price(tick.bid, decimals),
        "ask": round_price(tick.ask, decimals),
        "price": round_price(tick.price, decimals),
        "ts_ms": tick.ts_ms,
        "vendor": tick.vendor,
    }


def _symbol(request: web.Request) -> str:
    try:
        return check_symbol(request.match_info["symbol"])
    except InvalidSymbol as exc:
        raise BadRequest("bad_request", str(exc)) from exc


def _int_param(
    request: web.Request, name: str, default: int | None, lo: int, hi: int
) -> int | None:
    raw = request.query.get(name)
    if raw is None:  # an empty value is refused below: it is not a number
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest("bad_request", f"{name} must be an integer, got {raw[:30]!r}") from None
    if not lo <= value <= hi:
        raise BadRequest("bad_request", f"{name} must be between {lo} and {hi}, got {value}")
    return value


async def _latest(request: web.Request, symbol: str) -> Tick | None:
    tick = request.app[HUB].latest.get(symbol)
    if tick is not None:
        return tick
    state = await request.app[STORE].state(symbol)
    return state.latest if state else None


async def symbols(request: web.Request) -> web.Response:
    states: list[SymbolState] = await request.app[STORE].states()
    fresh = request.app[HUB].latest
    ticks = {s.symbol: s.latest for s in states if s.latest is not None}
    ticks.update(fresh)
    auth = request.app[AUTH]
    if auth.config.private_symbols and not _has_credentials(request):
        ticks = {name: t for name, t in ticks.items() if not auth.is_private(name)}
    places = request.app[PRECISION].of
    return json_response([_quote(ticks[name], places(name)) for name in sorted(ticks)])


def guard_symbol(request: web.Request, symbol: str) -> None:
    """A private symbol's data needs credentials (401), wherever it is served."""
    auth = request.app.get(AUTH)
    if auth is not None and auth.is_private(symbol):
        require_credentials(request)


def _has_credentials(request: web.Request) -> bool:
    try:
        return request.app[AUTH].from_headers(request.headers, now_s=time.time()) is not None
    except AuthError:
        return False


async def latest(request: web.Request) -> web.Response:
    symbol = _symbol(request)
    guard_symbol(request, symbol)
    tick = await _latest(request, symbol)
    if tick is None:
        raise web.HTTPNotFound(text=f"no prices for {symbol}")
    return json_response(_quote(tick, request.app[PRECISION].of(symbol)))


async def candles(request: web.Request) -> web.Response:
    symbol = _symbol(request)
    guard_symbol(request, symbol)
    res = request.query.get("res", "1m")
    if res not in RESOLUTIONS:
        raise BadRequest(
            "bad_request", f"res must be one of {', '.join(RESOLUTIONS)}, got {res[:20]!r}"
        )
    limit = _int_param(request, "limit", 500, 1, MAX_CANDLES) or 500
    start_ms = _int_param(request, "start_ms", None, 0, 2**53)
    end_ms = _int_param(request, "end_ms", None, 0, 2**53)
    if start_ms is not None and end_ms is not None and start_ms >= end_ms:
        raise BadRequest("bad_request", f"start_ms ({start_ms}) must be before end_ms ({end_ms})")
    store: Store = request.app[STORE]
    if await _latest(request, symbol) is None:
        raise web.HTTPNotFound(text=f"no prices for {symbol}")
    stored = await store.candles(symbol, res, start_ms=start_ms, end_ms=end_ms, limit=limit)
    # The store is written behind; the hub has the newest state of recently changed candles,
    # unless it missed updates (a node that fell behind): the candle with more ticks is newer.
    lo = start_ms if start_ms is not None else -(2**62)
    hi = end_ms if end_ms is not None else 2**62
    recent = [c for c in request.app[HUB].recent_candles(symbol, res) if lo <= c.start_ms < hi]
    merged = newest_candles(stored, recent)
    places = request.app[PRECISION].of(symbol)
    out = [merged[k].public(places) for k in sorted(merged)][-limit:]
    return json_response({"symbol": symbol, "res": res, "candles": out})


def require_credentials(request: web.Request) -> str:
    """The principal of an admin request; 401 without valid credentials."""
    try:
        who = request.app[AUTH].from_headers(request.headers, now_s=time.time())
        if who is None:
            who = request.app[AUTH].who(api_key=None, token=None, now_s=time.time())
    except AuthError as exc:
        raise unauthorized(str(exc)) from None
    return who


def _text_param(request: web.Request, name: str) -> str | None:
    raw = request.query.get(name)
    if raw is not None and not 1 <= len(raw) <= MAX_FILTER_CHARS:
        raise BadRequest(
            "bad_request", f"{name} must be 1 to {MAX_FILTER_CHARS} characters, got {raw[:30]!r}"
        )
    return raw


def _letter(d: DeadLetter) -> dict[str, object]:
    return {
        "reason": d.reason,
        "source": d.source,
        "ts_ms": d.ts_ms,
        "raw": d.raw.decode("utf-8", "replace"),
    }


async def deadletters(request: web.Request) -> web.Response:
    """A page of dead letters, newest first: ``{"letters": [...], "next": cursor or null}``.

    ``before`` is the ``next`` of the page before; ``vendor`` (source ``vendor:NAME``),
    ``source`` and ``reason`` (the reason's kind, its text before the first ':') filter.
    """
    require_credentials(request)
    limit = _int_param(request, "limit", 100, 1, MAX_DEADLETTERS) or 100
    before = _text_param(request, "before")
    vendor = _text_param(request, "vendor")
    source = _text_param(request, "source")
    reason = _text_param(request, "reason")
    if reason is not None and ":" in reason:
        raise BadRequest(
            "bad_request",
            "reason is a reason's kind, the text before its first ':' (e.g. 'crossed quote'),"
            f" got {reason[:30]!r}",
        )
    # No letter is from both a vendor and another source: an empty page, once ``before`` is
    # checked like on any other page.
    disjoint = vendor is not None and source is not None and source != f"vendor:{vendor}"
    if vendor is not None and not disjoint:
        source = f"vendor:{vendor}"
    store: Store = request.app[STORE]
    try:
        letters, after = await store.deadletter_page(
            limit=limit, before=before, source=source, reason=reason
        )
    except DecodeError:  # only ``before`` can be one
        shown = (before or "")[:30]
        raise BadRequest(
            "bad_request", f"before must be the next of an earlier page, got {shown!r}"
        ) from None
    if disjoint:
        letters, after = [], None
    return json_response({"letters": [_letter(d) for d in letters], "next": after})


async def vendors(request: web.Request) -> web.Response:
    now = now_ms()
    board = request.app[VENDOR_BOARD].latest
    return json_response([vendor_public(board[name], now) for name in sorted(board)])


async def websocket(request: web.Request) -> web.StreamResponse:
    return await serve_client(request, request.app[HUB])


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def role_readyz(request: web.Request) -> web.Response:
    """Readiness of a process that runs ingest or stream without the web role."""
    roles: tuple[str, ...] = request.app[ROLES]
    reason = request.app[NOT_READY]()
    if reason is not None:
        body = {"status": "unavailable", "roles": roles, "reason": reason}
        return json_response(body, status=503)
    return json_response({"status": "ready", "roles": roles})


async def readyz(request: web.Request) -> web.Response:
    failed = request.app[HUB].failed
    if failed is not None:
        reason = f"hub: {failed!r}"
        return json_response({"status": "unavailable", "reason": reason}, status=503)
    try:
        await request.app[STORE].states()
    except Exception as exc:  # any failure of the store means not ready
        return json_response({"status": "unavailable", "reason": f"store: {exc}"}, status=503)
    return json_response({"status": "ready", "time_ms": now_ms()})
