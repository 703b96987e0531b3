"""One price from many vendors: the median and primary rules, staleness and recovery."""

from __future__ import annotations

import pytest

from ingest.composite import Composite
from stream.contract import Tick

T0 = 1_795_000_000_000


def q(vendor: str, bid: float, ask: float, at: int, symbol: str = "XAU-USD") -> Tick:
    return Tick(symbol, vendor, bid, ask, (bid + ask) / 2, at, at, None, None)


def test_median_of_fresh_mids_with_the_median_spread() -> None:
    c = Composite(default_stale_ms=1_000)
    assert c.update(q("a", 99.0, 101.0, T0), T0) == Tick(
        "XAU-USD", "composite", 99.0, 101.0, 100.0, T0, T0, None, 1
    )
    c.update(q("b", 101.5, 102.5, T0 + 1), T0 + 1)  # mids 100, 102: mean 101, spreads 2 and 1
    out = c.update(q("c", 109.0, 109.4, T0 + 2), T0 + 2)  # mids 100, 102, 109.2 -> 102
    assert out is not None
    assert (out.bid, out.ask, out.price, out.seq, out.vendor) == (
        101.5,
        102.5,
        102.0,
        3,
        "composite",
    )


def test_a_stale_vendor_stops_counting_and_counts_again_when_fresh() -> None:
    c = Composite(stale_after_ms={"slow": 500}, default_stale_ms=10_000)
    c.update(q("slow", 90.0, 90.0, T0), T0)
    c.update(q("fast", 100.0, 100.0, T0), T0)
    assert c.fresh("XAU-USD", T0 + 400) == ["fast", "slow"]
    out = c.update(q("fast", 100.2, 100.2, T0 + 600), T0 + 600)  # "slow" is stale now
    assert out is not None
    assert out.price == pytest.approx(100.2)
    assert c.fresh("XAU-USD", T0 + 600) == ["fast"]
    back = c.update(q("slow", 90.0, 90.0, T0 + 700), T0 + 700)
    assert back is not None
    assert back.price == pytest.approx(95.1)


def test_heartbeats_keep_an_unchanged_quote_fresh() -> None:
    c = Composite(stale_after_ms={"a": 500})
    c.update(q("a", 1.0, 1.0, T0), T0)
    c.touch("a", T0 + 450)
    assert c.fresh("XAU-USD", T0 + 900) == ["a"]
    assert c.fresh("XAU-USD", T0 + 951) == []


def test_primary_with_failover_and_back() -> None:
    c = Composite(rule="primary", priority=("main", "backup"), default_stale_ms=500)
    c.update(q("backup", 2.0, 2.0, T0), T0)
    main = c.update(q("main", 1.0, 1.0, T0 + 1), T0 + 1)
    assert main is not None
    assert main.price == 1.0
    assert c.update(q("backup", 2.1, 2.1, T0 + 100), T0 + 100) is None  # main rules: standby
    assert c.standby == 1
    failover = c.update(q("backup", 2.2, 2.2, T0 + 600), T0 + 600)  # main silent past 500 ms
    assert failover is not None
    assert failover.price == 2.2
    again = c.update(q("main", 1.1, 1.1, T0 + 700), T0 + 700)
    assert again is not None
    assert again.price == 1.1


def test_composite_time_never_goes_back_and_symbols_are_separate() -> None:
    c = Composite()
    c.update(q("a", 1.0, 1.0, T0 + 50), T0 + 50)
    later = c.update(q("b", 3.0, 3.0, T0), T0 + 60)  # b's clock is behind
    assert later is not None
    assert later.ts_ms == T0 + 50
    other = c.update(q("a", 7.0, 7.0, T0, symbol="XAG-USD"), T0 + 70)
    assert other is not None
    assert (other.price, other.seq) == (7.0, 1)


def test_an_unknown_rule_is_refused() -> None:
    with pytest.raises(ValueError, match="median, primary"):
        Composite(rule="mean")


def test_every_vendor_tick_makes_one_composite_tick_even_when_the_price_is_unchanged() -> None:
    c = Composite()
    made = [c.update(q("a", 99.0, 101.0, T0 + i), T0 + i) for i in range(5)]
    assert [t.seq for t in made if t is not None] == [1, 2, 3, 4, 5]
    assert {t.price for t in made if t is not None} == {100.0}


def test_one_vendor_passes_through_exactly_its_bid_ask_and_price() -> None:
    c = Composite()
    tick = Tick("XAG-USD", "a", 50.123, 50.153, 50.1411, T0, T0 + 2, None, 7)
    out = c.update(tick, tick.recv_ms)
    assert out == Tick("XAG-USD", "composite", 50.123, 50.153, 50.1411, T0, T0 + 2, None, 1)


def test_a_vendor_silent_while_another_quotes_stops_counting_by_their_receipt_times() -> None:
    c = Composite(default_stale_ms=1_000)
    c.update(q("a", 100.0, 100.0, T0), T0)
    both = c.update(q("b", 102.0, 102.0, T0 + 500), T0 + 500)
    assert both is not None
    assert both.price == 101.0
    alone = c.update(q("b", 102.0, 102.0, T0 + 1_600), T0 + 1_600)  # "a" silent 1.6 s
    assert alone is not None
    assert alone.price == 102.0
