"""The app factory: resources on typed keys, background tasks owned by ``cleanup_ctx``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import WSCloseCode, web

from stream.contract import UPDATES, Bus, Store
from web import routes
from web.api import json_errors
from web.keys import BUS, HUB, STORE
from web.live import Hub

log = logging.getLogger(__name__)


def make_app(*, store: Store, bus: Bus, history: int = 500) -> web.Application:
    """The web role. ``store`` and ``bus`` are opened and closed by the caller."""
    app = web.Application(middlewares=[json_errors], client_max_size=64 * 1024)
    app[STORE] = store
    app[BUS] = bus

    async def hub_ctx(app: web.Application) -> AsyncIterator[None]:
        consumer = await bus.consumer(UPDATES, group=None)
        hub = app[HUB] = Hub(consumer=consumer, store=store, history=history)
        task = asyncio.create_task(hub.run(), name="hub")
        yield
        for client in list(hub.clients):
            await client.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await consumer.close()

    app.cleanup_ctx.append(hub_ctx)
    routes.setup(app)
    return app
