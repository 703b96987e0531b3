"""The ``/ws`` endpoint: a websocket connection's client, and its messages answered."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiohttp import WSCloseCode, WSMsgType, web

from web.auth import Authenticator, AuthError, unauthorized
from web.errors import BadRequest
from web.live.client import Client
from web.live.config import CLOSE_TOKEN_EXPIRED, CLOSE_TOO_SLOW, Counters, LiveConfig
from web.live.frames import text_frame, text_frames
from web.live.guard import MaskedFramesOnly, bound_send_buffer
from web.live.hub import Hub
from web.live.protocol import (
    ChannelError,
    MessageRate,
    Subscription,
    decode_request,
    rate_limit_text,
)

log = logging.getLogger(__name__)

WRITE_BATCH_MESSAGES = 64  # most messages one pump step writes to a socket at once


class WsClient(Client):
    """A websocket connection."""

    write_batch = WRITE_BATCH_MESSAGES

    def __init__(
        self,
        request: web.Request,
        ws: web.WebSocketResponse,
        config: LiveConfig,
        counters: Counters | None = None,
        *,
        auth: Authenticator | None = None,
    ) -> None:
        super().__init__(config, counters, auth=auth)
        self.request = request
        self.ws = ws

    def _token_expired(self, reason: str) -> None:
        self.close_with(CLOSE_TOKEN_EXPIRED, reason)

    def protocol_error(self, reason: str) -> None:
        """The connection is being failed under aiohttp (``MaskedFramesOnly``): answer nothing
        more and free what waits."""
        if self.closing is None:
            self._shut(reason)

    def close_with(self, code: int, reason: str) -> None:
        """Close the connection with ``code`` without waiting for it; ``finish`` awaits it."""
        if self.closing is not None:
            return
        self._shut(reason)
        self._closer = asyncio.get_running_loop().create_task(self._close(code, reason))

    async def _write(self, text: str, channel: str) -> None:
        await self.ws.send_str(text)

    def _write_now(self, text: str) -> bool:
        transport = self._idle_transport()
        if transport is None:
            return False
        transport.write(text_frame(text))
        return True

    def _write_now_run(self, texts: tuple[str, ...]) -> bool:
        transport = self._idle_transport()
        if transport is None:
            return False
        transport.write(text_frames(texts))
        return True

    def _idle_transport(self) -> asyncio.Transport | None:
        """The socket, if it is open and buffers nothing (a write goes straight out)."""
        transport = self.request.transport
        if (
            transport is None
            or transport.is_closing()
            or self.ws.closed
            or transport.get_write_buffer_size()
        ):
            return None
        return transport

    async def _write_many(self, batch: list[tuple[str, str]]) -> None:
        # Several waiting messages go out as their frames in one transport write: the cost of a
        # send is per write (a system call and a coroutine step), not per byte. The socket was
        # prepared without compression, so a frame is its header and the bytes.
        if len(batch) == 1:
            await self.ws.send_str(batch[0][0])
            return
        transport = self.request.transport
        if transport is None or transport.is_closing() or self.ws.closed:
            raise ConnectionResetError("the websocket is closed")
        transport.write(b"".join([text_frame(text) for text, _ in batch]))
        await self.request.writer.drain()  # waits only while the transport is paused

    async def going_away(self) -> None:
        with contextlib.suppress(TimeoutError, ConnectionError):
            await asyncio.wait_for(
                self.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown"), 1.0
            )

    async def _close_slow(self, reason: str) -> None:
        await self._close(CLOSE_TOO_SLOW, reason)

    async def _close(self, code: int, reason: str) -> None:
        # A client that reads nothing never takes the close frame either: then drop the socket.
        try:
            await asyncio.wait_for(self.ws.close(code=code, message=reason.encode()[:120]), 1.0)
        except (TimeoutError, ConnectionError):
            transport = self.request.transport
            if transport is not None:
                transport.abort()


async def serve_client(request: web.Request, hub: Hub) -> web.WebSocketResponse:
    """The ``/ws`` endpoint: subscribe/unsubscribe/ping ops in, snapshots and updates out."""
    config = hub.config
    try:
        identity = hub.auth.identify_headers(request.headers, now_s=time.time())
    except AuthError as exc:
        raise unauthorized(str(exc)) from None
    # No per-message deflate: frames are small and compressing each one for every client costs
    # more CPU than the bytes it saves on loopback and LAN links.
    ws = web.WebSocketResponse(
        heartbeat=config.heartbeat_ms / 1000, max_msg_size=config.max_message_bytes, compress=False
    )
    # Checked from before the handshake's answer, so no frame gets past unchecked; only on an
    # upgrade that will go through, so a refused one's connection stays plain HTTP.
    masks = MaskedFramesOnly.install(request) if ws.can_prepare(request).ok else None
    await ws.prepare(request)
    bound_send_buffer(request.transport, config.socket_send_buffer_bytes)
    client = WsClient(request, ws, config, hub.counters, auth=hub.auth)
    hub.clients.add(client)
    pump = asyncio.create_task(client.pump())
    rate = MessageRate(config.max_messages_per_s, config.message_burst)
    refusing = False  # one error for a run of refused messages, not one each
    loop = asyncio.get_running_loop()
    try:
        if masks is not None:
            masks.open(client.protocol_error)
        client.authenticate(identity)
        async for msg in ws:
            if client.closing is not None:
                break  # being closed (too slow, token expired): nothing more to answer
            if msg.type is not WSMsgType.TEXT and msg.type is not WSMsgType.BINARY:
                continue
            verdict = rate.take(loop.time()) if config.max_messages_per_s else "ok"
            if verdict == "close":
                log.info("closing a websocket client: it kept sending past the message rate")
                client.close_with(
                    WSCloseCode.POLICY_VIOLATION,
                    f"too many messages: at most {config.max_messages_per_s:g} a second "
                    "(max_messages_per_s)",
                )
                break
            if verdict == "refused":
                if not refusing:
                    client.error("rate_limited", rate_limit_text(config))
                refusing = True
                continue
            refusing = False
            if msg.type is WSMsgType.BINARY:
                client.error("bad_message", "send JSON text frames")
                continue
            await handle_message(hub, client, msg.data)
    finally:
        hub.drop(client)
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
        if isinstance(ws.exception(), TimeoutError):
            # No pong in time. aiohttp closes the transport gracefully, which would keep what
            # waits for a peer that reads nothing (and the socket) until TCP gives up.
            log.info("dropping a websocket client: no pong within %d ms", config.heartbeat_ms // 2)
            transport = request.transport
            if transport is not None:
                transport.abort()
        await client.finish()
        if not ws.closed:
            with contextlib.suppress(TimeoutError, ConnectionError):
                await asyncio.wait_for(ws.close(code=WSCloseCode.GOING_AWAY), 1.0)
    return ws


async def handle_message(hub: Hub, client: Client, text: str) -> None:
    """Answer one text message of a client."""
    try:
        req = decode_request(text)
    except BadRequest as exc:
        client.error(exc.code, str(exc))
        return
    await apply_request(hub, client, req)


async def apply_request(hub: Hub, client: Client, req: Subscription) -> None:
    if req.op == "ping":
        client.control({"type": "pong"})
        return
    if req.op == "auth":
        try:
            identity = hub.auth.identify(api_key=req.api_key, token=req.token, now_s=time.time())
        except AuthError as exc:
            client.error("unauthorized", str(exc))
            return
        client.authenticate(identity)
        client.control({"type": "authenticated", "who": client.principal})
        return
    max_channels, per_message = hub.config.max_channels, hub.config.max_channels_per_message
    if len(req.channels) > per_message:
        # refused before any work: each channel may cost a store lookup and an answer
        client.error(
            "too_many_channels_in_message",
            f"at most {per_message} channels in one message (max_channels_per_message), "
            f"got {len(req.channels)}: send them in several",
        )
        return
    for channel in req.channels:
        if req.op == "unsubscribe":
            hub.unsubscribe(client, channel)
            continue
        if channel not in client.channels and len(client.channels) >= max_channels:
            client.error(
                "too_many_channels",
                f"at most {max_channels} channels per connection (max_channels)",
            )
            return
        try:
            await hub.subscribe(client, channel, since=req.since.get(channel), max_hz=req.max_hz)
        except ChannelError as exc:
            client.error(exc.code, str(exc))
