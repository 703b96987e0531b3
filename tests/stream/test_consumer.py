"""The stream worker with the real in-process bus and the real SQLite store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from stream.bus.memory import MemoryBus
from stream.consumer import UPDATE_TICKS, StreamWorker
from stream.contract import (
    DEADLETTER,
    TICKS,
    UPDATES,
    Candle,
    Tick,
    decode_deadletter,
    decode_update,
    encode_tick,
)
from stream.stats import STORE_WRITE_BUCKETS_MS, WorkerStats
from stream.store.sqlite import SqliteStore
from stream.windows import Windows

T0 = 1_790_000_000_000


def tick(i: int, *, ts_ms: int | None = None, symbol: str = "XAU-USD") -> Tick:
    ts = T0 + i * 250 if ts_ms is None else ts_ms
    price = 4000.0 + (i * 7919 % 101) / 10
    return Tick(symbol, "v", price - 0.2, price + 0.2, price, ts, ts + 5, None, i)


class Pipeline:
    def __init__(self, bus: MemoryBus, store: SqliteStore) -> None:
        self.bus, self.store = bus, store

    async def worker(self) -> StreamWorker:
        return StreamWorker(
            consumer=await self.bus.consumer(TICKS, group="stream"),
            producer=await self.bus.producer(),
            store=self.store,
            windows=Windows(grace_ms=1_000),
            flush_interval_ms=20,
        )

    async def run(self, ticks: Sequence[Tick], *, raw: Sequence[bytes] = ()) -> StreamWorker:
        """Publish ``ticks`` (and ``raw`` records), let a worker drain them, stop it."""
        worker = await self.worker()
        task = asyncio.create_task(worker.run())
        producer = await self.bus.producer()
        await producer.send_many(TICKS, [(t.symbol.encode(), encode_tick(t)) for t in ticks])
        await producer.send_many(TICKS, [(None, r) for r in raw])
        worker.stop()
        await asyncio.wait_for(task, 10)
        return worker


@pytest.fixture
async def pipeline(tmp_path: Path) -> AsyncIterator[Pipeline]:
    store = await SqliteStore.open(tmp_path / "s.db")
    yield Pipeline(MemoryBus(), store)
    await store.close()


def reference(ticks: Sequence[Tick], res: str) -> list[Candle]:
    windows = Windows(grace_ms=1_000)
    final: dict[int, Candle] = {}
    for t in ticks:
        windows.receive(t)
    for change in windows.take().values():
        final.update((c.start_ms, c) for c in change.candles if c.res == res)
    return [final[k] for k in sorted(final)]


async def test_every_tick_lands_in_the_store_and_equals_the_pure_windows(
    pipeline: Pipeline,
) -> None:
    ticks = [tick(i) for i in range(2_000)]
    worker = await pipeline.run(ticks)
    assert worker.stats.ticks_accepted == 2_000
    for res in ("1s", "1m", "1h"):
        assert await pipeline.store.candles("XAU-USD", res, limit=5_000) == reference(ticks, res)


async def test_updates_number_each_channel_one_by_one(pipeline: Pipeline) -> None:
    updates = await pipeline.bus.consumer(UPDATES, group=None)
    await pipeline.run([tick(i) for i in range(300)])
    tick_seqs: list[int] = []
    minute_seqs: list[int] = []
    for rec in await updates.poll(max_records=10_000, timeout_ms=100):
        update = decode_update(rec.value)
        tick_seqs += [seq for seq, _ in update.ticks]
        minute_seqs += [seq for seq, c in update.candles if c.res == "1m"]
    assert tick_seqs == list(range(1, 301))
    assert minute_seqs == list(range(1, len(minute_seqs) + 1))


async def test_a_batch_of_many_ticks_of_one_symbol_is_split_into_bounded_update_records(
    pipeline: Pipeline,
) -> None:
    """A backlog read in one batch (after an outage) made one record of every tick of a symbol,
    larger than the broker accepts; records now hold at most ``UPDATE_TICKS`` ticks."""
    updates = await pipeline.bus.consumer(UPDATES, group=None)
    worker = await pipeline.worker()
    producer = await pipeline.bus.producer()
    await producer.send_many(TICKS, [(b"XAU-USD", encode_tick(tick(i))) for i in range(2_500)])
    records = await worker.consumer.poll(max_records=5_000, timeout_ms=100)
    assert len(records) == 2_500  # one batch
    await worker.process(records)
    got = [decode_update(r.value) for r in await updates.poll(max_records=100, timeout_ms=100)]
    assert [len(u.ticks) for u in got] == [UPDATE_TICKS, UPDATE_TICKS, 500]
    assert [bool(u.candles) for u in got] == [False, False, True]  # candles with the last
    assert [seq for u in got for seq, _ in u.ticks] == list(range(1, 2_501))
    assert max(len(r.value) for r in records) * UPDATE_TICKS < 500_000


async def test_a_restarted_worker_continues_candles_and_numbering(pipeline: Pipeline) -> None:
    ticks = [tick(i) for i in range(1_000)]
    await pipeline.run(ticks[:600])
    updates = await pipeline.bus.consumer(UPDATES, group=None)
    await pipeline.run(ticks[600:])
    first = decode_update((await updates.poll(max_records=1, timeout_ms=100))[0].value)
    assert first.ticks[0][0] == 601
    for res in ("1s", "1m", "5m", "1d"):
        assert await pipeline.store.candles("XAU-USD", res, limit=5_000) == reference(ticks, res)


async def test_late_and_undecodable_records_are_dead_lettered_with_reason_and_bytes(
    pipeline: Pipeline,
) -> None:
    letters = await pipeline.bus.consumer(DEADLETTER, group=None)
    late = tick(99, ts_ms=T0 - 5_000)
    worker = await pipeline.run([tick(0), tick(40), late], raw=[b'{"v":1,"symbol":1}', b"\xff"])
    got = [decode_deadletter(r.value) for r in await letters.poll(max_records=10, timeout_ms=100)]
    assert [d.reason.split(":")[0] for d in got] == ["late", "undecodable", "undecodable"]
    assert got[0].raw == encode_tick(late)
    assert got[2].raw == b"\xff"
    assert all(d.source == "stream:ticks" for d in got)
    assert worker.stats.rejected == {"late": 1, "undecodable": 2}
    assert worker.stats.ticks_accepted == 2


async def test_stop_drains_everything_already_on_the_bus(pipeline: Pipeline) -> None:
    worker = await pipeline.run(
        [tick(i, symbol=s) for i in range(500) for s in ("XAU-USD", "XAG-USD")]
    )
    assert worker.stats.ticks_in == 1_000
    assert worker.stats.ticks_committed == 1_000  # no lag left
    assert sum(worker.stats.store_write_buckets) == worker.stats.store_writes >= 1
    state = await pipeline.store.state("XAG-USD")
    assert state is not None
    assert state.latest == tick(499, symbol="XAG-USD")


@pytest.mark.parametrize(
    ("ms", "bucket"),
    [(0.2, 0), (1.0, 0), (1.01, 1), (7.0, 3), (10_000.0, len(STORE_WRITE_BUCKETS_MS) - 1),
     (10_000.5, len(STORE_WRITE_BUCKETS_MS))],
)  # fmt: skip
def test_a_store_write_is_counted_in_the_first_bucket_that_holds_it(ms: float, bucket: int) -> None:
    stats = WorkerStats()
    stats.observe_store_write(ms)
    assert stats.store_write_buckets.index(1) == bucket
    assert sum(stats.store_write_buckets) == stats.store_writes == 1
    assert stats.store_write_ms_total == ms
