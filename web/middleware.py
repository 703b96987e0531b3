"""HTTP middleware: request ids and access logs, per-client rate limits, CORS, security headers.

``install(app, options)`` adds them to an app, outermost first:

1. ``request_ids``: every request gets an id, the client's ``X-Request-Id`` if well formed
   (1 to 128 of ``A-Z a-z 0-9 . _ : -``) or a new random one; it is sent back in the
   ``X-Request-Id`` header, set on every log record written while the request is handled
   (``request_id``) and logged with the access line on the ``web.access`` logger (method, path,
   status, duration, client). An unexpected error becomes a JSON 500 naming the request id.
2. ``cors``: origins on ``HttpOptions.cors_origins`` may read the API from a browser page of
   theirs; their preflight ``OPTIONS`` requests are answered here. Other origins get no CORS
   headers (the browser keeps the answer from them), and their preflight gets 403.
3. ``rate_limit``: a token bucket per client address (``rate_limit_per_s`` tokens a second,
   up to ``rate_limit_burst``); a client with an empty bucket gets 429 with ``Retry-After`` and
   a JSON message. Health checks and ``/metrics`` are not limited.
4. ``body_limit``: a request declaring a body over ``max_body_bytes`` gets 413 at once (no
   route reads a body today; the app's ``client_max_size`` guards those that will).

Every response also gets ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy``, and those
without a policy of their own (all but the page) a ``Content-Security-Policy`` that lets them
load nothing and be framed by no one.
"""

from __future__ import annotations

import contextvars
import logging
import math
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware

from web.api import Handler, json_response
from web.metrics import HTTP

log = logging.getLogger(__name__)
access_log = logging.getLogger("web.access")

REQUEST_ID_HEADER = "X-Request-Id"
_WELL_FORMED_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
#: The request being handled in this task, for log records (``RequestIdFilter``).
current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)

UNLIMITED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
CORS_METHODS = ("GET", "HEAD", "OPTIONS")
CORS_HEADERS = ("Authorization", "Content-Type", "If-None-Match", "Last-Event-ID",
                "X-API-Key", REQUEST_ID_HEADER)  # fmt: skip
CORS_EXPOSED = ("ETag", "Retry-After", REQUEST_ID_HEADER)
API_CSP = "default-src 'none'; frame-ancestors 'none'"


@dataclass(frozen=True, slots=True)
class HttpOptions:
    """The HTTP limits of one app. The defaults limit nothing and allow no other origin."""

    rate_limit_per_s: float = 0.0  # 0: no rate limit
    rate_limit_burst: int = 100
    rate_limit_clients: int = 100_000  # buckets kept, the least recently used dropped first
    cors_origins: tuple[str, ...] = ()  # "https://shop.example.com", or "*" for any
    trust_forwarded_for: bool = False  # the client is the last X-Forwarded-For address
    max_body_bytes: int = 64 * 1024  # a larger declared body gets 413 before it is read


class TokenBuckets:
    """One token bucket per key, refilled at ``rate_per_s`` up to ``burst``; pure: time is passed.

    At most ``max_keys`` buckets are kept; the least recently used goes first (an idle client's
    bucket is full again anyway).
    """

    def __init__(self, *, rate_per_s: float, burst: int, max_keys: int = 100_000) -> None:
        if rate_per_s <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate_per_s must be > 0, burst and max_keys >= 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at_s

    def take(self, key: str, now_s: float) -> float:
        """Take a token for ``key``: 0.0 if there was one, else the seconds until there is."""
        tokens, at_s = self._buckets.pop(key, (float(self.burst), now_s))
        tokens = min(float(self.burst), tokens + max(0.0, now_s - at_s) * self.rate_per_s)
        wait_s = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait_s = (1.0 - tokens) / self.rate_per_s
        self._buckets[key] = (tokens, now_s)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait_s

    def __len__(self) -> int:
        return len(self._buckets)


class RequestIdFilter(logging.Filter):
    """Puts the request id of the request being handled on every log record (or leaves none)."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = current_request_id.get()
        if rid is not None and not hasattr(record, "request_id"):
            record.request_id = rid
        return True


def client_address(request: web.Request, *, trust_forwarded_for: bool) -> str:
    if trust_forwarded_for:
        forwarded = request.headers.get("X-Forwarded-For", "")
        last = forwarded.rsplit(",", 1)[-1].strip()
        if last:
            return last
    return request.remote or "unknown"


def install(app: web.Application, options: HttpOptions) -> None:
    """Add the middleware above to ``app`` (before it starts), outermost first."""
    ours = [request_ids, cors(options.cors_origins)]
    if options.rate_limit_per_s > 0:
        buckets = TokenBuckets(rate_per_s=options.rate_limit_per_s,
                               burst=options.rate_limit_burst,
                               max_keys=options.rate_limit_clients)  # fmt: skip
        ours.append(rate_limit(buckets, options.trust_forwarded_for))
    ours.append(body_limit(options.max_body_bytes))
    for i, mw in enumerate(ours):  # before the app's own (json_errors)
        app.middlewares.insert(i, mw)
    app.on_response_prepare.append(_on_prepare)


@web.middleware
async def request_ids(request: web.Request, handler: Handler) -> web.StreamResponse:
    rid = request.headers.get(REQUEST_ID_HEADER, "")
    if not _WELL_FORMED_ID.fullmatch(rid):
        rid = secrets.token_hex(16)
    token = current_request_id.set(rid)
    started = time.perf_counter()
    try:
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # raised past json_errors: a redirect, say
            response = exc
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            message = f"internal error; quote request id {rid} when reporting it"
            response = json_response({"error": {"status": 500, "message": message}}, status=500)
        request.app[HTTP].count(response.status)
        access_log.info(
            "%s %s %d %.1f ms id=%s",
            request.method,
            request.path,
            response.status,
            (time.perf_counter() - started) * 1000,
            rid,
            extra={
                "request_id": rid,
                "method": request.method,
                "path": request.path,
                "status": response.status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                "remote": request.remote,
            },
        )
        if not response.prepared:  # else ``_on_prepare`` did it
            _add_headers(response, rid)
        if isinstance(response, web.HTTPException):
            raise response
        return response
    finally:
        current_request_id.reset(token)


def cors(origins: tuple[str, ...]) -> Middleware:
    allowed = frozenset(origins)
    any_origin = "*" in allowed

    @web.middleware
    async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is None:
            return await handler(request)
        ok = any_origin or origin in allowed
        preflight = request.method == "OPTIONS" and hdrs.ACCESS_CONTROL_REQUEST_METHOD in (
            request.headers
        )
        if preflight:
            method = request.headers[hdrs.ACCESS_CONTROL_REQUEST_METHOD]
            if not ok:
                return _refuse(403, f"origin {origin[:80]!r} is not allowed; ask for it to be "
                               "added to http.cors_origins")  # fmt: skip
            if method not in CORS_METHODS:
                return _refuse(403, f"method {method[:20]!r} is not allowed cross-origin; "
                               f"use {', '.join(CORS_METHODS)}")  # fmt: skip
            response: web.StreamResponse = web.Response(status=204)
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_METHODS] = ", ".join(CORS_METHODS)
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_HEADERS] = ", ".join(CORS_HEADERS)
            response.headers[hdrs.ACCESS_CONTROL_MAX_AGE] = "600"
        else:
            response = await handler(request)
        if ok and not response.prepared:
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
            response.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = ", ".join(CORS_EXPOSED)
            response.headers.add(hdrs.VARY, "Origin")
        return response

    return cors_middleware


def rate_limit(buckets: TokenBuckets, trust_forwarded_for: bool) -> Middleware:
    @web.middleware
    async def rate_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in UNLIMITED_PATHS:
            return await handler(request)
        client = client_address(request, trust_forwarded_for=trust_forwarded_for)
        wait_s = buckets.take(client, time.monotonic())
        if wait_s > 0:
            request.app[HTTP].rate_limited += 1
            retry_s = max(1, math.ceil(wait_s))
            message = (
                f"too many requests from {client}: at most {buckets.rate_per_s:g} a second "
                f"(bursts of {buckets.burst}); retry in {retry_s} s"
            )
            return _refuse(429, message, headers={"Retry-After": str(retry_s)})
        return await handler(request)

    return rate_limit_middleware


def body_limit(max_bytes: int) -> Middleware:
    @web.middleware
    async def body_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        declared = request.content_length
        if declared is not None and declared > max_bytes:
            return _refuse(413, f"request body of {declared} bytes is over the limit of "
                           f"{max_bytes} bytes")  # fmt: skip
        return await handler(request)

    return body_limit_middleware


def _refuse(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return json_response({"error": {"status": status, "message": message}}, status=status,
                         headers=headers)  # fmt: skip


async def _on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """For responses a handler prepares itself (websockets, streams), while its id is set."""
    rid = current_request_id.get()
    if rid is not None:
        _add_headers(response, rid)


def _add_headers(response: web.StreamResponse, rid: str) -> None:
    h = response.headers
    h[REQUEST_ID_HEADER] = rid
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("Referrer-Policy", "no-referrer")
    h.setdefault("Content-Security-Policy", API_CSP)
