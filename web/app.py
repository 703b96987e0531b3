"""The app factory: resources on typed keys, background tasks owned by ``cleanup_ctx``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from render.service import RenderConfig
from stream.contract import UPDATES, VENDORS, Bus, Store
from web import charts, metrics, middleware, routes
from web.api import json_errors
from web.auth import AuthConfig, Authenticator
from web.keys import AUTH, BUS, HUB, NOT_READY, ROLES, STORE, VENDOR_BOARD
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
) -> web.Application:
    """The web role. ``store`` and ``bus`` are opened and closed by the caller.

    With ``render`` the app also serves ``/charts`` and ``/snapshots`` from its own render pool.
    ``http`` sets rate limits and CORS origins (``web.middleware``); by default there are none.
    """
    app = web.Application(middlewares=[json_errors], client_max_size=64 * 1024)
    app[STORE] = store
    app[BUS] = bus
    app[AUTH] = Authenticator(auth or AuthConfig())
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
