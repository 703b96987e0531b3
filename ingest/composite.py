"""One price per symbol from many vendors: pure, the time is an argument.

Rules (``rule``):

- ``median`` (default): the median of the mids of the vendors whose quote of the symbol is
  fresh, with the median of their spreads around it (so bid <= ask always holds). With two
  fresh vendors that is their mean.
- ``primary``: the quote of the first fresh vendor in ``priority`` (vendors not listed follow
  in name order): a primary vendor with failover, and back to it once it is fresh again.

With one vendor counting, the composite is that vendor's bid, ask and price unchanged.

Staleness is judged on the vendors' own receipt times, never on the clock at publishing time:
``update(tick, now_ms)`` is given the vendor tick's ``recv_ms`` as ``now_ms``. A vendor's quote of
a symbol is fresh while its last sign of life is at most its ``stale_after_ms`` older than that:
a tick of the symbol (or a duplicate of it), or a vendor-wide heartbeat or ``304 Not Modified``
(``touch``). So the vendor of the tick being taken always counts, and a batch that waits (a paced
replay, a broker outage) loses nothing: only a vendor silent for longer than its limit, while
others go on quoting, stops counting, and counts again with its next quote.

One vendor tick in, at most one composite tick out: under ``median`` every accepted vendor tick
makes one (its vendor is always fresh), under ``primary`` every tick of the vendor in charge at
that moment; a standby vendor's ticks make none while the primary is fresh (they stay on
``vendor-ticks``). A composite tick's time is the newest vendor time seen for the symbol (never
going back), its receipt time is the vendor tick's, and its ``seq`` rises by one per symbol.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass

from stream.contract import Tick

RULES = ("median", "primary")


@dataclass(slots=True)
class _Quote:
    bid: float
    ask: float
    price: float
    seen_ms: int


class Composite:
    def __init__(
        self,
        *,
        vendor: str = "composite",
        rule: str = "median",
        priority: tuple[str, ...] = (),
        stale_after_ms: Mapping[str, int] | None = None,
        default_stale_ms: int = 10_000,
    ) -> None:
        if rule not in RULES:
            raise ValueError(f"composite rule must be one of {', '.join(RULES)}, got {rule!r}")
        self.vendor = vendor
        self.rule = rule
        self.priority = priority
        self.stale_after_ms = dict(stale_after_ms or {})
        self.default_stale_ms = default_stale_ms
        self._quotes: dict[str, dict[str, _Quote]] = {}  # symbol -> vendor -> quote
        self._alive: dict[str, int] = {}  # vendor -> last vendor-wide sign of life
        self._out: dict[str, tuple[int, int]] = {}  # symbol -> (ts_ms, seq) of the last tick
        #: vendor ticks that made no composite tick (a standby vendor under ``primary``)
        self.standby = 0

    def touch(self, vendor: str, now_ms: int) -> None:
        """A vendor-wide sign of life (heartbeat, 304): its quotes stay fresh."""
        self._alive[vendor] = max(now_ms, self._alive.get(vendor, 0))

    def seen(self, tick: Tick) -> None:
        """A duplicate of the vendor's last quote: nothing changed, but the quote is fresh."""
        quote = self._quotes.get(tick.symbol, {}).get(tick.vendor)
        if quote is not None:
            quote.seen_ms = max(quote.seen_ms, tick.recv_ms)

    def fresh(self, symbol: str, now_ms: int) -> list[str]:
        """The vendors whose quote of ``symbol`` counts at ``now_ms``, in priority order."""
        quotes = self._quotes.get(symbol, {})
        out = []
        for vendor, q in quotes.items():
            seen = max(q.seen_ms, self._alive.get(vendor, 0))
            if now_ms - seen <= self.stale_after_ms.get(vendor, self.default_stale_ms):
                out.append(vendor)
        rank = {v: i for i, v in enumerate(self.priority)}
        return sorted(out, key=lambda v: (rank.get(v, len(rank)), v))

    def update(self, tick: Tick, now_ms: int) -> Tick | None:
        """Take a vendor's accepted tick received at ``now_ms`` (its ``recv_ms``); the composite
        tick it makes, or None for a standby vendor's tick under ``primary``."""
        per_vendor = self._quotes.get(tick.symbol)
        if per_vendor is None:
            per_vendor = self._quotes[tick.symbol] = {}
        seen = max(now_ms, tick.recv_ms)
        per_vendor[tick.vendor] = _Quote(tick.bid, tick.ask, tick.price, seen)
        vendors = self.fresh(tick.symbol, now_ms)
        if self.rule == "primary":
            if vendors[0] != tick.vendor:
                self.standby += 1
                return None
            vendors = vendors[:1]
        if len(vendors) == 1:
            q = per_vendor[vendors[0]]
            bid, ask, price = q.bid, q.ask, q.price
        else:
            quotes = [per_vendor[v] for v in vendors]
            mid = statistics.median([(q.bid + q.ask) / 2 for q in quotes])
            half = statistics.median([q.ask - q.bid for q in quotes]) / 2
            bid, ask, price = mid - half, mid + half, mid
        last = self._out.get(tick.symbol)
        ts, seq = (tick.ts_ms, 1) if last is None else (max(last[0], tick.ts_ms), last[1] + 1)
        self._out[tick.symbol] = (ts, seq)
        return Tick(tick.symbol, self.vendor, bid, ask, price, ts, now_ms, None, seq)
