"""Live delivery: the hub that fans ``updates`` out to websocket and SSE clients.

Channels are ``ticks:SYMBOL`` and ``candles:SYMBOL:RES``. On subscribe a client first gets a
snapshot with the channel's current sequence number, then every update with the next numbers;
sequence numbers come from the stream worker that owns the symbol, so every web node numbers a
channel the same way.

Resume: the hub keeps a bounded, contiguous history of each channel's recent update messages
(``LiveConfig.history_messages`` and ``history_age_ms``). A subscribe with ``since`` gets exactly
the messages after that number, announced by a ``subscribed`` message with ``"recovered": true``;
when the history no longer reaches back that far, a fresh snapshot with ``"recovered": false``.

Delivery never awaits a client in the fan-out: each client has an outbox that its own pump task
drains. The outbox is bounded. Past ``send_buffer_messages`` waiting messages, tick updates are
conflated (only the newest per channel waits); candle updates for the same bucket always collapse
into the newest; a subscription with ``max_hz`` gets at most that many messages a second, the
newest each time. An update that follows a skipped sequence number carries ``"conflated": true``.
Past ``send_buffer_bytes`` waiting bytes, or when the socket has not accepted a message for
``stall_timeout_ms``, the client is closed with code 4008. Both count only what the socket did
not take, so a websocket's kernel send buffer is bounded too (``socket_send_buffer_bytes``):
left to itself, loopback's grows to megabytes per connection before anything waits here.

Credentials: a connection that authenticated with a token holds private channels only while the
token is valid. Every subscribe to a private channel checks it again, and a timer at the token's
expiry closes a connection that still holds private channels with 4001 (re-authenticating with
``{"op":"auth",...}`` before then moves the timer).

What a client may ask of the server is bounded: ``max_channels_per_message`` channels in one
subscribe or unsubscribe, ``max_channels`` on one connection, and ``max_messages_per_s`` messages
a second with bursts of ``message_burst`` (``MessageRate``). Past a limit the message is refused
with an error that names the limit; a client that goes on sending while refused is closed with
1008.

Frames from a client must be masked (RFC 6455 section 5.1); aiohttp's reader does not check, so
``MaskedFramesOnly`` sits between the socket and aiohttp and fails a connection that sends an
unmasked frame: a close frame with 1002, then the TCP connection is closed, before the frame is
read.

Close codes: 1001 server going away (reconnect elsewhere), 1002 an unmasked frame, 1008 too many
messages, 1009 message too big, 4001 the token expired while the connection held private
channels, 4008 client too slow. A client that does not answer a ping within ``heartbeat_ms / 2``
gets no close frame: the connection is dropped (aiohttp's heartbeat, then an abort here), which
clients report as 1006.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import orjson
from aiohttp import WSCloseCode, WSMsgType, web

from stream.contract import (
    RESOLUTIONS,
    Candle,
    Consumer,
    DecodeError,
    InvalidSymbol,
    Precision,
    Store,
    Tick,
    check_symbol,
    decode_update,
    tick_public,
)
from web.auth import AuthConfig, Authenticator, AuthError, Identity, unauthorized
from web.errors import BadRequest

log = logging.getLogger(__name__)

CLOSE_PROTOCOL_ERROR = 1002
CLOSE_TOKEN_EXPIRED = 4001
CLOSE_TOO_SLOW = 4008
MAX_HZ_LIMIT = 1_000.0
#: the largest sequence number a client may send back: JavaScript's largest exact integer
MAX_SEQ = 2**53 - 1
WRITE_BATCH_MESSAGES = 64  # most messages one pump step writes to a socket at once
SUBSCRIBE_KEYS = frozenset({"op", "channels", "since", "max_hz"})
AUTH_KEYS = frozenset({"op", "api_key", "token"})


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveConfig:
    """Limits of live delivery; the ``[live]`` settings section."""

    history_messages: int = 1_000  # per channel, for resume
    history_age_ms: int = 300_000  # and no older than this
    send_buffer_messages: int = 1_000  # waiting messages past which tick updates are conflated
    send_buffer_bytes: int = 1_048_576  # waiting bytes past which a client is closed (4008)
    stall_timeout_ms: int = 30_000  # a socket that accepts nothing this long is closed (4008)
    heartbeat_ms: int = 20_000  # websocket ping interval; no pong within half of it: closed
    max_channels: int = 64  # per connection
    max_message_bytes: int = 65_536  # largest message a client may send (1009 past it)
    max_channels_per_message: int = 100  # channels one subscribe or unsubscribe may name
    max_messages_per_s: float = 20.0  # messages a connection may send a second; 0: no limit
    message_burst: int = 40  # messages it may send at once before that rate applies
    #: the kernel's send buffer of a websocket (SO_SNDBUF, which Linux doubles); 0: the
    #: system's own, which grows by itself (to megabytes) for a client that reads nothing
    socket_send_buffer_bytes: int = 65_536


class Counters(Protocol):
    """Process-wide counts of what live delivery did besides sending (``metrics.LiveCounters``)."""

    conflated: int
    dropped: int
    slow_closed: int


@dataclass(slots=True)
class _Counts:
    conflated: int = 0
    dropped: int = 0
    slow_closed: int = 0


@dataclass(slots=True)
class MessageRate:
    """A connection's token bucket: ``per_s`` messages a second, ``burst`` at once.

    A refused message costs a token too, so the bucket goes below zero: a client that backs off
    when refused is let in again once the rate has paid back what it sent, and one that keeps
    sending sinks further. One more ``burst`` of messages below zero, ``take`` says "close".
    Pure: time comes in as an argument.
    """

    per_s: float
    burst: int
    tokens: float = field(init=False)
    at_s: float | None = field(default=None, init=False)  # the last take's time

    def __post_init__(self) -> None:
        self.tokens = float(self.burst)

    def take(self, now_s: float) -> Literal["ok", "refused", "close"]:
        """Whether a message that arrives at ``now_s`` (seconds, any monotonic clock) is let
        in, refused, or one too many: the connection is to be closed."""
        if self.at_s is not None:
            earned = max(0.0, now_s - self.at_s) * self.per_s
            self.tokens = min(float(self.burst), self.tokens + earned)
        self.at_s = now_s
        self.tokens -= 1.0
        if self.tokens >= 0.0:
            return "ok"
        return "close" if self.tokens < -self.burst else "refused"


class ChannelError(ValueError):
    """A channel name that is malformed or names nothing the service knows."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def parse_channel(channel: str) -> tuple[str, str, str | None]:
    """``("ticks", symbol, None)`` or ``("candles", symbol, res)``; ``ChannelError`` otherwise."""
    parts = channel.split(":") if isinstance(channel, str) else []
    try:
        if len(parts) == 2 and parts[0] == "ticks":
            return "ticks", check_symbol(parts[1]), None
        if len(parts) == 3 and parts[0] == "candles":
            if parts[2] not in RESOLUTIONS:
                allowed = ", ".join(RESOLUTIONS)
                raise ChannelError(
                    "bad_channel", f"unknown resolution in {channel!r}; use {allowed}"
                )
            return "candles", check_symbol(parts[1]), parts[2]
    except InvalidSymbol as exc:
        raise ChannelError("bad_channel", f"{exc} in channel {channel!r}") from exc
    raise ChannelError(
        "bad_channel",
        f"channel {str(channel)[:60]!r} is not 'ticks:SYMBOL' or 'candles:SYMBOL:RES'",
    )


@dataclass(slots=True)
class _Channel:
    seq: int = 0
    tick: Tick | None = None
    candles: OrderedDict[int, Candle] = field(default_factory=OrderedDict)
    subscribers: set[Client] = field(default_factory=set)
    #: (seq, arrival time in loop seconds, value, its message if it had subscribers), contiguous
    #: in seq; a channel nobody watches keeps values and is encoded only if someone resumes
    recent: deque[tuple[int, float, Tick | Candle, str | None]] = field(default_factory=deque)


# An outbox entry: (channel, seq, message, is_control). Keys: (channel, kind, n) with kind 0 for
# one update (n = seq), 1 for a channel's conflated tick slot, 2 for a candle bucket
# (n = start_ms) and 3 for a control message (n = a counter).
_Entry = tuple[str, int, str, bool]
_Key = tuple[str, int, int]


@dataclass(slots=True)
class _Throttle:
    interval_s: float
    next_s: float = 0.0
    pending: OrderedDict[_Key, _Entry] = field(default_factory=OrderedDict)
    timer: asyncio.TimerHandle | None = None


class Client:
    """One connection's subscriptions and its bounded outbox; subclasses write to the wire."""

    #: most messages one pump step hands to ``_write_many``; 1 where a write reads ``sent_seq``
    write_batch = 1

    def __init__(self, config: LiveConfig, counters: Counters | None = None) -> None:
        self.config = config
        self.counters: Counters = counters if counters is not None else _Counts()
        self.channels: set[str] = set()
        self.outbox: OrderedDict[_Key, _Entry] = OrderedDict()
        self.sent_seq: dict[str, int] = {}
        self.throttles: dict[str, _Throttle] = {}
        self.buffered_bytes = 0
        self.peak_bytes = 0
        self.sent = 0
        self.conflated = 0
        self.writing = False  # a write to the socket has started and not finished
        self.stalled_since: float | None = None  # set by Hub.watch: when it saw no progress
        self.sent_at_look = 0
        self.closing: str | None = None  # why the client is being closed
        self.principal: str | None = None  # who authenticated, if anyone
        self.expires_s: float | None = None  # when the principal's token expires (epoch s)
        self._wake = asyncio.Event()
        self._controls = 0
        self._closer: asyncio.Task[None] | None = None

    @property
    def dropped(self) -> bool:
        return self.closing is not None

    def authenticate(self, identity: Identity | None) -> None:
        """Take ``identity`` (from the upgrade request's headers or an auth op) as the client's."""
        self.principal = None if identity is None else identity.name
        self.expires_s = None if identity is None else identity.expires_s

    def authorized(self, now_s: float) -> bool:
        """Whether the client may take private channels at ``now_s`` (epoch seconds)."""
        return self.principal is not None and (self.expires_s is None or now_s <= self.expires_s)

    # -- queueing: called from the fan-out, never awaits --------------------------------------

    def offer(self, channel: str, seq: int, bucket: int | None, text: str) -> None:
        """Queue one update of ``channel``; conflates rather than waits."""
        if self.closing is not None:
            return
        if bucket is None and not self.throttles:
            outbox = self.outbox
            if len(outbox) < self.config.send_buffer_messages:
                # the common case, kept short: one update of a client that keeps up
                if not outbox:
                    if not self.writing and self._send_now(channel, seq, text):
                        return
                    self._wake.set()  # the pump waits only on an empty outbox
                outbox[(channel, 0, seq)] = (channel, seq, text, False)
                size = self.buffered_bytes = self.buffered_bytes + len(text)
                if size > self.peak_bytes:
                    self.peak_bytes = size
                    if size > self.config.send_buffer_bytes:
                        self.kill(
                            f"too slow: more than {self.config.send_buffer_bytes} bytes waiting"
                        )
                return
        entry = (channel, seq, text, False)
        key = (channel, 2, bucket) if bucket is not None else (channel, 1, 0)
        throttle = self.throttles.get(channel)
        if throttle is not None:
            if throttle.pending.pop(key, None) is not None:
                self.conflated += 1
                self.counters.conflated += 1
            throttle.pending[key] = entry
            if throttle.timer is None:
                loop = asyncio.get_running_loop()
                due = max(loop.time(), throttle.next_s)
                throttle.timer = loop.call_at(due, self._release, channel)
            return
        if bucket is None and len(self.outbox) < self.config.send_buffer_messages:
            key = (channel, 0, seq)
        self._put(key, entry)

    def _send_now(self, channel: str, seq: int, text: str) -> bool:
        """Nothing waits and no write is under way: write ``text`` at once if the socket takes
        it without buffering (then no pump wakes up); False leaves it to the outbox."""
        last = self.sent_seq.get(channel)
        if (last is not None and seq != last + 1) or not self._write_now(text):
            return False
        self.sent_seq[channel] = seq
        self.sent += 1
        return True

    def offer_run(self, channel: str, run: list[tuple[int, str]]) -> None:
        """Queue consecutive updates of ``channel`` (the ticks of one bus record); a client
        that keeps up gets them in one write, since a write costs the same for one frame or
        several."""
        first, last = run[0][0], run[-1][0]
        if (
            self.closing is None
            and not self.throttles
            and not self.outbox
            and not self.writing
            and last - first == len(run) - 1
            and self.sent_seq.get(channel, first - 1) == first - 1
            and self._write_now_run(tuple(text for _, text in run))
        ):
            self.sent_seq[channel] = last
            self.sent += len(run)
            return
        for seq, text in run:
            self.offer(channel, seq, None, text)

    def _write_now(self, text: str) -> bool:
        return False

    def _write_now_run(self, texts: tuple[str, ...]) -> bool:
        return False

    def control(self, message: Mapping[str, object], *, channel: str = "", seq: int = 0) -> None:
        """Queue a message that is never conflated (snapshot, subscribed, error, pong)."""
        if self.closing is not None:
            return
        self._controls += 1
        self._put(("", 3, self._controls), (channel, seq, orjson.dumps(message).decode(), True))

    def replay(self, channel: str, missed: list[tuple[int, str]]) -> None:
        """Queue the update messages a resuming client missed, in order, never conflated."""
        for seq, text in missed:
            self._put((channel, 0, seq), (channel, seq, text, False))

    def error(self, code: str, message: str) -> None:
        self.control({"type": "error", "code": code, "message": message})

    def set_rate(self, channel: str, max_hz: float | None) -> None:
        old = self.throttles.pop(channel, None)
        if old is not None:
            if old.timer is not None:
                old.timer.cancel()
            for key, entry in old.pending.items():
                self._put(key, entry)
        if max_hz is not None:
            self.throttles[channel] = _Throttle(interval_s=1.0 / max_hz)

    def forget(self, channel: str) -> None:
        self.channels.discard(channel)
        self.sent_seq.pop(channel, None)
        throttle = self.throttles.pop(channel, None)
        if throttle is not None and throttle.timer is not None:
            throttle.timer.cancel()

    def _release(self, channel: str) -> None:
        throttle = self.throttles.get(channel)
        if throttle is None:
            return
        throttle.timer = None
        throttle.next_s = asyncio.get_running_loop().time() + throttle.interval_s
        for key, entry in throttle.pending.items():
            self._put(key, entry)
        throttle.pending.clear()

    def _put(self, key: _Key, entry: _Entry) -> None:
        if self.closing is not None:
            return
        old = self.outbox.pop(key, None)
        if old is not None:
            self.buffered_bytes -= len(old[2])
            self.conflated += 1
            self.counters.conflated += 1
        self.outbox[key] = entry
        self.buffered_bytes += len(entry[2])
        if self.buffered_bytes > self.peak_bytes:
            self.peak_bytes = self.buffered_bytes
        self._wake.set()
        if self.buffered_bytes > self.config.send_buffer_bytes:
            self.kill(f"too slow: more than {self.config.send_buffer_bytes} bytes waiting")

    def kill(self, reason: str) -> None:
        """Close the client with 4008 without waiting for it; its outbox is freed at once."""
        if self.closing is not None:
            return
        self.counters.slow_closed += 1
        log.warning("closing a live client: %s (%d messages sent)", reason, self.sent)
        self._shut(reason)
        self._closer = asyncio.get_running_loop().create_task(self._close_slow(reason))

    def _shut(self, reason: str) -> None:
        """Stop queueing for the client and free what waits; its close is the caller's."""
        self.closing = reason
        self.counters.dropped += len(self.outbox)
        self.outbox.clear()
        self.buffered_bytes = 0
        for throttle in self.throttles.values():
            if throttle.timer is not None:
                throttle.timer.cancel()
        self.throttles.clear()
        self._wake.set()

    # -- the pump: the only place that awaits the client --------------------------------------

    async def pump(self) -> None:
        """Write queued messages until the client is closed, what waits in one go."""
        outbox = self.outbox
        while self.closing is None:
            if not outbox:
                self._wake.clear()
                await self._idle()
                continue
            batch: list[tuple[str, str]] = []
            while outbox and len(batch) < self.write_batch:
                _, (channel, seq, text, is_control) = outbox.popitem(last=False)
                self.buffered_bytes -= len(text)
                if channel:
                    last = self.sent_seq.get(channel)
                    if not is_control:
                        if last is not None and seq <= last:
                            continue  # superseded by a snapshot or a newer value already sent
                        if last is not None and seq != last + 1:
                            text = text[:-1] + ',"conflated":true}'
                    self.sent_seq[channel] = seq
                batch.append((text, channel))
            if not batch:
                continue
            self.writing = True
            await self._write_many(batch)
            self.writing = False
            self.sent += len(batch)

    async def finish(self) -> None:
        """Wait for a close started by ``kill`` (or another close the client started)."""
        if self._closer is not None:
            with contextlib.suppress(Exception):
                await self._closer

    async def going_away(self) -> None:
        """Tell the client that this server is shutting down (reconnect elsewhere)."""
        raise NotImplementedError

    async def _idle(self) -> None:
        await self._wake.wait()

    async def _write(self, text: str, channel: str) -> None:
        raise NotImplementedError

    async def _write_many(self, batch: list[tuple[str, str]]) -> None:
        """Write ``(text, channel)`` messages in order; one ``_write`` each unless overridden."""
        for text, channel in batch:
            await self._write(text, channel)

    async def _close_slow(self, reason: str) -> None:
        raise NotImplementedError


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
        super().__init__(config, counters)
        self.request = request
        self.ws = ws
        self.auth = auth or Authenticator(AuthConfig())
        self._expiry: asyncio.TimerHandle | None = None

    def authenticate(self, identity: Identity | None) -> None:
        """Take ``identity``, and set a timer at its token's expiry (moved by a new token)."""
        super().authenticate(identity)
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if self.expires_s is not None and self.closing is None:
            delay_s = max(0.0, self.expires_s - time.time())
            self._expiry = asyncio.get_running_loop().call_later(delay_s, self._expired)

    def _expired(self) -> None:
        """The token's expiry timer: close the connection if it holds a private channel."""
        self._expiry = None
        now_s = time.time()
        if self.expires_s is None or self.closing is not None:
            return
        if now_s <= self.expires_s:  # the wall clock was set back: wait again
            self._expiry = asyncio.get_running_loop().call_later(
                self.expires_s - now_s, self._expired
            )
            return
        private = sorted(c for c in self.channels if self.auth.is_private(parse_channel(c)[1]))
        if private:
            log.info("closing a websocket client of %s: its token expired", self.principal)
            self.close_with(CLOSE_TOKEN_EXPIRED, f"token expired; it held {private[0]}")

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

    async def finish(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        await super().finish()

    async def _write(self, text: str, channel: str) -> None:
        await self.ws.send_str(text)

    def _write_now(self, text: str) -> bool:
        transport = self._idle_transport()
        if transport is None:
            return False
        transport.write(_text_frame(text))
        return True

    def _write_now_run(self, texts: tuple[str, ...]) -> bool:
        transport = self._idle_transport()
        if transport is None:
            return False
        transport.write(_text_frames(texts))
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
        transport.write(b"".join([_text_frame(text) for text, _ in batch]))
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


class FrameMasks:
    """Follows the frame headers in the bytes a client sends (RFC 6455 section 5.2) to find the
    first frame that is not masked. Sans-I/O: bytes in, a count out; it passes over payloads
    without reading them."""

    def __init__(self) -> None:
        self._head = bytearray()  # the start of a frame header split across reads
        self._skip = 0  # bytes of the current frame (mask key and payload) still to come
        self.unmasked = False  # a frame without a mask was seen; the stream is bad from there

    def feed(self, data: bytes) -> int:
        """How many of ``data``'s bytes belong to masked frames: all of them, or up to where the
        first unmasked frame's header starts (0 if it started in an earlier read, or earlier)."""
        if self.unmasked:
            return 0
        head, pos, end = self._head, 0, len(data)
        while pos < end:
            if self._skip:
                step = min(self._skip, end - pos)
                self._skip -= step
                pos += step
                continue
            began = pos - len(head)  # where this header started in data; < 0: in an earlier read
            need = 2 if len(head) < 2 else _header_bytes(head[1])
            take = min(need - len(head), end - pos)
            head += data[pos : pos + take]
            pos += take
            if len(head) < need:
                continue
            if need == 2:
                if not head[1] & 0x80:
                    self.unmasked = True
                    head.clear()
                    return max(began, 0)
                if _header_bytes(head[1]) > 2:
                    continue  # then the extended length
            size = head[1] & 0x7F
            if size >= 126:
                size = int.from_bytes(head[2:], "big")
            self._skip = 4 + size  # the mask key, then the payload
            head.clear()
        return end


def _header_bytes(second: int) -> int:
    """A frame header's length up to its mask key, from its second byte (the length field)."""
    size = second & 0x7F
    return 4 if size == 126 else 10 if size == 127 else 2


class MaskedFramesOnly(asyncio.Protocol):
    """Between a websocket's transport and aiohttp's protocol: passes the client's bytes on
    while its frames are masked. At the first unmasked frame it stops passing anything on and,
    once the handshake is answered (``open``), fails the connection as RFC 6455 section 7.1.7
    says: a close frame with 1002, then the TCP connection is closed (aborted if the client has
    not taken it within a second).

    aiohttp offers no hook where frames are read, so this one sits under it, using nothing but
    asyncio's ``Transport.set_protocol``. The bytes that came in with the upgrade request are
    already in aiohttp's hands when the handler runs: they are checked (not passed on again)
    from aiohttp's buffer of them, where one exists.
    """

    def __init__(self, transport: asyncio.Transport, inner: asyncio.Protocol) -> None:
        self.transport = transport
        self.inner = inner
        self.frames = FrameMasks()
        self.failed = False
        self._on_fail: Callable[[str], None] | None = None
        self._opened = False
        self._abort: asyncio.TimerHandle | None = None

    @classmethod
    def install(cls, request: web.Request) -> MaskedFramesOnly | None:
        """Put a check under ``request``'s connection, before its handshake is answered."""
        # Not ``isinstance(transport, asyncio.Transport)``: uvloop's transports (pricestream
        # run) are not asyncio's classes, though they have the same protocol methods.
        transport = request.transport
        inner = transport.get_protocol() if transport is not None else None
        if transport is None or not isinstance(inner, asyncio.Protocol):
            return None
        guard = cls(transport, inner)
        # aiohttp keeps what followed the upgrade request until the websocket reader exists
        tail = getattr(request.protocol, "_message_tail", b"")
        if isinstance(tail, bytes):
            guard.frames.feed(tail)
        transport.set_protocol(guard)
        return guard

    def open(self, on_fail: Callable[[str], None]) -> None:
        """The handshake is answered: fail the connection now or at its first unmasked frame;
        ``on_fail`` (why) is called first."""
        self._on_fail = on_fail
        self._opened = True
        if self.frames.unmasked:
            self._fail()

    def data_received(self, data: bytes) -> None:
        if self.frames.unmasked:
            return
        good = self.frames.feed(data)
        if good:
            self.inner.data_received(data if good == len(data) else data[:good])
        if self.frames.unmasked and self._opened:
            self._fail()

    def _fail(self) -> None:
        if self.failed:
            return
        self.failed = True
        reason = "frames from a client must be masked (RFC 6455 section 5.1)"
        log.info("failing a websocket connection: it sent an unmasked frame")
        if self._on_fail is not None:
            self._on_fail(reason)
        message = CLOSE_PROTOCOL_ERROR.to_bytes(2, "big") + reason.encode()
        # A server frame is never masked; a close frame carries at most 125 bytes.
        self.transport.write(bytes((0x88, len(message))) + message)
        self.transport.close()
        self._abort = asyncio.get_running_loop().call_later(1.0, self.transport.abort)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._abort is not None:
            self._abort.cancel()
            self._abort = None
        self.inner.connection_lost(exc)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


@functools.lru_cache(maxsize=256)
def _text_frame(text: str) -> bytes:
    """One unmasked, uncompressed, final websocket text frame (RFC 6455 section 5.2); cached,
    as one update goes to every subscriber of its channel in a row."""
    data = text.encode()
    n = len(data)
    if n < 126:
        return bytes((0x81, n)) + data
    if n < 65_536:
        return b"\x81\x7e" + n.to_bytes(2, "big") + data
    return b"\x81\x7f" + n.to_bytes(8, "big") + data


@functools.lru_cache(maxsize=64)
def _text_frames(texts: tuple[str, ...]) -> bytes:
    """The frames of several updates, back to back: one write for every subscriber."""
    return b"".join([_text_frame(text) for text in texts])


def newest_candles(stored: Iterable[Candle], recent: Iterable[Candle]) -> dict[int, Candle]:
    """Stored candles with the hub's recent ones laid over them, by start time; where both
    have a candle, the one with more ticks (a candle only ever gains ticks), else the recent."""
    merged = {c.start_ms: c for c in stored}
    for c in recent:
        old = merged.get(c.start_ms)
        if old is None or c.ticks >= old.ticks:
            merged[c.start_ms] = c
    return merged


def _update_text(channel: str, seq: int, value: Tick | Candle, decimals: int | None) -> str:
    data = tick_public(value, decimals) if isinstance(value, Tick) else value.public(decimals)
    return orjson.dumps({"type": "update", "channel": channel, "seq": seq, "data": data}).decode()


class Hub:
    """Reads ``updates`` from the bus, keeps each channel's recent state, fans out."""

    def __init__(
        self,
        *,
        consumer: Consumer,
        store: Store,
        history: int = 500,
        config: LiveConfig | None = None,
        auth: Authenticator | None = None,
        counters: Counters | None = None,
        precision: Precision | None = None,
    ) -> None:
        self.consumer = consumer
        self.precision = precision or Precision()  # the decimals prices are sent with
        self.counters: Counters = counters if counters is not None else _Counts()
        self.auth = auth or Authenticator(AuthConfig())
        self.store = store
        self.history = history  # candles kept per candle channel for snapshots
        self.config = config or LiveConfig()
        self.channels: dict[str, _Channel] = {}
        self.latest: dict[str, Tick] = {}
        self.clients: set[Client] = set()
        self.delivered = 0
        self.failed: BaseException | None = None  # why ``run`` stopped, if it did

    async def run(self) -> None:
        """Fan out until cancelled; an error is logged and kept for the readiness check."""
        try:
            await self._run()
        except Exception as exc:
            self.failed = exc
            log.exception("the websocket hub stopped reading updates")
            raise

    async def watch(self) -> None:
        """Close clients whose socket has accepted nothing for ``stall_timeout_ms``."""
        loop = asyncio.get_running_loop()
        limit_s = self.config.stall_timeout_ms / 1000
        every_s = max(0.05, min(1.0, limit_s / 4))
        while True:
            await asyncio.sleep(every_s)
            now = loop.time()
            for client in list(self.clients):
                # stalled: a write is pending and nothing was sent since the last look
                if not client.writing or client.sent != client.sent_at_look:
                    client.sent_at_look, client.stalled_since = client.sent, None
                elif client.stalled_since is None:
                    client.stalled_since = now
                elif now - client.stalled_since > limit_s:
                    client.kill(f"too slow: nothing read for {self.config.stall_timeout_ms} ms")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            records = await self.consumer.poll(max_records=2_000, timeout_ms=500)
            now = loop.time()
            for rec in records:
                try:
                    update = decode_update(rec.value)
                except DecodeError:
                    log.exception("skipping an undecodable update at offset %d", rec.offset)
                    continue
                self.on_ticks(update.ticks, now_s=now)
                for seq, candle in update.candles:
                    self.on_candle(seq, candle, now_s=now)
            if records:
                await self.consumer.commit()

    def on_ticks(self, ticks: Sequence[tuple[int, Tick]], *, now_s: float) -> None:
        """Fan out the ticks of one update record. A subscriber gets a channel's ticks of the
        record in one write: when the service falls behind, records carry more ticks, so each
        message costs less just when it matters."""
        runs: dict[str, list[tuple[int, str]]] = {}
        for seq, tick in ticks:
            latest = self.latest.get(tick.symbol)
            if latest is None or tick.ts_ms >= latest.ts_ms:
                self.latest[tick.symbol] = tick
            name = f"ticks:{tick.symbol}"
            ch = self.channels.get(name) or self.channels.setdefault(name, _Channel())
            if seq <= ch.seq:
                continue  # republished after a stream worker restart: clients have it already
            ch.seq, ch.tick = seq, tick
            text = self._remember(ch, name, seq, tick, now_s)
            if text is not None:
                runs.setdefault(name, []).append((seq, text))
        for name, run in runs.items():
            subscribers = self.channels[name].subscribers
            if len(run) == 1:
                seq, text = run[0]
                for client in subscribers:
                    client.offer(name, seq, None, text)
            else:
                for client in subscribers:
                    client.offer_run(name, run)
            self.delivered += len(subscribers) * len(run)

    def on_candle(self, seq: int, candle: Candle, *, now_s: float) -> None:
        name = f"candles:{candle.symbol}:{candle.res}"
        ch = self.channels.get(name) or self.channels.setdefault(name, _Channel())
        if seq <= ch.seq:
            return
        ch.seq = seq
        ch.candles[candle.start_ms] = candle
        if len(ch.candles) > self.history:
            ch.candles.popitem(last=False)
        self._fan_out(ch, name, seq, candle, candle.start_ms, now_s)

    def _fan_out(
        self,
        ch: _Channel,
        name: str,
        seq: int,
        value: Tick | Candle,
        bucket: int | None,
        now_s: float,
    ) -> None:
        text = self._remember(ch, name, seq, value, now_s)
        if text is not None:
            for client in ch.subscribers:
                client.offer(name, seq, bucket, text)
            self.delivered += len(ch.subscribers)

    def _remember(
        self, ch: _Channel, name: str, seq: int, value: Tick | Candle, now_s: float
    ) -> str | None:
        """Keep ``value`` in the channel's history; its message if anyone is subscribed."""
        places = self.precision.of(value.symbol)
        text = _update_text(name, seq, value, places) if ch.subscribers else None
        recent = ch.recent
        if recent and recent[-1][0] + 1 != seq:
            recent.clear()  # a gap (this node missed updates): resume only from here on
        recent.append((seq, now_s, value, text))
        if len(recent) > self.config.history_messages:
            recent.popleft()
        return text

    def missed(self, channel: str, since: int, *, now_s: float) -> list[tuple[int, str]] | None:
        """The update messages after ``since``, or None when the history is gone."""
        ch = self.channels.get(channel)
        if ch is None:
            return None
        if since >= ch.seq:
            return []
        recent = ch.recent
        oldest_s = now_s - self.config.history_age_ms / 1000
        while recent and recent[0][1] < oldest_s:
            recent.popleft()
        if not recent or recent[0][0] > since + 1 or recent[-1][0] != ch.seq:
            return None
        return [
            (seq, text or _update_text(channel, seq, value, self.precision.of(value.symbol)))
            for seq, _, value, text in recent
            if seq > since
        ]

    def recent_candles(self, symbol: str, res: str) -> list[Candle]:
        ch = self.channels.get(f"candles:{symbol}:{res}")
        return list(ch.candles.values()) if ch else []

    async def subscribe(
        self,
        client: Client,
        channel: str,
        *,
        since: int | None = None,
        max_hz: float | None = None,
    ) -> None:
        """Send ``client`` what it missed since ``since`` (or a snapshot) and every update after."""
        _, symbol, res = parse_channel(channel)
        if self.auth.is_private(symbol) and not client.authorized(time.time()):
            if client.principal is None:
                why = "authenticate with an API key or a token first"
            else:
                why = 'the token has expired: send {"op":"auth","token":...} with a fresh one'
            raise ChannelError("unauthorized", f"channel {channel!r} is private: {why}")
        if channel in client.channels:
            client.set_rate(channel, max_hz)
            return
        state = await self.store.state(symbol)
        if state is None and symbol not in self.latest:
            raise ChannelError("unknown_symbol", f"no prices for {symbol!r} (channel {channel!r})")
        history: list[Candle] = []
        if res is not None:
            history = await self.store.candles(symbol, res, limit=self.history)
        # No await from here on: the snapshot and the subscription see the same updates.
        ch = self.channels.get(channel) or self.channels.setdefault(channel, _Channel())
        stored_seq = state.seqs.get(res or "ticks", 0) if state else 0
        ch.seq = max(ch.seq, stored_seq)
        client.set_rate(channel, max_hz)
        if since is not None:
            missed = self.missed(channel, since, now_s=asyncio.get_running_loop().time())
            size = sum(len(text) for _, text in missed or ())
            if (
                missed is not None
                and client.buffered_bytes + size <= client.config.send_buffer_bytes
            ):
                msg = {"type": "subscribed", "channel": channel, "seq": since, "recovered": True,
                       "missed": len(missed)}  # fmt: skip
                client.control(msg, channel=channel, seq=since)
                client.replay(channel, missed)
                ch.subscribers.add(client)
                client.channels.add(channel)
                return
        data: object
        if res is None:
            tick = ch.tick or (state.latest if state else None)
            data = tick_public(tick, self.precision.of(symbol)) if tick else None
        else:
            merged = newest_candles(history, ch.candles.values())
            places = self.precision.of(symbol)
            data = {"candles": [merged[k].public(places) for k in sorted(merged)][-self.history :]}
        snap: dict[str, object] = {"type": "snapshot", "channel": channel, "seq": ch.seq}
        if since is not None:
            snap["recovered"] = False
        snap["data"] = data
        client.control(snap, channel=channel, seq=ch.seq)
        ch.subscribers.add(client)
        client.channels.add(channel)

    def unsubscribe(self, client: Client, channel: str) -> None:
        ch = self.channels.get(channel)
        if ch is not None:
            ch.subscribers.discard(client)
        client.forget(channel)

    def drop(self, client: Client) -> None:
        for channel in list(client.channels):
            self.unsubscribe(client, channel)
        self.clients.discard(client)


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
                    client.error("rate_limited", _rate_limit_text(config))
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


def bound_send_buffer(transport: asyncio.BaseTransport | None, size_bytes: int) -> None:
    """Fix the kernel's send buffer of ``transport``'s socket at ``size_bytes`` (0: leave it).

    What the kernel holds is invisible to a client's outbox: a client that reads nothing first
    fills its socket's send buffer, and only then do messages wait where ``send_buffer_bytes``
    and ``stall_timeout_ms`` see them. A fixed size also stops the kernel growing it.
    """
    sock = transport.get_extra_info("socket") if transport is not None and size_bytes else None
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size_bytes)
    except OSError as exc:  # not every socket has one to set
        log.debug("cannot bound a websocket's send buffer: %s", exc)


def _rate_limit_text(config: LiveConfig) -> str:
    return (
        f"at most {config.max_messages_per_s:g} messages a second (max_messages_per_s), "
        f"{config.message_burst} at once (message_burst): this message and those that follow "
        "within the rate are refused; keep sending past it and the connection is closed (1008)"
    )


@dataclass(frozen=True, slots=True)
class Subscription:
    """A validated subscribe or unsubscribe request."""

    op: str
    channels: tuple[str, ...]
    since: Mapping[str, int]
    max_hz: float | None
    api_key: str | None = None
    token: str | None = None

    def __repr__(self) -> str:  # never show credentials
        return f"Subscription(op={self.op!r}, channels={self.channels!r})"


def parse_request(msg: object) -> Subscription:
    """Validate one decoded client message; ``BadRequest`` says what is wrong."""
    if not isinstance(msg, dict):
        raise BadRequest("bad_message", 'send an object like {"op":"subscribe","channels":[...]}')
    op = msg.get("op")
    if op == "ping":
        return Subscription("ping", (), {}, None)
    if op == "auth":
        if set(msg) - AUTH_KEYS or not any(
            isinstance(msg.get(k), str) for k in ("api_key", "token")
        ):
            raise BadRequest(
                "bad_message", 'send {"op":"auth","api_key":KEY} or {"op":"auth","token":JWT}'
            )
        key, token = msg.get("api_key"), msg.get("token")
        return Subscription("auth", (), {}, None, api_key=key if isinstance(key, str) else None,
                            token=token if isinstance(token, str) else None)  # fmt: skip
    if op not in ("subscribe", "unsubscribe"):
        raise BadRequest(
            "bad_op", f"unknown op {str(op)[:30]!r}; use subscribe, unsubscribe, auth or ping"
        )
    unknown = set(msg) - SUBSCRIBE_KEYS
    if unknown:
        allowed = ", ".join(sorted(SUBSCRIBE_KEYS))
        raise BadRequest(
            "bad_message", f"unknown field {sorted(unknown)[0][:30]!r}; allowed: {allowed}"
        )
    channels = msg.get("channels")
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise BadRequest("bad_message", "'channels' must be a list of channel names")
    since = msg.get("since", {})
    if not isinstance(since, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_SEQ for v in since.values()
    ):
        raise BadRequest(
            "bad_message",
            f"'since' must map channel names to sequence numbers from 0 to {MAX_SEQ}",
        )
    max_hz = msg.get("max_hz")
    if max_hz is not None and (
        isinstance(max_hz, bool)
        or not isinstance(max_hz, int | float)
        or not 0 < max_hz <= MAX_HZ_LIMIT
    ):
        raise BadRequest(
            "bad_message", f"'max_hz' must be a number above 0 and at most {MAX_HZ_LIMIT:g}"
        )
    return Subscription(op, tuple(channels), since, None if max_hz is None else float(max_hz))


async def handle_message(hub: Hub, client: Client, text: str) -> None:
    try:
        msg = orjson.loads(text)
    except orjson.JSONDecodeError:
        client.error("bad_json", f"message is not JSON: {text[:60]!r}")
        return
    try:
        req = parse_request(msg)
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
