"""Typed keys of the resources the app holds (no module-level singletons)."""

from __future__ import annotations

from aiohttp import web

from stream.contract import Bus, Store
from web.live import Hub
from web.vendors import VendorBoard

STORE: web.AppKey[Store] = web.AppKey("store")
BUS: web.AppKey[Bus] = web.AppKey("bus")
HUB: web.AppKey[Hub] = web.AppKey("hub")
VENDOR_BOARD: web.AppKey[VendorBoard] = web.AppKey("vendor_board")
