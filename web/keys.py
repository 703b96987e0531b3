"""Typed keys of the resources the app holds (no module-level singletons)."""

from __future__ import annotations

from aiohttp import web

from render.service import Renderer
from stream.contract import Bus, Store
from web.live import Hub

STORE: web.AppKey[Store] = web.AppKey("store")
BUS: web.AppKey[Bus] = web.AppKey("bus")
HUB: web.AppKey[Hub] = web.AppKey("hub")
RENDERER: web.AppKey[Renderer] = web.AppKey("renderer")
