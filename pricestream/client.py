"""A Python client for the live feed: reconnects on its own and resumes by sequence number.

::

    from pricestream.client import LiveClient

    async for msg in LiveClient("http://127.0.0.1:8080/", ["ticks:XAU-USD"]).messages():
        print(msg["seq"], msg["data"])

It yields the server's messages (``snapshot``, ``subscribed``, ``update``) in order per channel.
When the connection drops (a restart, a load balancer, code 1001 or 4008) it reconnects with
backoff and subscribes with ``since`` set to the last seq it saw on each channel, so it gets
exactly what it missed, or a snapshot marked ``"recovered": false`` when the server's history no
longer reaches back. Duplicates are dropped; an unannounced gap resubscribes for a snapshot.

It lives in ``pricestream/`` beside the CLI that uses it (``pricestream tail``) and imports
nothing of the server: importing it loads only websockets and orjson.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

log = logging.getLogger(__name__)

#: Server errors that no reconnect can fix.
FATAL = frozenset({"bad_channel", "unknown_symbol", "unauthorized", "too_many_channels"})


class LiveError(Exception):
    """The server refused the subscription or the credentials; the message says why."""


def ws_url(url: str) -> str:
    """``http://host:port/`` (or a ``ws://`` URL) as the ``/ws`` endpoint's URL."""
    if url.startswith(("ws://", "wss://")):
        return url
    base = url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    return base.rstrip("/") + "/ws"


class LiveClient:
    """Subscribe to ``channels`` at ``url`` and keep the subscription alive."""

    def __init__(
        self,
        url: str,
        channels: Sequence[str],
        *,
        api_key: str | None = None,
        token: str | None = None,
        max_hz: float | None = None,
        reconnect_min_ms: int = 250,
        reconnect_max_ms: int = 10_000,
        max_attempts: int | None = None,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.url = ws_url(url)
        #: hears what the connection does, in words (connecting, connected, lost, retrying)
        self.on_event = on_event or (lambda text: None)
        self.channels = list(dict.fromkeys(channels))
        self.max_hz = max_hz
        self.reconnect_min_ms = reconnect_min_ms
        self.reconnect_max_ms = reconnect_max_ms
        self.max_attempts = max_attempts
        self.seqs: dict[str, int] = {}  # the last seq seen per channel
        self.connects = 0
        self.gaps = 0
        self._headers: dict[str, str] = {}
        if api_key:
            self._headers["X-API-Key"] = api_key
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._ws: ClientConnection | None = None
        self._resyncing: set[str] = set()  # channels waiting for a snapshot after a gap

    async def messages(self) -> AsyncGenerator[dict[str, Any], None]:
        """Every message, across reconnects, until the caller stops iterating."""
        failures = 0
        while True:
            why = ""
            self.on_event(f"connecting to {self.url}")
            try:
                async with connect(self.url, additional_headers=self._headers) as ws:
                    self._ws = ws
                    self.connects += 1
                    failures = 0
                    self._resyncing.clear()
                    await self._subscribe(ws, self.channels)
                    self.on_event(f"connected; following {', '.join(self.channels)}")
                    async for raw in ws:
                        msg = orjson.loads(raw)
                        if await self._accept(ws, msg):
                            yield msg
                why = "the server closed the connection"
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status in (401, 403):
                    raise LiveError(f"the server refused the credentials ({status})") from exc
                why = f"the server answered HTTP {status}"
                log.warning("connect to %s: HTTP %d", self.url, status)
            except (OSError, ConnectionClosed, TimeoutError, InvalidURI, InvalidHandshake) as exc:
                why = str(exc) or type(exc).__name__
                log.info("connection to %s lost (%s); resuming", self.url, exc)
            finally:
                self._ws = None
            failures += 1
            if self.max_attempts is not None and failures >= self.max_attempts:
                raise LiveError(f"gave up on {self.url} after {failures} failed attempts: {why}")
            delay_ms = min(self.reconnect_max_ms, self.reconnect_min_ms * 2 ** (failures - 1))
            delay_ms *= random.uniform(0.5, 1.0)
            self.on_event(f"cannot reach {self.url}: {why}; retrying in {delay_ms / 1000:.1f} s")
            await asyncio.sleep(delay_ms / 1000)

    async def close(self) -> None:
        """Close the current connection (``messages`` reconnects unless the caller stops)."""
        if self._ws is not None:
            await self._ws.close()

    async def _subscribe(self, ws: ClientConnection, channels: Sequence[str]) -> None:
        msg: dict[str, object] = {"op": "subscribe", "channels": list(channels)}
        since = {c: self.seqs[c] for c in channels if c in self.seqs}
        if since:
            msg["since"] = since
        if self.max_hz is not None:
            msg["max_hz"] = self.max_hz
        await ws.send(orjson.dumps(msg).decode())

    async def _accept(self, ws: ClientConnection, msg: dict[str, Any]) -> bool:
        """Whether to pass ``msg`` on; keeps the seqs and resubscribes after a gap."""
        kind, channel, seq = msg.get("type"), msg.get("channel"), msg.get("seq")
        if kind == "error":
            if msg.get("code") in FATAL:
                raise LiveError(f"{msg.get('code')}: {msg.get('message')}")
            log.warning("server error %s: %s", msg.get("code"), msg.get("message"))
            return False
        if not isinstance(channel, str) or not isinstance(seq, int):
            return True
        if kind in ("snapshot", "subscribed"):
            self._resyncing.discard(channel)
            self.seqs[channel] = seq
            return True
        if channel in self._resyncing:
            return False
        last = self.seqs.get(channel)
        if last is not None and seq <= last:
            return False  # a duplicate
        if last is not None and seq != last + 1 and not msg.get("conflated"):
            self.gaps += 1
            self.seqs.pop(channel, None)
            self._resyncing.add(channel)
            await ws.send(orjson.dumps({"op": "unsubscribe", "channels": [channel]}).decode())
            await self._subscribe(ws, [channel])
            return False
        self.seqs[channel] = seq
        return True
