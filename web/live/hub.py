"""The hub: ``updates`` from the bus, each channel's recent state and history, and fan-out.

Every update is offered to the subscribed clients' outboxes; the hub never waits for a client.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import orjson

from stream.contract import (
    Candle,
    Consumer,
    DecodeError,
    Precision,
    Store,
    Tick,
    decode_update,
    tick_public,
)
from web.auth import AuthConfig, Authenticator
from web.live.client import Client
from web.live.config import Counters, Counts, LiveConfig
from web.live.protocol import ChannelError, parse_channel

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Channel:
    """One channel on this node: its last number, newest value(s), subscribers and history."""

    seq: int = 0
    tick: Tick | None = None
    candles: OrderedDict[int, Candle] = field(default_factory=OrderedDict)
    subscribers: set[Client] = field(default_factory=set)
    #: (seq, arrival time in loop seconds, value, its message if it had subscribers), contiguous
    #: in seq; a channel nobody watches keeps values and is encoded only if someone resumes
    recent: deque[tuple[int, float, Tick | Candle, str | None]] = field(default_factory=deque)


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
        self.counters: Counters = counters if counters is not None else Counts()
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
            if missed is not None and client.box.bytes + size <= client.config.send_buffer_bytes:
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
