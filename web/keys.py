"""Typed keys of the resources the app holds (no module-level singletons)."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from render.service import Renderer
from stream.contract import Bus, Precision, Store
from web.auth import Authenticator
from web.live import Hub
from web.vendors import VendorBoard

STORE: web.AppKey[Store] = web.AppKey("store")
BUS: web.AppKey[Bus] = web.AppKey("bus")
HUB: web.AppKey[Hub] = web.AppKey("hub")
AUTH: web.AppKey[Authenticator] = web.AppKey("auth")
#: For a process without the web role: why it is not ready (None when it is).
NOT_READY: web.AppKey[Callable[[], str | None]] = web.AppKey("not_ready")
ROLES: web.AppKey[tuple[str, ...]] = web.AppKey("roles")
RENDERER: web.AppKey[Renderer] = web.AppKey("renderer")
VENDOR_BOARD: web.AppKey[VendorBoard] = web.AppKey("vendor_board")
#: the decimals each symbol's prices are printed with
PRECISION: web.AppKey[Precision] = web.AppKey("precision", Precision)
