"""Live delivery: the hub that fans ``updates`` out to websocket clients.

Channels are ``ticks:SYMBOL`` and ``candles:SYMBOL:RES``. On subscribe a client first gets a
snapshot with the channel's current sequence number, then every update with the next numbers;
sequence numbers come from the stream worker that owns the symbol, so every web node numbers a
channel the same way.

Each connection has a bounded send queue. A client that falls so far behind that its queue is
full is closed with code 4008 ("too slow") rather than letting server memory grow.

Close codes: 1001 server going away (reconnect elsewhere), 4008 client too slow.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass, field

import orjson
from aiohttp import WSCloseCode, WSMsgType, web

from stream.contract import (
    RESOLUTIONS,
    Candle,
    Consumer,
    DecodeError,
    InvalidSymbol,
    Store,
    Tick,
    check_symbol,
    decode_update,
    tick_public,
)

log = logging.getLogger(__name__)

CLOSE_TOO_SLOW = 4008


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


class Client:
    """One websocket connection: its subscriptions and its bounded send queue."""

    def __init__(self, ws: web.WebSocketResponse, *, max_queue: int) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=max_queue)
        self.channels: set[str] = set()
        self.dropped = False

    def send(self, text: str) -> None:
        if self.dropped:
            return
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.dropped = True
            log.warning("closing a websocket client that is %d messages behind", self.queue.qsize())
            asyncio.get_running_loop().create_task(
                self.ws.close(code=CLOSE_TOO_SLOW, message=b"too slow: send queue full")
            )

    async def pump(self) -> None:
        """Send queued messages until the connection closes."""
        while True:
            text = await self.queue.get()
            if self.ws.closed:
                return
            await self.ws.send_str(text)


class Hub:
    """Reads ``updates`` from the bus, caches each channel's recent state, fans out."""

    def __init__(self, *, consumer: Consumer, store: Store, history: int = 500) -> None:
        self.consumer = consumer
        self.store = store
        self.history = history
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

    async def _run(self) -> None:
        while True:
            records = await self.consumer.poll(max_records=2_000, timeout_ms=500)
            for rec in records:
                try:
                    update = decode_update(rec.value)
                except DecodeError:
                    log.exception("skipping an undecodable update at offset %d", rec.offset)
                    continue
                for seq, tick in update.ticks:
                    self._on_tick(seq, tick)
                for seq, candle in update.candles:
                    self._on_candle(seq, candle)
            if records:
                await self.consumer.commit()

    def _on_tick(self, seq: int, tick: Tick) -> None:
        latest = self.latest.get(tick.symbol)
        if latest is None or tick.ts_ms >= latest.ts_ms:
            self.latest[tick.symbol] = tick
        name = f"ticks:{tick.symbol}"
        ch = self.channels.get(name) or self.channels.setdefault(name, _Channel())
        if seq <= ch.seq:
            return  # republished after a stream worker restart: clients have it already
        ch.seq, ch.tick = seq, tick
        if ch.subscribers:
            self._fan_out(ch, name, seq, tick_public(tick))

    def _on_candle(self, seq: int, candle: Candle) -> None:
        name = f"candles:{candle.symbol}:{candle.res}"
        ch = self.channels.get(name) or self.channels.setdefault(name, _Channel())
        if seq <= ch.seq:
            return
        ch.seq = seq
        ch.candles[candle.start_ms] = candle
        if len(ch.candles) > self.history:
            ch.candles.popitem(last=False)
        if ch.subscribers:
            self._fan_out(ch, name, seq, candle.public())

    def _fan_out(self, ch: _Channel, name: str, seq: int, data: object) -> None:
        text = orjson.dumps({"type": "update", "channel": name, "seq": seq, "data": data}).decode()
        for client in ch.subscribers:
            client.send(text)
        self.delivered += len(ch.subscribers)

    def recent_candles(self, symbol: str, res: str) -> list[Candle]:
        ch = self.channels.get(f"candles:{symbol}:{res}")
        return list(ch.candles.values()) if ch else []

    async def knows(self, symbol: str) -> bool:
        return symbol in self.latest or await self.store.state(symbol) is not None

    async def subscribe(self, client: Client, channel: str) -> None:
        """Send ``client`` a snapshot of ``channel`` and every update after it."""
        _, symbol, res = parse_channel(channel)
        if channel in client.channels:
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
        data: object
        if res is None:
            tick = ch.tick or (state.latest if state else None)
            data = tick_public(tick) if tick else None
        else:
            merged = {c.start_ms: c for c in history}
            merged.update(ch.candles)
            data = {"candles": [merged[k].public() for k in sorted(merged)][-self.history :]}
        msg = {"type": "snapshot", "channel": channel, "seq": ch.seq, "data": data}
        client.send(orjson.dumps(msg).decode())
        ch.subscribers.add(client)
        client.channels.add(channel)

    def unsubscribe(self, client: Client, channel: str) -> None:
        ch = self.channels.get(channel)
        if ch is not None:
            ch.subscribers.discard(client)
        client.channels.discard(channel)

    def drop(self, client: Client) -> None:
        for channel in list(client.channels):
            self.unsubscribe(client, channel)
        self.clients.discard(client)


async def serve_client(
    request: web.Request, hub: Hub, *, max_queue: int = 2_000, max_channels: int = 64
) -> web.WebSocketResponse:
    """The ``/ws`` endpoint: subscribe/unsubscribe ops in, snapshots and updates out."""
    # No per-message deflate: frames are small and compressing each one for every client costs
    # more CPU than the bytes it saves on loopback and LAN links.
    ws = web.WebSocketResponse(heartbeat=20, max_msg_size=64 * 1024, compress=False)
    await ws.prepare(request)
    client = Client(ws, max_queue=max_queue)
    hub.clients.add(client)
    pump = asyncio.create_task(client.pump())
    try:
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                if msg.type is WSMsgType.BINARY:
                    _error(client, "bad_message", "send JSON text frames")
                continue
            await _handle(hub, client, msg.data, max_channels=max_channels)
    finally:
        hub.drop(client)
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
        if not ws.closed:
            await ws.close(code=WSCloseCode.GOING_AWAY)
    return ws


def _error(client: Client, code: str, message: str) -> None:
    client.send(orjson.dumps({"type": "error", "code": code, "message": message}).decode())


async def _handle(hub: Hub, client: Client, text: str, *, max_channels: int) -> None:
    try:
        msg = orjson.loads(text)
    except orjson.JSONDecodeError:
        _error(client, "bad_json", f"message is not JSON: {text[:60]!r}")
        return
    if not isinstance(msg, dict):
        _error(client, "bad_message", 'send an object like {"op":"subscribe","channels":[...]}')
        return
    op, channels = msg.get("op"), msg.get("channels")
    if op not in ("subscribe", "unsubscribe"):
        _error(client, "bad_op", f"unknown op {str(op)[:30]!r}; use subscribe or unsubscribe")
        return
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        _error(client, "bad_message", "'channels' must be a list of channel names")
        return
    for channel in channels:
        if op == "unsubscribe":
            hub.unsubscribe(client, channel)
            continue
        if len(client.channels) >= max_channels:
            _error(client, "too_many_channels", f"at most {max_channels} channels per connection")
            return
        try:
            await hub.subscribe(client, channel)
        except ChannelError as exc:
            _error(client, exc.code, str(exc))
