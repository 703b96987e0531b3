"""Rolling OHLC windows: the pure core of the stream. No I/O, no clock.

Each symbol has an event-time *watermark*: the newest tick time seen. A tick is accepted when it
is no older than ``watermark - grace_ms``; it then updates the candle of its own bucket at every
resolution, even when that is not the newest bucket. An older tick is *late*: it changes nothing
and is reported, so the caller can count it and dead-letter it. A candle is *closed* once the
watermark passes its end by ``grace_ms``: no acceptable tick can fall into it any more.

Within a candle ``open`` is the price of the earliest tick and ``close`` of the latest (by
``ts_ms``; among equal times, arrival order decides), so the result equals pandas'
``resample(...).ohlc()`` over the accepted ticks sorted stably by time.

Updates are conflated: ``receive`` folds ticks in, and ``take`` returns, per symbol changed since
the last ``take``, each changed candle once in its latest state (write-behind batching).

Replays: when the bus keeps durable positions, ``receive`` takes the tick's position; a tick at
or below the symbol's last processed position has been counted already and is skipped.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from stream.contract import (
    RESOLUTIONS,
    Candle,
    DailyBoundary,
    SymbolState,
    Tick,
    bucket_bounds,
    check_resolution,
)


class Outcome(enum.Enum):
    ACCEPTED = "accepted"
    REPLAYED = "replayed"  # at or below the last processed position: already counted
    LATE = "late"  # older than watermark - grace: not counted
    FUTURE = "future"  # ts_ms beyond recv_ms + max_future_ms: not counted


@dataclass(frozen=True, slots=True)
class Changes:
    """What one symbol's windows changed since the last ``take``."""

    candles: list[Candle]  # each changed candle once: the newly closed, then the open ones
    state: SymbolState  # seqs empty: the caller numbers channels


class _Bar:
    __slots__ = (
        "close",
        "dirty",
        "end_ms",
        "first_ts_ms",
        "high",
        "last_ts_ms",
        "low",
        "open",
        "start_ms",
        "ticks",
    )

    def __init__(self, start_ms: int, end_ms: int, price: float, ts_ms: int) -> None:
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.open = self.high = self.low = self.close = price
        self.first_ts_ms = self.last_ts_ms = ts_ms
        self.ticks = 1
        self.dirty = True

    @classmethod
    def thaw(cls, candle: Candle) -> _Bar:
        bar = cls(candle.start_ms, candle.end_ms, candle.open, candle.first_ts_ms)
        bar.high, bar.low, bar.close = candle.high, candle.low, candle.close
        bar.last_ts_ms, bar.ticks, bar.dirty = candle.last_ts_ms, candle.ticks, False
        return bar

    def freeze(self, symbol: str, res: str, *, closed: bool) -> Candle:
        return Candle(
            symbol,
            res,
            self.start_ms,
            self.end_ms,
            self.open,
            self.high,
            self.low,
            self.close,
            self.ticks,
            self.first_ts_ms,
            self.last_ts_ms,
            closed,
        )


class _Level:
    """One resolution of one symbol: its open bars and the one the last tick went to."""

    __slots__ = ("bars", "cur", "res")

    def __init__(self, res: str) -> None:
        self.res = res
        self.bars: dict[int, _Bar] = {}
        self.cur: _Bar | None = None


class _Symbol:
    __slots__ = (
        "acc",
        "close_at_ms",
        "closed",
        "hot",
        "hot_end_ms",
        "hot_start_ms",
        "latest",
        "levels",
        "name",
        "pos",
        "watermark_ms",
    )

    def __init__(self, name: str, resolutions: Sequence[str]) -> None:
        self.name = name
        self.levels = [_Level(res) for res in resolutions]
        self.watermark_ms = -(2**62)
        self.pos = -1
        self.latest: Tick | None = None
        self.close_at_ms = math.inf  # when the watermark reaches this, some bar closes
        self.closed: list[Candle] = []
        # The fast path: while ticks fall in [hot_start_ms, hot_end_ms), every level's current
        # bar holds them, so they are folded into ``acc`` alone and ``acc`` is folded into the
        # ``hot`` bars (one per level) only when needed: when a tick falls outside, before a
        # close, and before ``take``. Folding in an aggregate equals folding its ticks one by one.
        self.hot: list[_Bar] = []
        self.hot_start_ms = self.hot_end_ms = 0
        self.acc = _Bar(0, 0, 0.0, 0)
        self.acc.ticks = 0


class Windows:
    """Candles at every resolution for every symbol, fed one tick at a time."""

    def __init__(
        self,
        resolutions: Iterable[str] = RESOLUTIONS,
        *,
        boundary: DailyBoundary | None = None,
        grace_ms: int = 2_000,
        max_future_ms: int = 60_000,
    ) -> None:
        self.resolutions = tuple(dict.fromkeys(check_resolution(r) for r in resolutions))
        if grace_ms < 0:
            raise ValueError(f"grace_ms must be >= 0, got {grace_ms}")
        self.boundary = boundary or DailyBoundary()
        self.grace_ms = grace_ms
        self.max_future_ms = max_future_ms
        self._symbols: dict[str, _Symbol] = {}
        self._dirty: dict[str, _Symbol] = {}

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._symbols

    def symbols(self) -> list[str]:
        return sorted(self._symbols)

    def restore(self, state: SymbolState) -> None:
        """Carry on from a stored state (after a restart or when taking over a symbol)."""
        sym = _Symbol(state.symbol, self.resolutions)
        sym.watermark_ms, sym.pos, sym.latest = state.watermark_ms, state.pos, state.latest
        levels = {lv.res: lv for lv in sym.levels}
        for candle in state.open:
            level = levels.get(candle.res)
            if level is not None and not candle.closed:
                level.bars[candle.start_ms] = _Bar.thaw(candle)
        sym.close_at_ms = self._next_close(sym)
        self._symbols[state.symbol] = sym
        self._dirty.pop(state.symbol, None)

    def forget(self, symbol: str) -> None:
        """Drop a symbol (another worker owns it now). Call ``take`` first to keep its changes."""
        self._symbols.pop(symbol, None)
        self._dirty.pop(symbol, None)

    def receive(self, tick: Tick, pos: int | None = None) -> Outcome:
        """Fold one tick in. ``pos`` is its durable bus position, or None."""
        sym = self._symbols.get(tick.symbol)
        if sym is None:
            sym = self._symbols[tick.symbol] = _Symbol(tick.symbol, self.resolutions)
        if pos is not None:
            if pos <= sym.pos:
                return Outcome.REPLAYED
            sym.pos = pos
            self._dirty[sym.name] = sym
        ts = tick.ts_ms
        if ts < sym.watermark_ms - self.grace_ms:
            return Outcome.LATE
        if ts > tick.recv_ms + self.max_future_ms:
            return Outcome.FUTURE
        price = tick.price
        if sym.hot_start_ms <= ts < sym.hot_end_ms:
            acc = sym.acc
            if acc.ticks:
                if ts < acc.first_ts_ms:
                    acc.open, acc.first_ts_ms = price, ts
                if ts >= acc.last_ts_ms:
                    acc.close, acc.last_ts_ms = price, ts
                if price > acc.high:
                    acc.high = price
                elif price < acc.low:
                    acc.low = price
                acc.ticks += 1
            else:
                acc.open = acc.high = acc.low = acc.close = price
                acc.first_ts_ms = acc.last_ts_ms = ts
                acc.ticks = 1
            if ts >= sym.watermark_ms:
                sym.watermark_ms, sym.latest = ts, tick
                if ts >= sym.close_at_ms:
                    self._close(sym)
            self._dirty[sym.name] = sym
            return Outcome.ACCEPTED
        if sym.acc.ticks:
            self._settle(sym)
        hot: list[_Bar] = []
        hot_start, hot_end = -(2**62), 2**62
        for level in sym.levels:
            bar = level.cur
            if bar is None or not bar.start_ms <= ts < bar.end_ms:
                bar, new = self._bar_at(sym, level, ts, price)
                if new:  # a new bar holds the tick already
                    hot.append(bar)
                    if bar.start_ms > hot_start:
                        hot_start = bar.start_ms
                    if bar.end_ms < hot_end:
                        hot_end = bar.end_ms
                    continue
            if ts < bar.first_ts_ms:
                bar.open, bar.first_ts_ms = price, ts
            if ts >= bar.last_ts_ms:
                bar.close, bar.last_ts_ms = price, ts
            if price > bar.high:
                bar.high = price
            elif price < bar.low:
                bar.low = price
            bar.ticks += 1
            bar.dirty = True
            hot.append(bar)
            if bar.start_ms > hot_start:
                hot_start = bar.start_ms
            if bar.end_ms < hot_end:
                hot_end = bar.end_ms
        sym.hot, sym.hot_start_ms, sym.hot_end_ms = hot, hot_start, hot_end
        if ts >= sym.watermark_ms:
            sym.watermark_ms, sym.latest = ts, tick
            if ts >= sym.close_at_ms:
                self._close(sym)
        self._dirty[sym.name] = sym
        return Outcome.ACCEPTED

    def _bar_at(self, sym: _Symbol, level: _Level, ts: int, price: float) -> tuple[_Bar, bool]:
        """Point ``level.cur`` at the bar holding ``ts``; True: a new bar, holding the tick."""
        start, end = bucket_bounds(level.res, ts, self.boundary)
        bar = level.bars.get(start)
        if bar is not None:
            level.cur = bar
            return bar, False
        bar = level.cur = level.bars[start] = _Bar(start, end, price, ts)
        sym.close_at_ms = min(sym.close_at_ms, end + self.grace_ms)
        return bar, True

    @staticmethod
    def _settle(sym: _Symbol) -> None:
        """Fold the fast path's aggregate into every level's current bar."""
        acc = sym.acc
        if not acc.ticks:
            return
        for bar in sym.hot:
            if acc.first_ts_ms < bar.first_ts_ms:
                bar.open, bar.first_ts_ms = acc.open, acc.first_ts_ms
            if acc.last_ts_ms >= bar.last_ts_ms:
                bar.close, bar.last_ts_ms = acc.close, acc.last_ts_ms
            if acc.high > bar.high:
                bar.high = acc.high
            if acc.low < bar.low:
                bar.low = acc.low
            bar.ticks += acc.ticks
            bar.dirty = True
        acc.ticks = 0

    def _close(self, sym: _Symbol) -> None:
        self._settle(sym)
        limit = sym.watermark_ms - self.grace_ms
        for level in sym.levels:
            done = [bar for bar in level.bars.values() if bar.end_ms <= limit]
            for bar in sorted(done, key=lambda b: b.start_ms):
                del level.bars[bar.start_ms]
                if level.cur is bar:
                    level.cur = None
                    sym.hot_start_ms = sym.hot_end_ms = 0  # the next tick takes the slow path
                sym.closed.append(bar.freeze(sym.name, level.res, closed=True))
        sym.close_at_ms = self._next_close(sym)

    def _next_close(self, sym: _Symbol) -> float:
        ends = [bar.end_ms for level in sym.levels for bar in level.bars.values()]
        return min(ends) + self.grace_ms if ends else math.inf

    def open_candles(self, symbol: str, res: str) -> list[Candle]:
        """The candles of ``symbol`` at ``res`` that can still change, oldest first."""
        sym = self._symbols.get(symbol)
        if sym is None:
            return []
        level = sym.levels[self.resolutions.index(check_resolution(res))]
        self._settle(sym)
        return [level.bars[s].freeze(symbol, res, closed=False) for s in sorted(level.bars)]

    def take(self) -> dict[str, Changes]:
        """Every symbol changed since the last call, with its changed candles and its state."""
        out: dict[str, Changes] = {}
        for name, sym in self._dirty.items():
            self._settle(sym)
            changed = sym.closed
            sym.closed = []
            open_: list[Candle] = []
            for level in sym.levels:
                for start in sorted(level.bars):
                    bar = level.bars[start]
                    candle = bar.freeze(name, level.res, closed=False)
                    open_.append(candle)
                    if bar.dirty:
                        bar.dirty = False
                        changed.append(candle)
            state = SymbolState(name, sym.latest, sym.watermark_ms, sym.pos, {}, open_)
            out[name] = Changes(changed, state)
        self._dirty = {}
        return out
