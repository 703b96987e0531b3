"""The simulated feed: deterministic, plausible, several vendors, one that stalls."""

from __future__ import annotations

import itertools
from collections import Counter

from ingest.simulator import METALS, Simulator, SimVendor
from ingest.validate import problem

T0 = 1_790_000_000_000


def run(seed: int, *, minutes: int = 5, step_ms: int = 1_000, **kw: object) -> list:  # type: ignore[type-arg]
    sim = Simulator(seed=seed, start_ms=T0, **kw)  # type: ignore[arg-type]
    out = []
    for t in range(T0, T0 + minutes * 60_000, step_ms):
        out += sim.advance(t)
    return out


def test_the_same_seed_gives_the_same_ticks_and_another_seed_does_not() -> None:
    assert run(3, minutes=1) == run(3, minutes=1)
    assert run(3, minutes=1) != run(4, minutes=1)


def test_ticks_are_plausible_and_in_time_order() -> None:
    ticks = run(1)
    assert all(problem(t) is None for t in ticks)
    assert [t.ts_ms for t in ticks] == sorted(t.ts_ms for t in ticks)
    assert {t.symbol for t in ticks} == {m.symbol for m in METALS}
    for metal in METALS:
        prices = [t.price for t in ticks if t.symbol == metal.symbol]
        assert max(prices) / min(prices) < 1.02  # five minutes of a realistic walk


def test_tick_rate_is_what_was_asked() -> None:
    ticks = run(2, rate_hz=10.0)
    per_stream = len(ticks) / (3 * 4)  # vendors x metals, stalls aside
    assert 2_400 < per_stream < 3_100  # 10/s for 300 s, a little less while one vendor stalls


def test_vendors_disagree_slightly_about_the_same_metal() -> None:
    ticks = [t for t in run(5, minutes=2) if t.symbol == "XAU-USD"]
    by_vendor = {v: [t.price for t in ticks if t.vendor == v] for v in ("sim-alpha", "sim-beta")}
    mean = {v: sum(p) / len(p) for v, p in by_vendor.items()}
    assert mean["sim-alpha"] != mean["sim-beta"]
    assert abs(mean["sim-alpha"] - mean["sim-beta"]) / mean["sim-alpha"] < 0.005


def test_a_stalling_vendor_goes_silent_for_its_stall_time() -> None:
    vendors = (SimVendor("steady"), SimVendor("flaky", stall_per_hour=600, stall_ms=5_000))
    ticks = run(9, minutes=10, vendors=vendors, rate_hz=5.0)
    counts = Counter(t.vendor for t in ticks)
    assert counts["flaky"] < counts["steady"] * 0.9
    flaky = [t.ts_ms for t in ticks if t.vendor == "flaky"]
    longest_gap = max(b - a for a, b in itertools.pairwise(flaky))
    assert longest_gap >= 5_000


def test_vendor_sequence_numbers_rise_by_one() -> None:
    ticks = [t for t in run(6, minutes=1) if t.vendor == "sim-alpha"]
    assert [t.seq for t in ticks] == list(range(1, len(ticks) + 1))


def test_history_is_deterministic_sparse_far_back_dense_near_now_and_leads_into_live() -> None:
    first = Simulator(seed=5, start_ms=T0, backfill=True)
    history = first.history()
    assert history == Simulator(seed=5, start_ms=T0, backfill=True).history()
    assert history != Simulator(seed=6, start_ms=T0, backfill=True).history()
    assert Simulator(seed=5, start_ms=T0).history() == []  # a process that cannot know
    assert [t.ts_ms for t in history] == sorted(t.ts_ms for t in history)
    assert all(problem(t) is None for t in history)
    gold = [t for t in history if t.symbol == "XAU-USD"]
    assert T0 - gold[0].ts_ms >= 89 * 86_400_000  # 90 days back...
    assert T0 - gold[-1].ts_ms <= 2_000  # ...up to the first live tick
    gaps = {b.ts_ms - a.ts_ms for a, b in itertools.pairwise(gold)}
    assert {2_000, 20_000, 1_200_000} <= gaps  # (and a shorter one where two spans meet)
    assert max(gaps) == 1_200_000
    live = [t for t in first.advance(T0 + 5_000) if t.symbol == "XAU-USD"]
    assert live
    assert abs(live[0].price / gold[-1].price - 1) < 0.001  # live goes on from the history


def test_a_metal_with_a_stored_price_continues_from_it_without_history() -> None:
    sim = Simulator(seed=5, start_ms=T0, prices={"XAU-USD": 4321.0}, backfill=True)
    history = sim.history()
    assert "XAU-USD" not in {t.symbol for t in history}
    assert {t.symbol for t in history} == {m.symbol for m in METALS} - {"XAU-USD"}
    gold = [t for t in sim.advance(T0 + 10_000) if t.symbol == "XAU-USD"]
    assert gold
    assert all(abs(t.price / 4321.0 - 1) < 0.002 for t in gold)


def test_history_days_sets_how_far_back_and_zero_turns_history_off() -> None:
    assert Simulator(seed=5, start_ms=T0, backfill=True, history_days=0).history() == []
    week = Simulator(seed=5, start_ms=T0, backfill=True, history_days=7).history()
    assert 7 * 86_400_000 <= T0 - week[0].ts_ms <= 7 * 86_400_000 + 1_200_000  # on a 20-min step
