"""The app factory, and the listening site that serves its app with limits on each connection.

``make_app``, ``make_render_app`` and ``make_health_app`` put resources on typed keys, give every
background task to ``cleanup_ctx`` and route through ``web.routes`` (the only module that
imports it). ``make_runner`` and ``GuardedSite`` listen with ``ServerLimits`` on each connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import cast

import orjson
from aiohttp import web

from render.service import RenderConfig
from stream.contract import UPDATES, VENDORS, Bus, Precision, Store
from web import charts, metrics, middleware, routes
from web.api import json_errors
from web.auth import AuthConfig, Authenticator
from web.keys import AUTH, BUS, HUB, NOT_READY, PRECISION, ROLES, STORE, VENDOR_BOARD
from web.live import Hub, LiveConfig
from web.middleware import HttpOptions
from web.vendors import VendorBoard

log = logging.getLogger(__name__)


def make_app(
    *,
    store: Store,
    bus: Bus,
    history: int = 500,
    render: RenderConfig | None = None,
    live: LiveConfig | None = None,
    auth: AuthConfig | None = None,
    http: HttpOptions | None = None,
    precision: Precision | None = None,
) -> web.Application:
    """The web role. ``store`` and ``bus`` are opened and closed by the caller.

    With ``render`` the app also serves ``/charts`` and ``/snapshots`` from its own render pool.
    ``http`` sets rate limits and CORS origins (``web.middleware``); by default there are none.
    """
    app = web.Application(middlewares=[json_errors], client_max_size=64 * 1024)
    app[STORE] = store
    app[BUS] = bus
    app[AUTH] = Authenticator(auth or AuthConfig())
    app[PRECISION] = precision or Precision()
    metrics.install(app)
    middleware.install(app, http or HttpOptions())

    async def hub_ctx(app: web.Application) -> AsyncIterator[None]:
        consumer = await bus.consumer(UPDATES, group=None)
        hub = app[HUB] = Hub(
            consumer=consumer,
            store=store,
            history=history,
            config=live,
            auth=app[AUTH],
            counters=app[metrics.LIVE],
            precision=app[PRECISION],
        )
        metrics.watch_consumer(app, consumer, reader="hub", topic=UPDATES)
        tasks = [
            asyncio.create_task(hub.run(), name="hub"),
            asyncio.create_task(hub.watch(), name="hub-watch"),
        ]
        yield
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        app[metrics.CONSUMERS].pop(("hub", UPDATES), None)
        await consumer.close()

    async def going_away(app: web.Application) -> None:
        # on_shutdown runs before the server waits for open handlers: tell clients to reconnect.
        clients = list(app[HUB].clients)
        await asyncio.gather(*(c.going_away() for c in clients), return_exceptions=True)

    async def vendors_ctx(app: web.Application) -> AsyncIterator[None]:
        consumer = await bus.consumer(VENDORS, group=None)
        board = app[VENDOR_BOARD] = VendorBoard(consumer)
        task = asyncio.create_task(board.run(), name="vendor-board")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await consumer.close()

    app.cleanup_ctx.append(hub_ctx)
    app.cleanup_ctx.append(vendors_ctx)
    app.on_shutdown.append(going_away)
    routes.setup(app)
    if render is not None:
        charts.install(app, store=store, config=render)
        routes.setup_render(app)
    return app


def make_render_app(
    *,
    store: Store,
    render: RenderConfig,
    http: HttpOptions | None = None,
    auth: AuthConfig | None = None,
) -> web.Application:
    """The render role alone: ``/charts``, ``/snapshots`` and ``/healthz`` on its own pools.

    For a separate ``render`` service behind nginx (which routes ``/charts`` and ``/snapshots``
    to it); ``store`` is opened and closed by the caller.
    """
    app = web.Application(middlewares=[json_errors], client_max_size=64 * 1024)
    app[STORE] = store
    app[AUTH] = Authenticator(auth or AuthConfig())  # private symbols' charts need credentials
    app[ROLES] = ("render",)
    app[NOT_READY] = lambda: None
    metrics.install(app)
    middleware.install(app, http or HttpOptions())
    routes.setup_health(app)
    charts.install(app, store=store, config=render)
    routes.setup_render(app)
    return app


def make_health_app(*, roles: tuple[str, ...], ready: Callable[[], str | None]) -> web.Application:
    """``/healthz`` and ``/readyz`` for a process of other roles; ``ready()`` says why not."""
    app = web.Application(middlewares=[json_errors])
    app[ROLES] = roles
    app[NOT_READY] = ready
    metrics.install(app)
    middleware.install(app, HttpOptions())
    routes.setup_health(app)
    return app


# -- the listening socket: limits on connections, below HTTP ---------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerLimits:
    """What one connection may cost before it has asked for anything (``[server]`` settings).

    aiohttp bounds the size of a request's head and how long an idle kept-alive connection stays
    open (``keepalive_timeout``, which it also applies before the first request), but not how
    long a client may take to send that head: bytes dripped one at a time keep a connection open
    for the whole keep-alive time (aiohttp's default: an hour). ``GuardedSite`` adds that limit.
    """

    #: the longest a request's line and headers may take to arrive: from the connection's start
    #: for its first request, from the first byte of each later one (an idle kept-alive
    #: connection waits ``keepalive_timeout_s`` first). Past it: 408 if some of it came, and closed.
    header_timeout_s: float = 10.0
    #: how long a connection may wait, idle, for its next request; longer than a proxy's own
    #: idle time (nginx keeps upstream connections 60 s), so the proxy closes first.
    keepalive_timeout_s: float = 75.0
    #: open connections from one client address; past it a new one gets 503 and is closed.
    #: 0: no limit (behind a proxy every connection comes from the proxy's address).
    max_connections_per_address: int = 0
    #: request line, one header and the number of headers: past them, 400 (aiohttp's parser)
    max_line_bytes: int = 8_190
    max_field_bytes: int = 8_190
    max_headers: int = 128


def make_runner(
    app: web.Application, *, limits: ServerLimits, shutdown_timeout_s: float = 5.0
) -> web.AppRunner:
    """A runner for ``app`` whose connections keep ``limits`` (with ``GuardedSite``)."""
    return web.AppRunner(
        app,
        handle_signals=False,
        shutdown_timeout=shutdown_timeout_s,
        # passed to every connection's aiohttp RequestHandler
        keepalive_timeout=limits.keepalive_timeout_s,
        max_line_size=limits.max_line_bytes,
        max_field_size=limits.max_field_bytes,
        max_headers=limits.max_headers,
    )


class GuardedSite(web.BaseSite):
    """A TCP site like ``web.TCPSite`` whose connections keep ``ServerLimits``.

    Each connection's aiohttp protocol is wrapped in a ``_Guarded`` protocol that times the
    arrival of each request's head and counts connections per client address.
    """

    __slots__ = ("_host", "_limits", "_port")

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, *, limits: ServerLimits
    ) -> None:
        super().__init__(runner)
        self._host = host
        self._port = port
        self._limits = limits

    @property
    def name(self) -> str:
        return f"http://{self._host or '0.0.0.0'}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None, "runner.setup() first"
        guards = _Guards(server, self._limits)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            guards.protocol, self._host or None, self._port, backlog=self._backlog
        )


class _Guards:
    """The guarded connections of one site, and the request handler that tells them apart.

    A connection is between requests until aiohttp hands a complete request head to the app,
    and again once the app's handler returns (a websocket's or an event stream's handler
    returns when it ends). Only between requests does the head timer run.
    """

    def __init__(self, server: web.Server, limits: ServerLimits) -> None:
        self.server = server
        self.limits = limits
        self.by_handler: dict[web.RequestHandler, _Guarded] = {}
        self.per_address: dict[str, int] = {}
        self._app_handler = server.request_handler
        # read by each new connection's RequestHandler: the app's handler, seen from here
        server.request_handler = self._handle

    def protocol(self) -> asyncio.Protocol:
        return _Guarded(self, self.server())

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        guard = self.by_handler.get(request.protocol)
        if guard is None:  # a connection of another site on the same runner
            return await self._app_handler(request)
        guard.request_started()
        try:
            return await self._app_handler(request)
        finally:
            guard.request_ended()


class _Guarded(asyncio.Protocol):
    """One connection: aiohttp's protocol inside, the head timer and the address count around.

    The timer is one pending call at most, checked against ``deadline`` when it fires: starting
    and stopping it for each request on a kept-alive connection costs an attribute, not a call.
    """

    def __init__(self, guards: _Guards, inner: web.RequestHandler) -> None:
        self.guards = guards
        self.inner = inner
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.address = ""
        self.deadline: float | None = None  # for the head being received; None: not timing
        self.timer: asyncio.TimerHandle | None = None
        self.busy = False  # a request is being handled
        self.head_bytes = 0  # received since the deadline was set
        self.arrived_while_busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a socket's transport: uvloop's is one without being an asyncio.Transport subclass
        transport = cast(asyncio.Transport, transport)
        limits = self.guards.limits
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        count = self.guards.per_address.get(address, 0)
        if 0 < limits.max_connections_per_address <= count:
            log.warning("refused a connection from %s: %d open, at most %d", address, count,
                        limits.max_connections_per_address)  # fmt: skip
            message = (
                f"too many connections from {address}: at most "
                f"{limits.max_connections_per_address} at once"
            )
            transport.write(_raw_answer(503, message, retry_after_s=1))
            transport.close()
            return
        self.guards.per_address[address] = count + 1
        self.address, self.transport = address, transport
        self.guards.by_handler[self.inner] = self
        self.inner.connection_made(transport)
        self._start_timing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is None:  # refused above
            return
        self.transport = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.guards.by_handler.pop(self.inner, None)
        left = self.guards.per_address.pop(self.address, 1) - 1
        if left > 0:
            self.guards.per_address[self.address] = left
        self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.busy:
            self.arrived_while_busy = True
        elif self.transport is not None:
            if self.deadline is None:  # the first bytes of a request after an idle keep-alive
                self._start_timing()
            self.head_bytes += len(data)
        self.inner.data_received(data)

    def eof_received(self) -> None:
        self.inner.eof_received()  # None: the transport closes (aiohttp's answer too)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def request_started(self) -> None:
        self.busy = True
        self.arrived_while_busy = False
        self.deadline = None

    def request_ended(self) -> None:
        self.busy = False
        # bytes that came during the request may be the start of the next one (pipelined)
        if self.arrived_while_busy and self.transport is not None:
            self._start_timing()

    def _start_timing(self) -> None:
        self.head_bytes = 0
        self.deadline = self.loop.time() + self.guards.limits.header_timeout_s
        if self.timer is None:
            self.timer = self.loop.call_at(self.deadline, self._check)

    def _check(self) -> None:
        self.timer = None
        transport = self.transport
        if self.deadline is None or self.busy or transport is None or transport.is_closing():
            return
        if self.loop.time() < self.deadline:  # timing restarted since this call was made
            self.timer = self.loop.call_at(self.deadline, self._check)
            return
        timeout_s = self.guards.limits.header_timeout_s
        log.info("closed a connection from %s: no complete request head within %g s (%d bytes)",
                 self.address, timeout_s, self.head_bytes)  # fmt: skip
        if self.head_bytes:  # a client that is sending gets told why
            message = f"the request head did not arrive within {timeout_s:g} s"
            transport.write(_raw_answer(408, message))
        transport.close()


def _raw_answer(status: int, message: str, *, retry_after_s: int | None = None) -> bytes:
    """A whole HTTP/1.1 answer with a JSON error body, for a connection aiohttp does not serve."""
    body = orjson.dumps({"error": {"status": status, "message": message}})
    reason = HTTPStatus(status).phrase
    retry = f"Retry-After: {retry_after_s}\r\n" if retry_after_s is not None else ""
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{retry}Connection: close\r\n\r\n"
    )
    return head.encode() + body
