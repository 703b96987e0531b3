"""HTTP middleware: request ids and access logs, per-client rate limits, CORS, security headers.

``install(app, options)`` puts one middleware in front of the app's own, which does, in order:

1. Request ids: every request gets one, the client's ``X-Request-Id`` if well formed (1 to 128
   of ``A-Z a-z 0-9 . _ : -``) or a new random one; it is sent back in the ``X-Request-Id``
   header, set on every log record written while the request is handled (``request_id``, by
   ``RequestIdFilter``) and logged with the access line on the ``web.access`` logger (method,
   path, status, duration, client). An unexpected error becomes a JSON 500 naming the id.
2. CORS: origins in ``HttpOptions.cors_origins`` may read the API from a page of theirs; their
   preflight ``OPTIONS`` requests are answered here. Other origins get no CORS headers (the
   browser keeps the answer from them), and their preflight gets 403.
3. Rate limit: a token bucket per client address (``rate_limit_per_s`` tokens a second, up to
   ``rate_limit_burst``); a client with an empty bucket gets 429 with ``Retry-After`` and a
   JSON message. Health checks and ``/metrics`` are not limited.
4. Body size: a request declaring a body over ``max_body_bytes`` gets 413 at once (no route
   reads a body today; the app's ``client_max_size`` guards those that will).

Every response also gets ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy``, and those
without a policy of their own (all but the page) a ``Content-Security-Policy`` that lets them
load nothing and be framed by no one.
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import math
import os
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

from aiohttp import hdrs, web

from web.api import Handler, json_response
from web.metrics import HTTP

log = logging.getLogger(__name__)
access_log = logging.getLogger("web.access")

REQUEST_ID_HEADER = "X-Request-Id"
_WELL_FORMED_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
#: Request ids are this process's random prefix and a counter: unique across processes and
#: nodes like a random id, without a system call for randomness on every request. A forked
#: process draws a prefix of its own.
_id_prefix = ""
_id_counter = itertools.count()


def _new_id_prefix() -> None:
    global _id_prefix, _id_counter
    _id_prefix, _id_counter = secrets.token_hex(8), itertools.count()


_new_id_prefix()
os.register_at_fork(after_in_child=_new_id_prefix)


def _new_request_id() -> str:
    return f"{_id_prefix}{next(_id_counter):016x}"


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
    """Put the middleware before the app's own (``json_errors``); before the app starts."""
    app.middlewares.insert(0, _Middleware(options).handle)
    app.on_response_prepare.append(_on_prepare)


class _Middleware:
    """All of it in one middleware: each layer of middleware costs a call frame per request."""

    def __init__(self, options: HttpOptions) -> None:
        self.origins = frozenset(options.cors_origins)
        self.any_origin = "*" in self.origins
        self.max_body_bytes = options.max_body_bytes
        self.trust_forwarded_for = options.trust_forwarded_for
        self.buckets: TokenBuckets | None = None
        if options.rate_limit_per_s > 0:
            self.buckets = TokenBuckets(rate_per_s=options.rate_limit_per_s,
                                        burst=options.rate_limit_burst,
                                        max_keys=options.rate_limit_clients)  # fmt: skip

    @web.middleware
    async def handle(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        rid = request.headers.get(REQUEST_ID_HEADER, "")
        if not _WELL_FORMED_ID.fullmatch(rid):
            rid = _new_request_id()
        token = current_request_id.set(rid)
        started = time.perf_counter()
        origin = request.headers.get(hdrs.ORIGIN)
        cors = origin is not None and (self.any_origin or origin in self.origins)
        response: web.StreamResponse
        try:
            try:
                refusal = self._screen(request, origin, cors)
                response = refusal if refusal is not None else await handler(request)
            except web.HTTPException as exc:  # raised past json_errors: a redirect, say
                response = exc
            except Exception:
                log.exception("%s %s failed", request.method, request.path)
                message = f"internal error; quote request id {rid} when reporting it"
                response = _refuse(500, message)
            status = response.status
            request.app[HTTP].count(status)
            elapsed_ms = (time.perf_counter() - started) * 1000
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "%s %s %d %.1f ms id=%s", request.method, request.path, status, elapsed_ms,
                    rid, extra={"request_id": rid, "method": request.method,
                                "path": request.path, "status": status,
                                "duration_ms": round(elapsed_ms, 3), "remote": request.remote},
                )  # fmt: skip
            if not response.prepared:  # else ``_on_prepare`` did it
                _add_headers(response, rid)
                if cors:
                    assert origin is not None
                    h = response.headers
                    h[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
                    h[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = ", ".join(CORS_EXPOSED)
                    h.add(hdrs.VARY, "Origin")
            if isinstance(response, web.HTTPException):
                raise response
            return response
        finally:
            current_request_id.reset(token)

    def _screen(self, request: web.Request, origin: str | None, cors: bool) -> web.Response | None:
        """The answer to a request refused or answered here, or None to pass it on."""
        if origin is not None and request.method == "OPTIONS":
            method = request.headers.get(hdrs.ACCESS_CONTROL_REQUEST_METHOD)
            if method is not None:
                return _preflight(origin, method, cors)
        if self.buckets is not None and request.path not in UNLIMITED_PATHS:
            client = client_address(request, trust_forwarded_for=self.trust_forwarded_for)
            wait_s = self.buckets.take(client, time.monotonic())
            if wait_s > 0:
                request.app[HTTP].rate_limited += 1
                retry_s = max(1, math.ceil(wait_s))
                message = (
                    f"too many requests from {client}: at most {self.buckets.rate_per_s:g} a "
                    f"second (bursts of {self.buckets.burst}); retry in {retry_s} s"
                )
                return _refuse(429, message, headers={"Retry-After": str(retry_s)})
        declared = request.content_length
        if declared is not None and declared > self.max_body_bytes:
            return _refuse(413, f"request body of {declared} bytes is over the limit of "
                           f"{self.max_body_bytes} bytes")  # fmt: skip
        return None


def _preflight(origin: str, method: str, allowed: bool) -> web.Response:
    if not allowed:
        return _refuse(403, f"origin {origin[:80]!r} is not allowed; ask for it to be added "
                       "to http.cors_origins")  # fmt: skip
    if method not in CORS_METHODS:
        return _refuse(403, f"method {method[:20]!r} is not allowed cross-origin; use "
                       f"{', '.join(CORS_METHODS)}")  # fmt: skip
    response = web.Response(status=204)
    response.headers[hdrs.ACCESS_CONTROL_ALLOW_METHODS] = ", ".join(CORS_METHODS)
    response.headers[hdrs.ACCESS_CONTROL_ALLOW_HEADERS] = ", ".join(CORS_HEADERS)
    response.headers[hdrs.ACCESS_CONTROL_MAX_AGE] = "600"
    return response


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
