"""One configured vendor's path from raw message to the publisher: parse, map, gate, count.

A ``Feed`` runs its profile's pure ``parse``, maps the vendor's symbols to ours, and passes each
tick through its ``Gate`` (plausibility, time, duplicates, gaps, spikes). A message or quote that
fails goes to the dead-letter topic with the reason, the vendor and the raw message bytes, and is
counted by reason in the feed's ``VendorStats``: nothing is dropped silently.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ingest.publisher import Publisher
from ingest.validate import Gate, Limits, Verdict
from ingest.vendors.base import Kind, ParseFn
from stream.contract import (
    DeadLetter,
    InvalidSymbol,
    Tick,
    VendorStatus,
    check_symbol,
    encode_tick,
    now_ms,
)

log = logging.getLogger(__name__)


@dataclass(slots=True)
class VendorStats:
    messages: int = 0
    published: int = 0
    rejects: dict[str, int] = field(default_factory=dict)
    last_message_ms: int | None = None
    duplicates: int = 0
    gaps: int = 0
    missed: int = 0
    seq_resets: int = 0
    heartbeats: int = 0
    errors: int = 0
    reconnects: int = 0
    connected: bool = False
    last_error: str | None = None

    def reject(self, reason: str) -> None:
        kind = reason.split(":", 1)[0]
        self.rejects[kind] = self.rejects.get(kind, 0) + 1


class Feed:
    """One configured vendor: raw message -> parse -> symbol map -> gate -> publisher.

    ``take`` is the synchronous part (no I/O; the receipt time is an argument), ``receive``
    stamps the time and publishes. With ``symbols`` empty, any symbol of our form is accepted
    (replay of our own recordings); otherwise only the mapped vendor symbols are.
    """

    def __init__(
        self,
        name: str,
        *,
        kind: str,
        profile: str,
        parse: ParseFn | None,
        publisher: Publisher,
        symbols: Mapping[str, str] | None = None,
        limits: Limits | None = None,
        stale_after_ms: int = 10_000,
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        self.name = name
        self.kind = kind
        self.profile = profile
        self.parse = parse
        self.publisher = publisher
        self.symbols = dict(symbols or {})
        self.gate = Gate(limits or Limits())
        self.stale_after_ms = stale_after_ms
        self.clock_ms = clock_ms
        self.stats = VendorStats()
        self.source = f"vendor:{name}"

    def take(self, raw: bytes, recv_ms: int) -> tuple[list[Tick], list[DeadLetter]]:
        """The accepted ticks and the dead letters of one raw vendor message."""
        stats = self.stats
        stats.messages += 1
        assert self.parse is not None, "a feed without a parse function takes ticks only"
        parsed = self.parse(raw)
        kind = parsed.kind
        if kind is Kind.DATA:
            ticks: list[Tick] = []
            letters: list[DeadLetter] = []
            for q in parsed.quotes:
                ours = self.symbols.get(q.symbol) if self.symbols else _ours(q.symbol)
                if ours is None:
                    why = f"unknown symbol: {q.symbol[:40]!r}"
                    stats.reject(why)
                    letters.append(DeadLetter(why, self.source, recv_ms, bytes(raw)))
                    continue
                price = q.price
                if price is None:
                    price = (q.bid + q.ask) / 2 if q.bid is not None and q.ask is not None else 0.0
                tick = Tick(
                    ours,
                    self.name,
                    price if q.bid is None else q.bid,
                    price if q.ask is None else q.ask,
                    price,
                    recv_ms if q.ts_ms is None else q.ts_ms,
                    recv_ms,
                    q.size,
                    q.seq,
                )
                ok = self._gate(tick, raw, letters)
                if ok:
                    ticks.append(tick)
            return ticks, letters
        if kind is Kind.HEARTBEAT:
            stats.heartbeats += 1
            stats.last_message_ms = recv_ms
            self._alive(recv_ms)
        elif kind is Kind.STATUS:
            log.info("%s: %s", self.name, parsed.detail)
        elif kind is Kind.ERROR:
            stats.errors += 1
            stats.last_error = parsed.detail
            log.warning("%s: the vendor reports an error: %s", self.name, parsed.detail)
        else:
            stats.reject(parsed.detail)
            log.warning("%s: rejected a message: %s", self.name, parsed.detail)
            return [], [DeadLetter(parsed.detail, self.source, recv_ms, bytes(raw))]
        return [], []

    def take_ticks(
        self, ticks: Sequence[Tick], recv_ms: int
    ) -> tuple[list[Tick], list[DeadLetter]]:
        """For sources that make ticks themselves (the simulator): gate them."""
        self.stats.messages += len(ticks)
        letters: list[DeadLetter] = []
        good = [tick for tick in ticks if self._gate(tick, None, letters)]
        return good, letters

    def _gate(self, tick: Tick, raw: bytes | None, letters: list[DeadLetter]) -> bool:
        verdict, why = self.gate.check(tick)
        stats = self.stats
        if verdict is Verdict.ACCEPT:
            stats.published += 1
            stats.last_message_ms = max(stats.last_message_ms or 0, tick.recv_ms)
            if self.gate.reset:
                stats.seq_resets += 1
                log.warning("%s: %s numbered again from %s", self.name, tick.symbol, tick.seq)
            if self.gate.gap:
                stats.gaps += 1
                stats.missed += self.gate.gap
                log.warning(
                    "%s: sequence gap in %s: %d missing before %s",
                    self.name, tick.symbol, self.gate.gap, tick.seq,
                )  # fmt: skip
            return True
        if verdict is Verdict.DUPLICATE:
            stats.duplicates += 1
            if tick.seq is None:
                # The same quote again says the price is still current: a sign of life. A
                # sequence number already seen says nothing about now (a replay, a stuck feed).
                stats.last_message_ms = max(stats.last_message_ms or 0, tick.recv_ms)
                if self.publisher.composite is not None:
                    self.publisher.composite.seen(tick)
            return False
        assert why is not None
        stats.reject(why)
        log.warning("%s: rejected %s: %s", self.name, tick.symbol, why)
        body = encode_tick(tick) if raw is None else bytes(raw)
        letters.append(DeadLetter(why, self.source, tick.recv_ms, body))
        return False

    async def receive(self, raw: bytes) -> None:
        ticks, letters = self.take(raw, self.clock_ms())
        if ticks or letters:
            await self.publisher.send(ticks, letters)

    def take_many(self, raws: Sequence[bytes], recv_ms: int) -> tuple[list[Tick], list[DeadLetter]]:
        """``take`` for several messages received together."""
        ticks: list[Tick] = []
        letters: list[DeadLetter] = []
        take = self.take
        for raw in raws:
            good, dead = take(raw, recv_ms)
            ticks += good
            letters += dead
        return ticks, letters

    async def receive_many(self, raws: Sequence[bytes]) -> None:
        """Several messages received together, published in one batch."""
        ticks, letters = self.take_many(raws, self.clock_ms())
        if ticks or letters:
            await self.publisher.send(ticks, letters)

    async def receive_ticks(self, ticks: Sequence[Tick]) -> None:
        good, letters = self.take_ticks(ticks, self.clock_ms())
        if good or letters:
            await self.publisher.send(good, letters)

    def alive(self) -> None:
        """A sign of life that carries no message (an HTTP 304): the feed is not silent."""
        self.stats.last_message_ms = self.clock_ms()
        self._alive(self.stats.last_message_ms)

    def _alive(self, now: int) -> None:
        if self.publisher.composite is not None:
            self.publisher.composite.touch(self.name, now)

    def connected(self, up: bool) -> None:
        if up and not self.stats.connected:
            log.info("%s: connected", self.name)
        self.stats.connected = up

    def failed(self, what: str) -> None:
        """A connection or request failure: counted as an error, kept as the last error."""
        self.stats.errors += 1
        self.stats.last_error = what[:300]
        log.warning("%s: %s", self.name, what)

    def status(self, now: int) -> VendorStatus:
        s = self.stats
        stale = s.last_message_ms is None or now - s.last_message_ms > self.stale_after_ms
        return VendorStatus(
            self.name, self.kind, self.profile, now, s.connected, stale, s.last_message_ms,
            s.messages, s.published, s.duplicates, s.gaps, s.missed, s.heartbeats, s.errors,
            s.reconnects, dict(s.rejects), s.last_error, s.seq_resets,
        )  # fmt: skip


def _ours(symbol: str) -> str | None:
    try:
        return check_symbol(symbol)
    except InvalidSymbol:
        return None
