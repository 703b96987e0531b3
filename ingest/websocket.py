"""The websocket collector: connect, subscribe, read, and reconnect whatever happens.

After connecting it sends the profile's subscribe messages for the configured vendor symbols,
then reads messages into its ``Feed``. Beside the vendor's own heartbeats it sends websocket
pings every ``ping_interval_ms`` (the ``websockets`` library closes a connection whose pong does
not come) and, for vendors that ask for one, an application heartbeat message. A watchdog closes
a connection that has been silent for ``stale_after_ms``. Every disconnect, refused connection
or silence ends in a reconnect after a jittered exponential backoff, reset by the first message
of a good connection; each reconnect is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import websockets
from websockets.asyncio.client import ClientConnection, connect

from ingest.collector import Backoff
from ingest.feed import Feed
from ingest.vendors.base import Profile

log = logging.getLogger(__name__)


class WebsocketCollector:
    def __init__(
        self,
        feed: Feed,
        profile: Profile,
        *,
        url: str,
        headers: dict[str, str] | None = None,
        ping_interval_ms: int = 20_000,
        heartbeat_interval_ms: int = 0,
        open_timeout_ms: int = 10_000,
        stale_after_ms: int = 10_000,
        backoff: Backoff,
    ) -> None:
        self.feed = feed
        self.profile = profile
        self.url = url
        self.headers = headers or {}
        self.ping_interval_ms = ping_interval_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms or profile.heartbeat_interval_ms
        self.open_timeout_ms = open_timeout_ms
        self.stale_after_ms = stale_after_ms
        self.backoff = backoff
        self._last_recv = 0.0

    async def run(self) -> None:
        first = True
        while True:
            if not first:
                self.feed.stats.reconnects += 1
                delay_ms = self.backoff.next_ms()
                log.info("%s: reconnecting in %d ms", self.feed.name, delay_ms)
                await asyncio.sleep(delay_ms / 1000)
            first = False
            try:
                await self._session()
            except (OSError, TimeoutError, websockets.WebSocketException) as exc:
                self.feed.failed(f"connection to {self.url}: {type(exc).__name__}: {exc}")
            finally:
                self.feed.connected(False)

    async def _session(self) -> None:
        ping = self.ping_interval_ms / 1000 if self.ping_interval_ms else None
        async with connect(
            self.url,
            additional_headers=self.headers,
            ping_interval=ping,
            ping_timeout=ping,
            open_timeout=self.open_timeout_ms / 1000,
            max_size=2**20,
            compression=None,
        ) as ws:
            self.feed.connected(True)
            symbols = list(self.feed.symbols)
            for message in self.profile.subscribe(symbols):
                await ws.send(message, text=True)
            self._last_recv = time.monotonic()
            helpers = [asyncio.create_task(self._watchdog(ws))]
            if self.profile.heartbeat and self.heartbeat_interval_ms:
                helpers.append(asyncio.create_task(self._heartbeats(ws, self.profile.heartbeat)))
            try:
                await self._read(ws)
            finally:
                for task in helpers:
                    task.cancel()
                # a heartbeat that failed on the closing connection is not news: the read says why
                await asyncio.gather(*helpers, return_exceptions=True)

    async def _read(self, ws: ClientConnection) -> None:
        receive = self.feed.receive
        got_one = False
        while True:
            raw = await ws.recv(decode=False)
            self._last_recv = time.monotonic()
            if not got_one:
                got_one = True
                self.backoff.reset()
            await receive(raw)

    async def _watchdog(self, ws: ClientConnection) -> None:
        limit = self.stale_after_ms / 1000
        while True:
            silent = time.monotonic() - self._last_recv
            if silent >= limit:
                self.feed.failed(f"silent for {silent * 1000:.0f} ms, reconnecting")
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(code=1001, reason="silent"), 2)
                return
            await asyncio.sleep(max(limit - silent, 0.01))

    async def _heartbeats(self, ws: ClientConnection, message: bytes) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval_ms / 1000)
            await ws.send(message, text=True)
