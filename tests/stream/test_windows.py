"""Rolling OHLC windows: random tick streams against a pandas reference, then each rule alone.

The reference is independent of the code under test: a small model of the acceptance rules
(``Model``) decides which ticks count, and pandas buckets those ticks by its own datetime
arithmetic. The daily bucket in New York is computed on wall-clock time (local time minus the
boundary, floored to the day, plus the boundary, localised back), because pandas 3 ignores
``offset`` when resampling a time-zone-aware index by day.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.contract import (
    RESOLUTIONS,
    Candle,
    DailyBoundary,
    SymbolState,
    Tick,
    UnknownResolution,
)
from stream.windows import Outcome, Windows

SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
GRACE_MS = 2_000
MAX_FUTURE_MS = 60_000
XAU = "XAU-USD"
EUR = "EUR-USD"
UTC_MIDNIGHT = DailyBoundary()
UTC_17 = DailyBoundary(17, 0, "UTC")
NY_17 = DailyBoundary(17, 0, "America/New_York")

Key = tuple[str, str, int]  # symbol, res, start_ms
#: end_ms, open, high, low, close, ticks, first_ts_ms, last_ts_ms
Row = tuple[int, float, float, float, float, int, int, int]


def ms(iso: str) -> int:
    """Milliseconds since the epoch of an ISO 8601 time with an explicit offset."""
    return (datetime.fromisoformat(iso) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
        milliseconds=1
    )


def tick(ts_ms: int, price: float = 1.0, *, symbol: str = XAU, recv_ms: int | None = None) -> Tick:
    recv = ts_ms if recv_ms is None else recv_ms
    return Tick(symbol, "test", price, price, price, ts_ms, recv)


def row(candle: Candle) -> Row:
    c = candle
    return (c.end_ms, c.open, c.high, c.low, c.close, c.ticks, c.first_ts_ms, c.last_ts_ms)


def changed(windows: Windows) -> dict[Key, Candle]:
    """One ``take``, keyed by candle."""
    return {
        (name, c.res, c.start_ms): c
        for name, changes in windows.take().items()
        for c in changes.candles
    }


# -- the reference ---------------------------------------------------------------------------


@dataclass
class Model:
    """The acceptance rules of the spec, written out plainly."""

    grace_ms: int = GRACE_MS
    max_future_ms: int = MAX_FUTURE_MS
    watermark: dict[str, int] = field(default_factory=dict)
    latest: dict[str, Tick] = field(default_factory=dict)
    pos: dict[str, int] = field(default_factory=dict)
    accepted: list[Tick] = field(default_factory=list)

    def receive(self, tick: Tick, pos: int | None = None) -> Outcome:
        symbol = tick.symbol
        if pos is not None:
            if pos <= self.pos.get(symbol, -1):
                return Outcome.REPLAYED
            self.pos[symbol] = pos
        watermark = self.watermark.get(symbol)
        if watermark is not None and tick.ts_ms < watermark - self.grace_ms:
            return Outcome.LATE
        if tick.ts_ms > tick.recv_ms + self.max_future_ms:
            return Outcome.FUTURE
        if watermark is None or tick.ts_ms >= watermark:
            self.watermark[symbol] = tick.ts_ms
            self.latest[symbol] = tick
        self.accepted.append(tick)
        return Outcome.ACCEPTED


_FREQ = {"1s": "1s", "1m": "1min", "5m": "5min", "15m": "15min", "1h": "1h", "4h": "4h"}
_EPOCH = pd.Timestamp(0)
_ONE_MS = pd.Timedelta(milliseconds=1)


def _bounds(utc: pd.Series, res: str, boundary: DailyBoundary) -> tuple[pd.Series, pd.Series]:
    """Start and end of each time's bucket, as naive UTC times, by pandas' own arithmetic."""
    if res != "1d":
        start = utc.dt.floor(_FREQ[res])
        return start, start + pd.Timedelta(_FREQ[res])
    at = pd.Timedelta(hours=boundary.hour, minutes=boundary.minute)
    wall = utc.dt.tz_localize("UTC").dt.tz_convert(boundary.tz).dt.tz_localize(None)
    day = (wall - at).dt.floor("1D") + at

    def to_utc(local: pd.Series) -> pd.Series:
        utc_naive: pd.Series = (
            local.dt.tz_localize(boundary.tz).dt.tz_convert("UTC").dt.tz_localize(None)
        )
        return utc_naive

    return to_utc(day), to_utc(day + pd.Timedelta(days=1))


def reference(
    ticks: Sequence[Tick], boundary: DailyBoundary, resolutions: Iterable[str] = RESOLUTIONS
) -> dict[Key, Row]:
    """OHLC, count and first/last time per bucket of ``ticks`` sorted stably by time.

    Grouping by the bucket of each tick rather than ``resample`` keeps empty buckets out: a
    random stream spans days, which would be millions of empty one-second bins.
    """
    if not ticks:
        return {}
    frame = pd.DataFrame(
        {
            "symbol": [t.symbol for t in ticks],
            "ts": [t.ts_ms for t in ticks],
            "price": [t.price for t in ticks],
        }
    ).sort_values("ts", kind="stable")
    utc = pd.to_datetime(frame["ts"], unit="ms")
    parts = []
    for res in resolutions:
        start, end = _bounds(utc, res, boundary)
        parts.append(
            frame.assign(res=res, start=(start - _EPOCH) // _ONE_MS, end=(end - _EPOCH) // _ONE_MS)
        )
    groups = pd.concat(parts).groupby(["symbol", "res", "start", "end"], sort=False)
    table = groups["price"].ohlc().join(groups["ts"].agg(["count", "first", "last"]))
    out: dict[Key, Row] = {}
    for (symbol, res, start_ms, end_ms), o, h, lo, c, n, first, last in table.itertuples():
        out[(symbol, res, int(start_ms))] = (
            int(end_ms),
            float(o),
            float(h),
            float(lo),
            float(c),
            int(n),
            int(first),
            int(last),
        )
    return out


# -- random streams --------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    tick: Tick
    pos: int
    take_after: bool


@dataclass(frozen=True)
class Scenario:
    boundary: DailyBoundary
    grace_ms: int
    events: list[Event]


ANCHORS = [
    ms("2026-03-08T07:00:00Z"),  # New York springs forward
    ms("2026-03-08T21:00:00Z"),  # 17:00 New York, end of the 23 h day
    ms("2026-11-01T06:00:00Z"),  # New York falls back
    ms("2026-11-01T22:00:00Z"),  # 17:00 New York, end of the 25 h day
    ms("2026-01-01T00:00:00Z"),
    ms("2026-06-15T17:00:00Z"),
]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    """Ticks for two symbols: in order, out of order within grace, late, future, replayed."""
    grace_ms = draw(st.sampled_from([GRACE_MS, 0, 1]))
    offset = st.one_of(st.integers(-3 * SECOND_MS, 3 * SECOND_MS), st.integers(-DAY_MS, DAY_MS))
    clock = draw(st.sampled_from(ANCHORS)) + draw(offset)
    advance = st.one_of(
        st.just(0),
        st.integers(0, 1_500),
        st.integers(0, 20 * MINUTE_MS),
        st.integers(0, 30 * HOUR_MS),
    )
    lag = st.one_of(
        st.just(0), st.integers(0, grace_ms), st.integers(grace_ms + 1, 4 * grace_ms + 10)
    )
    events: list[Event] = []
    for pos in range(draw(st.integers(1, 40))):
        take_after = draw(st.booleans())
        if events and draw(st.integers(0, 15)) == 0:
            old = draw(st.sampled_from(events))
            events.append(Event(old.tick, old.pos, take_after))
            continue
        clock += draw(advance)
        ts = clock - draw(lag)
        kind = draw(st.integers(0, 15))
        if kind == 0:
            ahead = draw(st.integers(MAX_FUTURE_MS + 1, DAY_MS))
        elif kind == 1:
            ahead = MAX_FUTURE_MS
        else:
            ahead = -draw(st.integers(0, 500))
        price = draw(st.integers(1, 12)) / 4
        symbol = draw(st.sampled_from([XAU, EUR]))
        events.append(Event(tick(ts, price, symbol=symbol, recv_ms=ts - ahead), pos, take_after))
    return Scenario(draw(st.sampled_from([UTC_MIDNIGHT, UTC_17, NY_17])), grace_ms, events)


def run(scenario: Scenario, *, split_at: int | None = None) -> tuple[dict[Key, Candle], Model]:
    """Feed the events, checking each outcome and each take; return the final candles.

    At ``split_at`` the run takes, restores every taken state into a new ``Windows`` and goes on
    there, as a worker does after a restart.
    """
    grace = scenario.grace_ms
    model = Model(grace_ms=grace)
    windows = Windows(boundary=scenario.boundary, grace_ms=grace)
    final: dict[Key, Candle] = {}
    states: dict[str, SymbolState] = {}

    def take() -> None:
        for name, changes in windows.take().items():
            state = changes.state
            states[name] = state
            assert state.pos == model.pos[name]
            assert state.latest == model.latest.get(name)
            if name in model.watermark:
                assert state.watermark_ms == model.watermark[name]
            for candle in changes.candles:
                assert candle.closed == (model.watermark[name] >= candle.end_ms + grace)
                final[(name, candle.res, candle.start_ms)] = candle

    for i, event in enumerate(scenario.events):
        if i == split_at:
            take()
            windows = Windows(boundary=scenario.boundary, grace_ms=grace)
            for state in states.values():
                windows.restore(state)
        assert windows.receive(event.tick, event.pos) is model.receive(event.tick, event.pos)
        if event.take_after:
            take()
    take()
    for symbol in (XAU, EUR):
        for res in RESOLUTIONS:
            still_open = sorted(
                (c for (s, r, _), c in final.items() if (s, r) == (symbol, res) and not c.closed),
                key=lambda c: c.start_ms,
            )
            assert windows.open_candles(symbol, res) == still_open
    return final, model


@settings(max_examples=200, deadline=None)
@given(scenario=scenarios())
def test_candles_equal_pandas_ohlc_of_the_accepted_ticks(scenario: Scenario) -> None:
    final, model = run(scenario)
    assert {key: row(c) for key, c in final.items()} == reference(model.accepted, scenario.boundary)


@settings(max_examples=200, deadline=None)
@given(scenario=scenarios(), data=st.data())
def test_restore_from_a_taken_state_continues_like_an_uninterrupted_run(
    scenario: Scenario, data: st.DataObject
) -> None:
    split_at = data.draw(st.integers(0, len(scenario.events)), label="split_at")
    assert run(scenario, split_at=split_at)[0] == run(scenario)[0]


def test_candles_equal_pandas_resample_ohlc_on_a_dense_stream() -> None:
    rng = random.Random(20260308)
    model = Model()
    windows = Windows()
    clock = ms("2026-03-08T23:40:00Z")
    final: dict[Key, Candle] = {}
    for _ in range(3_000):
        clock += rng.choice([0, 0, 7, 250, 999, 1_000, 4_000])
        received = tick(
            clock - rng.choice([0, 0, 0, 1, 500, 2_000, 2_001, 5_000]), rng.randint(1, 9)
        )
        assert windows.receive(received) is model.receive(received)
        if rng.random() < 0.05:
            final.update(changed(windows))
    final.update(changed(windows))
    frame = pd.DataFrame(
        {"price": [t.price for t in model.accepted], "ts": [t.ts_ms for t in model.accepted]}
    ).sort_values("ts", kind="stable")
    frame.index = pd.to_datetime(frame["ts"], unit="ms")
    for res, freq in [*_FREQ.items(), ("1d", "1D")]:
        bins = frame.resample(freq, origin="epoch")
        table = bins["price"].ohlc().join(bins["ts"].agg(["count", "first", "last"]))
        table = table[table["count"] > 0]
        expected = [
            (float(o), float(h), float(lo), float(c), int(n), int(first), int(last))
            for o, h, lo, c, n, first, last in table.itertuples(index=False)
        ]
        got = sorted((c for (_, r, _), c in final.items() if r == res), key=lambda c: c.start_ms)
        assert [row(c)[1:] for c in got] == expected
        assert [c.start_ms for c in got] == [(t - _EPOCH) // _ONE_MS for t in table.index]


# -- one rule at a time ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("res", "boundary", "start", "end"),
    [
        ("1s", UTC_MIDNIGHT, "2026-03-08T12:00:01Z", "2026-03-08T12:00:02Z"),
        ("1m", UTC_MIDNIGHT, "2026-03-08T12:01:00Z", "2026-03-08T12:02:00Z"),
        ("5m", UTC_MIDNIGHT, "2026-03-08T12:05:00Z", "2026-03-08T12:10:00Z"),
        ("15m", UTC_MIDNIGHT, "2026-03-08T12:15:00Z", "2026-03-08T12:30:00Z"),
        ("1h", NY_17, "2026-03-08T06:00:00Z", "2026-03-08T07:00:00Z"),
        ("4h", UTC_MIDNIGHT, "2026-03-08T04:00:00Z", "2026-03-08T08:00:00Z"),
        ("1d", UTC_MIDNIGHT, "2026-03-08T00:00:00Z", "2026-03-09T00:00:00Z"),
        ("1d", UTC_17, "2026-03-07T17:00:00Z", "2026-03-08T17:00:00Z"),
        ("1d", NY_17, "2026-06-14T17:00:00-04:00", "2026-06-15T17:00:00-04:00"),
        ("1d", NY_17, "2026-03-07T17:00:00-05:00", "2026-03-08T17:00:00-04:00"),  # 23 h
        ("1d", NY_17, "2026-10-31T17:00:00-04:00", "2026-11-01T17:00:00-05:00"),  # 25 h
    ],
)
def test_ticks_at_start_and_end_minus_one_share_a_candle_and_end_starts_the_next(
    res: str, boundary: DailyBoundary, start: str, end: str
) -> None:
    start_ms, end_ms = ms(start), ms(end)
    windows = Windows([res], boundary=boundary)
    for ts, price in [(start_ms, 1.0), (end_ms - 1, 2.0), (end_ms, 3.0)]:
        assert windows.receive(tick(ts, price)) is Outcome.ACCEPTED
    candles = windows.open_candles(XAU, res)
    assert next((c.start_ms, c.end_ms) for c in candles) == (start_ms, end_ms)
    assert row(candles[0]) == (end_ms, 1.0, 2.0, 1.0, 2.0, 2, start_ms, end_ms - 1)
    assert (candles[1].start_ms, candles[1].open, candles[1].ticks) == (end_ms, 3.0, 1)


T = ms("2026-03-08T12:00:10Z")


@pytest.mark.parametrize(
    ("arrivals", "expected"),
    [
        # (ms after T, price) in arrival order -> (open, high, low, close, ticks, first, last)
        ([(0, 1), (0, 2), (0, 3)], (1, 3, 1, 3, 3, 0, 0)),
        ([(0, 3), (0, 1), (0, 2)], (3, 3, 1, 2, 3, 0, 0)),
        ([(5, 9), (0, 1), (0, 2)], (1, 9, 1, 9, 3, 0, 5)),
        ([(0, 1), (5, 2), (5, 3), (0, 4)], (1, 4, 1, 3, 4, 0, 5)),
        ([(5, 1), (5, 2), (3, 7), (3, 8)], (7, 8, 1, 2, 4, 3, 5)),
        ([(9, 5), (1, 6), (4, 2)], (6, 6, 2, 5, 3, 1, 9)),
    ],
)
def test_open_and_close_follow_tick_time_and_arrival_order_among_equal_times(
    arrivals: list[tuple[int, float]], expected: tuple[float, float, float, float, int, int, int]
) -> None:
    windows = Windows(["1m"])
    for offset, price in arrivals:
        assert windows.receive(tick(T + offset, price)) is Outcome.ACCEPTED
    (candle,) = windows.open_candles(XAU, "1m")
    o, h, lo, c, n, first, last = expected
    assert row(candle)[1:] == (o, h, lo, c, n, T + first, T + last)


@pytest.mark.parametrize(
    ("before", "last", "outcome"),
    [
        # (tick, pos) fed first; then the tick under test -> its outcome
        ([(tick(T), None)], (tick(T - GRACE_MS), None), Outcome.ACCEPTED),
        ([(tick(T), None)], (tick(T - GRACE_MS - 1), None), Outcome.LATE),
        ([(tick(T), None)], (tick(T - 10 * MINUTE_MS), None), Outcome.LATE),
        ([], (tick(T, recv_ms=T - MAX_FUTURE_MS), None), Outcome.ACCEPTED),
        ([], (tick(T, recv_ms=T - MAX_FUTURE_MS - 1), None), Outcome.FUTURE),
        ([(tick(T), 7)], (tick(T + 1), 7), Outcome.REPLAYED),
        ([(tick(T), 7)], (tick(T + 1), 6), Outcome.REPLAYED),
        ([(tick(T), 7)], (tick(T + 1), 8), Outcome.ACCEPTED),
        ([(tick(T), 7)], (tick(T + 1), None), Outcome.ACCEPTED),
        ([(tick(T), 7)], (tick(T + 1, symbol=EUR), 3), Outcome.ACCEPTED),  # positions per symbol
        ([(tick(T + HOUR_MS, symbol=EUR), None)], (tick(T), None), Outcome.ACCEPTED),
    ],
)
def test_tick_outcome_and_it_is_counted_only_when_accepted(
    before: list[tuple[Tick, int | None]], last: tuple[Tick, int | None], outcome: Outcome
) -> None:
    windows = Windows()
    for t, pos in before:
        assert windows.receive(t, pos) is Outcome.ACCEPTED
    windows.take()
    symbol = last[0].symbol
    candles = {res: windows.open_candles(symbol, res) for res in RESOLUTIONS}
    assert windows.receive(*last) is outcome
    after = {res: windows.open_candles(symbol, res) for res in RESOLUTIONS}
    counted = {
        res: sum(c.ticks for c in after[res]) - sum(c.ticks for c in candles[res])
        for res in RESOLUTIONS
    }
    if outcome is Outcome.ACCEPTED:
        assert set(counted.values()) == {1}
    else:
        assert after == candles
        assert changed(windows) == {}


def test_late_tick_does_not_move_the_watermark() -> None:
    windows = Windows(["1s"])
    windows.receive(tick(T))
    assert windows.receive(tick(T - GRACE_MS - 1)) is Outcome.LATE
    (changes,) = windows.take().values()
    assert (changes.state.watermark_ms, changes.state.latest) == (T, tick(T))


def test_future_tick_does_not_move_the_watermark() -> None:
    windows = Windows(["1s"])
    windows.receive(tick(T))
    assert windows.receive(tick(T + HOUR_MS, recv_ms=T)) is Outcome.FUTURE
    assert windows.receive(tick(T - GRACE_MS)) is Outcome.ACCEPTED
    (changes,) = windows.take().values()
    assert changes.state.watermark_ms == T


def test_replayed_tick_is_skipped_after_restore() -> None:
    windows = Windows(["1m"])
    windows.receive(tick(T), 41)
    (changes,) = windows.take().values()
    restored = Windows(["1m"])
    restored.restore(changes.state)
    assert restored.receive(tick(T + 1, 5.0), 41) is Outcome.REPLAYED
    assert restored.receive(tick(T + 2, 6.0), 42) is Outcome.ACCEPTED
    assert [(c.ticks, c.close) for c in restored.open_candles(XAU, "1m")] == [(2, 6.0)]


def test_rejected_tick_still_advances_the_position() -> None:
    windows = Windows(["1m"])
    windows.receive(tick(T), 1)
    windows.take()
    assert windows.receive(tick(T - HOUR_MS), 2) is Outcome.LATE
    (changes,) = windows.take().values()
    assert (changes.candles, changes.state.pos) == ([], 2)


def test_late_tick_within_grace_updates_the_previous_candle() -> None:
    start = ms("2026-03-08T12:01:00Z")
    windows = Windows(["1m"])
    windows.receive(tick(start - 30_000, 1.0))
    windows.receive(tick(start + 500, 2.0))
    windows.take()
    assert windows.receive(tick(start - 1, 3.0)) is Outcome.ACCEPTED
    (candle,) = changed(windows).values()
    assert (candle.start_ms, candle.close, candle.high, candle.ticks) == (
        start - MINUTE_MS,
        3,
        3,
        2,
    )
    assert not candle.closed


@pytest.mark.parametrize("grace_ms", [0, 1, GRACE_MS])
@pytest.mark.parametrize(
    ("res", "boundary", "start", "end"),
    [
        ("1s", UTC_MIDNIGHT, "2026-03-08T12:00:01Z", "2026-03-08T12:00:02Z"),
        ("1m", UTC_MIDNIGHT, "2026-03-08T12:01:00Z", "2026-03-08T12:02:00Z"),
        ("1d", NY_17, "2026-03-07T17:00:00-05:00", "2026-03-08T17:00:00-04:00"),
        ("1d", NY_17, "2026-10-31T17:00:00-04:00", "2026-11-01T17:00:00-05:00"),
    ],
)
def test_candle_closes_exactly_when_the_watermark_reaches_end_plus_grace(
    res: str, boundary: DailyBoundary, start: str, end: str, grace_ms: int
) -> None:
    start_ms, end_ms = ms(start), ms(end)
    windows = Windows([res], boundary=boundary, grace_ms=grace_ms)
    windows.receive(tick(start_ms))
    windows.receive(tick(end_ms + grace_ms - 1))
    assert changed(windows)[(XAU, res, start_ms)].closed is False
    assert windows.open_candles(XAU, res)[0].start_ms == start_ms

    windows.receive(tick(end_ms + grace_ms))
    candle = changed(windows)[(XAU, res, start_ms)]
    assert candle.closed is True
    assert (candle.end_ms, candle.open, candle.first_ts_ms) == (end_ms, 1.0, start_ms)
    assert all(c.start_ms != start_ms for c in windows.open_candles(XAU, res))
    assert windows.receive(tick(end_ms - 1)) is Outcome.LATE


def test_candle_closes_when_a_tick_moves_the_watermark_far_past_it() -> None:
    windows = Windows(["1s", "1m"])
    windows.receive(tick(T))
    windows.receive(tick(T + 5 * HOUR_MS))
    closed = {(c.res, c.start_ms) for c in changed(windows).values() if c.closed}
    assert closed == {("1s", T - T % SECOND_MS), ("1m", T - T % MINUTE_MS)}


def test_gap_between_ticks_makes_no_empty_candles() -> None:
    windows = Windows(["1s", "1m", "1h"])
    windows.receive(tick(T))
    windows.receive(tick(T + 3 * HOUR_MS))
    counts: dict[str, int] = {}
    for _, res, _ in changed(windows):
        counts[res] = counts.get(res, 0) + 1
    assert counts == {"1s": 2, "1m": 2, "1h": 2}


def test_take_returns_each_changed_candle_once_in_its_latest_state() -> None:
    windows = Windows(["1m"])
    for i in range(3):
        windows.receive(tick(T + i, float(i)))
    (changes,) = windows.take().values()
    assert [(c.ticks, c.close) for c in changes.candles] == [(3, 2.0)]
    assert windows.take() == {}


def test_take_reports_only_symbols_and_candles_changed_since_the_last_take() -> None:
    windows = Windows(["1m"])
    windows.receive(tick(T))
    windows.receive(tick(T, symbol=EUR))
    windows.take()
    windows.receive(tick(T + 1, 2.0, symbol=EUR))
    taken = windows.take()
    assert list(taken) == [EUR]
    assert [c.close for c in taken[EUR].candles] == [2.0]


def test_state_carries_the_newest_tick_watermark_position_and_open_candles() -> None:
    windows = Windows(["1m", "1h"])
    windows.receive(tick(T + 5, 1.0), 10)
    windows.receive(tick(T + 5, 2.0), 11)  # equal time: the later arrival is the latest
    windows.receive(tick(T + 1, 3.0), 12)
    state = windows.take()[XAU].state
    assert (state.symbol, state.latest, state.watermark_ms, state.pos) == (
        XAU,
        tick(T + 5, 2.0),
        T + 5,
        12,
    )
    assert state.seqs == {}
    assert [(c.res, c.ticks, c.closed) for c in state.open] == [("1m", 3, False), ("1h", 3, False)]


def test_restore_ignores_closed_candles_and_resolutions_not_kept() -> None:
    source = Windows(["1s", "1m"])
    source.receive(tick(T))
    state = source.take()[XAU].state
    closed = Candle(XAU, "1m", T - MINUTE_MS, T, 1, 1, 1, 1, 1, T - 1, T - 1, True)
    windows = Windows(["1m"])
    windows.restore(SymbolState(XAU, state.latest, T, 0, {}, [*state.open, closed]))
    assert XAU in windows
    assert windows.take() == {}
    assert [c.start_ms for c in windows.open_candles(XAU, "1m")] == [T - T % MINUTE_MS]


def test_forget_drops_a_symbol_and_its_pending_changes() -> None:
    windows = Windows()
    windows.receive(tick(T))
    windows.receive(tick(T, symbol=EUR))
    windows.forget(XAU)
    assert XAU not in windows
    assert windows.symbols() == [EUR]
    assert list(windows.take()) == [EUR]
    assert windows.open_candles(XAU, "1m") == []


def test_only_the_chosen_resolutions_are_kept() -> None:
    windows = Windows(["5m", "1d"])
    windows.receive(tick(T))
    assert sorted(res for _, res, _ in changed(windows)) == ["1d", "5m"]


def test_negative_grace_is_rejected() -> None:
    with pytest.raises(ValueError, match="grace_ms"):
        Windows(grace_ms=-1)


def test_unknown_resolution_is_rejected() -> None:
    with pytest.raises(UnknownResolution):
        Windows(["1m", "2m"])
