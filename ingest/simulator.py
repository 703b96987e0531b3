"""The built-in simulated metals feed: pure, deterministic for a seed, clock passed in.

Each metal's true price is a geometric random walk with its own annual volatility. Several
simulated vendors quote it: ticks arrive at random (Poisson) times, each vendor quotes with its
own small bias and noise and its own spread, and one vendor now and then stalls (goes silent for
a few seconds), as real feeds do. A metal with no stored price gets 90 days of simulated history
first (``Simulator.history``); one with a stored price continues from it.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass

from stream.contract import Tick

YEAR_MS = 365.25 * 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class Metal:
    symbol: str
    price: float  # where the walk starts
    vol_annual: float  # e.g. 0.16 for 16% a year
    spread: float  # bid/ask spread in price units
    decimals: int = 2


@dataclass(frozen=True, slots=True)
class SimVendor:
    name: str
    bias_bp: float = 0.0  # constant offset of this vendor's quotes, in basis points
    noise_bp: float = 0.2  # random disagreement per quote, in basis points
    spread_factor: float = 1.0
    stall_per_hour: float = 0.0  # how often it goes silent
    stall_ms: int = 8_000  # for how long


METALS: tuple[Metal, ...] = (
    Metal("XAU-USD", 4_050.0, 0.16, 0.35),
    Metal("XAG-USD", 50.50, 0.30, 0.03, 3),
    Metal("XPT-USD", 1_550.0, 0.25, 1.60),
    Metal("XPD-USD", 1_420.0, 0.32, 2.80),
)

#: simulated history before the first live tick: (how far back, one quote every), sparse far back
HISTORY: tuple[tuple[int, int], ...] = (
    (3_600_000, 2_000),  # the last hour: every 2 s
    (86_400_000, 20_000),  # the last day: every 20 s
    (90 * 86_400_000, 1_200_000),  # the last 90 days (``history_days``): every 20 minutes
)

VENDORS: tuple[SimVendor, ...] = (
    SimVendor("sim-alpha"),
    SimVendor("sim-beta", bias_bp=0.6, noise_bp=0.3, spread_factor=1.2),
    SimVendor("sim-gamma", bias_bp=-0.4, noise_bp=0.4, spread_factor=1.5, stall_per_hour=40),
)


class Simulator:
    """Ticks for ``metals`` from ``vendors``, ``rate_hz`` per vendor and metal on average."""

    def __init__(
        self,
        metals: tuple[Metal, ...] = METALS,
        vendors: tuple[SimVendor, ...] = VENDORS,
        *,
        rate_hz: float = 4.0,
        seed: int = 1,
        start_ms: int,
        prices: Mapping[str, float] | None = None,
        backfill: bool = False,
        history_days: int = 90,
    ) -> None:
        """``prices``: where each metal's walk starts, by symbol (the latest stored price, so a
        restart continues where the last run stopped); a metal not in it starts at its own.
        ``backfill``: ``history`` simulates the past of the metals not in ``prices`` (only for
        a process that knows what is stored; without it, history would be published again on
        every start)."""
        if rate_hz <= 0:
            raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
        self.metals = metals
        self.vendors = vendors
        self.rate_hz = rate_hz
        self.seed = seed
        self.start_ms = start_ms
        self.continued = {m.symbol for m in metals if prices and m.symbol in prices}
        self.backfill = backfill and history_days > 0
        # The sparse span reaches back ``history_days``; the dense ones stay as they are.
        self.spans = tuple(
            (back_ms if i < len(HISTORY) - 1 else history_days * 86_400_000, step_ms)
            for i, (back_ms, step_ms) in enumerate(HISTORY)
        )
        self._rng = random.Random(seed)
        self._price = [(prices or {}).get(m.symbol, m.price) for m in metals]
        self._price_ms = [start_ms] * len(metals)
        self._stalled_until = [start_ms] * len(vendors)
        self._seq = [0] * len(vendors)
        self._events: list[tuple[int, int, int]] = []  # (ts_ms, vendor index, metal index)
        for v in range(len(vendors)):
            for m in range(len(metals)):
                heapq.heappush(self._events, (start_ms + self._gap_ms(), v, m))

    def history(self) -> list[Tick]:
        """Simulated history before ``start_ms`` for every metal that did not continue from a
        stored price, in time order, and the live walk moved on to where it ends.

        Deterministic for the seed and ``start_ms``: ``HISTORY`` says how far back and how
        dense (sparse far back, dense near now), so every resolution has candles at once. The
        ticks come from the first simulated vendor and are stamped as received when quoted.
        """
        if not self.backfill:
            return []
        rng = random.Random(f"history:{self.seed}")
        vendor = self.vendors[0]
        end = self.start_ms
        times: list[int] = []
        for back_ms, step_ms in self.spans:
            start = end - back_ms
            if times and start >= times[0]:
                continue  # a short history: this span is within the denser ones
            stop = times[0] if times else end
            times = list(range(start - start % step_ms, stop, step_ms)) + times
        out: list[Tick] = []
        for m, metal in enumerate(self.metals):
            if metal.symbol in self.continued:
                continue
            price, at = metal.price, times[0]
            for ts in times:
                sigma = metal.vol_annual * math.sqrt(max(ts - at, 1) / YEAR_MS)
                price *= math.exp(rng.gauss(-0.5 * sigma * sigma, sigma))
                at = ts
                half = metal.spread * vendor.spread_factor / 2
                bid, ask = round(price - half, metal.decimals), round(price + half, metal.decimals)
                mid = round((bid + ask) / 2, metal.decimals + 1)
                out.append(Tick(metal.symbol, vendor.name, bid, ask, mid, ts, ts, None, None))
            self._price[m], self._price_ms[m] = price, end
        out.sort(key=lambda t: t.ts_ms)
        return out

    def _gap_ms(self) -> int:
        return max(1, round(self._rng.expovariate(self.rate_hz) * 1000))

    def advance(self, now_ms: int) -> list[Tick]:
        """Every tick quoted up to ``now_ms``, in time order, received at ``now_ms``."""
        out: list[Tick] = []
        rng = self._rng
        events = self._events
        while events and events[0][0] <= now_ms:
            ts, v, m = heapq.heappop(events)
            heapq.heappush(events, (ts + self._gap_ms(), v, m))
            vendor, metal = self.vendors[v], self.metals[m]
            true = self._walk(m, ts)
            if ts < self._stalled_until[v]:
                continue
            if vendor.stall_per_hour and rng.random() < vendor.stall_per_hour / (
                3600 * self.rate_hz * len(self.metals)
            ):
                self._stalled_until[v] = ts + vendor.stall_ms
                continue
            mid = true * (1 + (vendor.bias_bp + rng.gauss(0, vendor.noise_bp)) / 10_000)
            half = metal.spread * vendor.spread_factor / 2
            bid = round(mid - half, metal.decimals)
            ask = round(mid + half, metal.decimals)
            self._seq[v] += 1
            price = round((bid + ask) / 2, metal.decimals + 1)
            out.append(
                Tick(metal.symbol, vendor.name, bid, ask, price, ts, now_ms, None, self._seq[v])
            )
        return out

    def _walk(self, m: int, ts: int) -> float:
        dt = ts - self._price_ms[m]
        if dt > 0:
            sigma = self.metals[m].vol_annual * math.sqrt(dt / YEAR_MS)
            self._price[m] *= math.exp(self._rng.gauss(-0.5 * sigma * sigma, sigma))
            self._price_ms[m] = ts
        return self._price[m]
