"""Server-Sent Events: ``GET /api/v1/stream?channels=...``, the websocket feed for plain HTTP.

Every event's ``data`` is one message of the websocket protocol (snapshot, subscribed, update),
and its ``id`` lists the last sequence number sent on every channel
(``ticks:XAU-USD=1041,candles:XAU-USD:1m=377``). A client that reconnects sends that id back as
``Last-Event-ID`` (browsers' ``EventSource`` does so by itself) and resumes exactly as a
websocket subscribe with ``since`` does. ``max_hz`` limits the rate of every channel.

Errors in the request are 4xx JSON before the stream starts. A slow client is handled as on the
websocket (conflation, then the connection is dropped); idle streams get a comment line every
``heartbeat_ms`` so proxies and clients see the connection is alive.

A stream opened with a token that holds a private channel ends when the token expires: its last
event is ``{"type":"closed","code":4001,...}``, and the browser's reconnect needs a fresh token.
At server shutdown the last event is ``{"type":"closed","code":1001,...}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time

import orjson
from aiohttp import web

from web.auth import Authenticator, AuthError, unauthorized
from web.keys import HUB
from web.live import (
    CLOSE_TOKEN_EXPIRED,
    MAX_HZ_LIMIT,
    MAX_SEQ,
    ChannelError,
    Client,
    Counters,
    Hub,
    LiveConfig,
)
from web.live.guard import bound_send_buffer

log = logging.getLogger(__name__)

FORMAT = "channels=ticks:SYMBOL,candles:SYMBOL:RES"
GONE_CHECK_S = 1.0  # how often an idle stream looks whether its client is still there
_SEQ = re.compile(f"[0-9]{{1,{len(str(MAX_SEQ))}}}")


class SseClient(Client):
    """One event stream."""

    def __init__(
        self,
        request: web.Request,
        resp: web.StreamResponse,
        config: LiveConfig,
        counters: Counters | None = None,
        *,
        auth: Authenticator | None = None,
    ) -> None:
        super().__init__(config, counters, auth=auth)
        self.request = request
        self.resp = resp
        self.order: list[str] = []  # the requested channels, for the event id

    def event_id(self) -> str:
        sent = self.box.sent_seq
        return ",".join(f"{c}={sent[c]}" for c in self.order if c in sent)

    async def _write(self, text: str, channel: str) -> None:
        event_id = self.event_id() if channel else ""
        head = f"id: {event_id}\n" if event_id else ""
        await self.resp.write(f"{head}data: {text}\n\n".encode())

    async def _idle(self) -> None:
        """Wait for something to send; a comment line every ``heartbeat_ms`` meanwhile. aiohttp
        does not cancel a handler whose client went away, so the socket is looked at every
        ``GONE_CHECK_S``: a stream whose client went away leaves the hub within that, not at the
        next write."""
        heartbeat_s = self.config.heartbeat_ms / 1000
        loop = asyncio.get_running_loop()
        deadline = loop.time() + heartbeat_s
        while True:
            left = deadline - loop.time()
            try:
                await asyncio.wait_for(self._wake.wait(), max(0.0, min(GONE_CHECK_S, left)))
                return
            except TimeoutError:
                pass
            transport = self.request.transport
            if transport is None or transport.is_closing():
                raise ConnectionResetError("the event stream's client went away")
            if left <= GONE_CHECK_S:
                break
        self.writing = True
        await self.resp.write(b": keep-alive\n\n")
        self.writing = False

    async def going_away(self) -> None:
        await self._say_closed(1001, "server shutdown")
        self.closing = "server shutdown"
        self._wake.set()

    def _token_expired(self, reason: str) -> None:
        """End the stream with a ``closed`` event (4001); the browser's reconnect must bring a
        fresh token."""
        if self.closing is not None:
            return
        self._shut(reason)
        self._closer = asyncio.get_running_loop().create_task(
            self._say_closed(CLOSE_TOKEN_EXPIRED, reason)
        )

    async def _say_closed(self, code: int, reason: str) -> None:
        """The last event: why the stream ends, with the websocket's close code for it."""
        data = orjson.dumps({"type": "closed", "code": code, "reason": reason})
        with contextlib.suppress(ConnectionError, RuntimeError, TimeoutError):
            await asyncio.wait_for(self.resp.write(b"data: " + data + b"\n\n"), 1.0)

    async def _close_slow(self, reason: str) -> None:
        transport = self.request.transport
        if transport is not None:
            transport.abort()


def parse_channels(raw: str | None, *, max_channels: int) -> list[str]:
    if not raw:
        raise web.HTTPBadRequest(text=f"the channels parameter is required: {FORMAT}")
    channels = list(dict.fromkeys(c.strip() for c in raw.split(",") if c.strip()))
    if len(channels) > max_channels:
        raise web.HTTPBadRequest(text=f"at most {max_channels} channels, got {len(channels)}")
    return channels


def parse_last_event_id(raw: str | None) -> dict[str, int]:
    """``"ticks:XAU-USD=1041,candles:XAU-USD:1m=377"`` as ``{channel: seq}``; a seq is ASCII
    digits up to ``MAX_SEQ`` (``str.isdigit`` and ``int`` take other digits, and any length)."""
    since: dict[str, int] = {}
    if not raw:
        return since
    for part in raw.split(","):
        channel, sep, seq = part.strip().rpartition("=")
        if not sep or not channel or not _SEQ.fullmatch(seq) or int(seq) > MAX_SEQ:
            raise web.HTTPBadRequest(
                text=f"Last-Event-ID must be like 'ticks:XAU-USD=1041,...', each number 0 to "
                f"{MAX_SEQ} in ASCII digits; the bad part: {part.strip()[:40]!r}"
            )
        since[channel] = int(seq)
    return since


def parse_max_hz(raw: str | None) -> float | None:
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= MAX_HZ_LIMIT:
        raise web.HTTPBadRequest(
            text=f"max_hz must be a number above 0 and at most {MAX_HZ_LIMIT:g}, got {raw[:20]!r}"
        )
    return value


async def serve_stream(request: web.Request, hub: Hub) -> web.StreamResponse:
    """The event stream of the requested channels until the client goes away.

    The parameters and credentials are checked before the hub is touched. From the moment the
    client is registered, one ``finally`` undoes every subscription it made whatever fails (a
    channel refused after others were taken, the store, the socket): a failed request leaves
    nothing in the hub.
    """
    config = hub.config
    channels = parse_channels(request.query.get("channels"), max_channels=config.max_channels)
    raw_id = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    since = parse_last_event_id(raw_id)
    max_hz = parse_max_hz(request.query.get("max_hz"))
    try:
        identity = hub.auth.identify_headers(request.headers, now_s=time.time())
    except AuthError as exc:
        raise unauthorized(str(exc)) from None
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # nginx: pass events on at once
        }
    )
    client = SseClient(request, resp, config, hub.counters, auth=hub.auth)
    client.order = channels
    hub.clients.add(client)
    try:
        client.authenticate(identity)  # its token's expiry ends the stream if it holds private
        try:
            for channel in channels:
                await hub.subscribe(client, channel, since=since.get(channel), max_hz=max_hz)
        except ChannelError as exc:
            raise _refused(exc) from None
        await resp.prepare(request)
        bound_send_buffer(request.transport, config.socket_send_buffer_bytes)
        await resp.write(b"retry: 1000\n\n")
        await client.pump()
    except ConnectionError:
        log.debug("an event stream client went away")
    finally:
        hub.drop(client)
        await client.finish()
    return resp


def _refused(exc: ChannelError) -> web.HTTPException:
    if exc.code == "unknown_symbol":
        return web.HTTPNotFound(text=str(exc))
    if exc.code == "unauthorized":
        return unauthorized(str(exc))
    return web.HTTPBadRequest(text=str(exc))


async def stream(request: web.Request) -> web.StreamResponse:
    return await serve_stream(request, request.app[HUB])
