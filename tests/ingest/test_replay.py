"""File replay, the simulator kind, the composite on the bus and the vendor status topic."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from ingest.composite import Composite
from ingest.config import CompositeConfig, parse_vendors
from ingest.feed import Feed
from ingest.publisher import Publisher
from ingest.replay import ReplayCollector
from ingest.service import limits
from stream.bus.memory import MemoryBus
from stream.contract import TICKS, decode_tick
from tests.ingest import messages as m
from tests.ingest.fakes import FakePoll, eventually, http_server, now_ms
from tests.ingest.harness import collecting

T0 = 1_700_000_000_000  # history: far older than any age limit


def write_jsonl(path: Path, n: int) -> list[bytes]:
    lines = [
        orjson.dumps({"symbol": "XAU-USD", "ts_ms": T0 + i * 1000, "bid": 2000.0 + i / 10,
                      "ask": 2000.4 + i / 10, "price": 2000.2 + i / 10, "seq": i})
        for i in range(n)
    ]  # fmt: skip
    lines[5] = b'{"symbol":"XAU-USD","ts_ms":"yesterday","price":1}'
    lines[7] = lines[6]  # re-sent line
    path.write_bytes(b"\n".join(lines) + b"\n")
    return lines


async def test_a_jsonl_replay_publishes_every_good_line_and_dead_letters_the_rest(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ticks.jsonl"
    lines = write_jsonl(path, 3_000)
    seen: list[tuple[int, int]] = []
    table = {"name": "rp", "kind": "replay", "path": str(path), "speed": 0}
    async with collecting([table], progress=lambda done, total: seen.append((done, total))) as h:
        await eventually(lambda: len(h.ticks) == 2_998 and h.ingest.replays[0].done.is_set())
    assert [t.seq for t in h.ticks] == [i for i in range(3_000) if i not in (5, 7)]
    assert h.ticks[0].ts_ms == T0
    [letter] = h.letters
    assert letter.reason.startswith("bad field: ts_ms")
    assert letter.raw == lines[5]
    assert h.feed("rp").stats.duplicates == 1
    assert seen[-1] == (path.stat().st_size, path.stat().st_size)
    assert len(seen) >= 3  # progress after each batch of 1,000 lines


async def test_a_csv_replay_at_a_speed_factor_keeps_the_order(tmp_path: Path) -> None:
    path = tmp_path / "ticks.csv"
    rows = [f"{'XAG-USD' if i % 2 else 'XAU-USD'},{T0 + i * 100},,,{50 + i}" for i in range(20)]
    path.write_text("symbol,ts_ms,bid,ask,price\n" + "\n".join(rows) + "\nXAU-USD,oops,,,1\n")
    table = {"name": "csv", "kind": "replay", "path": str(path), "speed": 20.0}
    async with collecting([table]) as h:
        await eventually(lambda: len(h.ticks) == 20 and len(h.letters) == 1)
        assert h.ingest.replays[0].done.is_set()
    assert [t.price for t in h.ticks] == [50.0 + i for i in range(20)]
    assert [t.symbol for t in h.ticks[:2]] == ["XAU-USD", "XAG-USD"]
    assert h.reasons() == {"bad field"}


async def test_the_simulator_kind_publishes_gapless_ticks() -> None:
    table = {"name": "sim", "kind": "simulator", "rate_hz": 200.0, "interval_ms": 10}
    async with collecting([table]) as h:
        await eventually(lambda: len(h.ticks) >= 200)
        stats = h.feed("sim").stats
    assert {t.vendor for t in h.ticks} >= {"sim-alpha", "sim-beta"}
    assert stats.gaps == 0
    assert not h.letters


async def test_the_composite_goes_on_ticks_and_vendor_ticks_beside_it() -> None:
    t = now_ms()
    a = FakePoll(lambda path: m.gold_api_price("XAU", 4050.0 + a.version, t + a.version))
    b = FakePoll(lambda path: m.metals_api_latest({"XAU": 1 / 4052.0}, t))
    async with http_server(a.app()) as url_a, http_server(b.app()) as url_b:
        tables: list[dict[str, object]] = [
            {"name": "gold", "kind": "http_poll", "profile": "gold_api", "url": url_a,
             "symbols": {"XAU": "XAU-USD"}, "interval_ms": 20},
            {"name": "rates", "kind": "http_poll", "profile": "metals_api", "url": url_b,
             "symbols": {"XAU": "XAU-USD"}, "interval_ms": 20},
        ]  # fmt: skip
        async with collecting(tables, composite=CompositeConfig()) as h:
            await eventually(lambda: {t.vendor for t in h.vendor_ticks} == {"gold", "rates"})
            await eventually(lambda: any(abs(t.price - 4051.5) < 1e-6 for t in h.ticks))
            a.version = 3  # gold moves: the composite follows
            await eventually(lambda: any(abs(t.price - 4052.5) < 1e-6 for t in h.ticks))
            await eventually(lambda: any(s.name == "gold" and s.published == 2 for s in h.statuses))
    assert {t.vendor for t in h.ticks} == {"composite"}
    assert [t.seq for t in h.ticks] == list(range(1, len(h.ticks) + 1))
    status = next(s for s in h.statuses if s.name == "gold" and s.published == 2)
    assert (status.kind, status.profile, status.connected, status.stale) == (
        "http_poll",
        "gold_api",
        True,
        False,
    )
    assert status.messages >= 2
    assert status.last_message_ms is not None


async def test_a_paced_replay_whose_batch_outlasts_the_staleness_limit_loses_nothing(
    tmp_path: Path,
) -> None:
    """Speed 1, the composite on, one batch of 80 lines taking 4 s to pace out against a
    staleness limit of 100 ms: every line makes its composite tick, stamped as it is released."""
    path = tmp_path / "ticks.jsonl"
    t0 = now_ms() - 3_600_000
    rows = [{"symbol": "XAU-USD", "ts_ms": t0 + i * 50, "bid": 4000.0 + i, "ask": 4000.5 + i}
            for i in range(80)]  # fmt: skip
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    table = {"name": "rp", "kind": "replay", "path": str(path), "speed": 1.0,
             "stale_after_ms": 100}  # fmt: skip
    async with collecting([table], composite=CompositeConfig()) as h:
        await eventually(lambda: h.ingest.replays[0].done.is_set(), timeout_s=30)
        await eventually(lambda: len(h.ticks) == 80, timeout_s=5)
    assert [t.bid for t in h.ticks] == [r["bid"] for r in rows]
    assert [t.ts_ms for t in h.ticks] == [r["ts_ms"] for r in rows]
    receipts = [t.recv_ms for t in h.ticks]
    assert receipts == sorted(receipts)
    assert receipts[-1] - receipts[0] >= 3_000  # released over the file's own 4 s, not at once
    assert not h.letters


class VirtualClock:
    """Time that moves only when the replay sleeps: minutes of pacing run at once."""

    def __init__(self, start_ms: int) -> None:
        self.ms = start_ms

    def now_ms(self) -> int:
        return self.ms

    def now_s(self) -> float:
        return self.ms / 1000

    async def sleep(self, seconds: float) -> None:
        self.ms += max(1, round(seconds * 1000))
        await asyncio.sleep(0)


async def test_a_speed_1_replay_whose_batch_takes_ten_minutes_loses_nothing(tmp_path: Path) -> None:
    """The defaults: speed 1, the composite on, a 10 s staleness limit, batches of 1,000 lines;
    the one batch takes ten (virtual) minutes to pace out, 60 times the limit."""
    path = tmp_path / "tape.jsonl"
    t0 = T0 + 3_600_000
    rows = [{"symbol": "XAU-USD", "ts_ms": t0 + i * 600, "bid": 4000.0 + i / 100,
             "ask": 4000.5 + i / 100} for i in range(1_000)]  # fmt: skip
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    [vendor] = parse_vendors([{"name": "tape", "kind": "replay", "path": str(path)}])
    assert (vendor.speed, vendor.stale_after_ms) == (1.0, 10_000)
    clock = VirtualClock(now_ms())
    bus = MemoryBus()
    ticks_in = await bus.consumer(TICKS, group="t")
    publisher = Publisher(
        await bus.producer(), composite=Composite(stale_after_ms={"tape": vendor.stale_after_ms})
    )
    feed = Feed("tape", kind="replay", profile="jsonl", parse=None, publisher=publisher,
                limits=limits(vendor, gapless=False), stale_after_ms=vendor.stale_after_ms,
                clock_ms=clock.now_ms)  # fmt: skip
    replay = ReplayCollector(feed, path=path, speed=vendor.speed, clock_s=clock.now_s,
                             sleep=clock.sleep)  # fmt: skip
    started_ms = clock.now_ms()
    async with publisher.running():
        await replay.run()
    assert clock.now_ms() - started_ms >= 599_000  # ten minutes of pacing, one batch
    got = [decode_tick(r.value) for r in await ticks_in.poll(max_records=2_000, timeout_ms=10)]
    assert [(t.ts_ms, t.bid, t.vendor) for t in got] == [
        (r["ts_ms"], r["bid"], "composite") for r in rows
    ]
    assert [t.recv_ms - started_ms for t in got] == [i * 600 for i in range(1_000)]
