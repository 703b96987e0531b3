"""A crash between the store write and the Kafka commit: the replay must count nothing twice.

A random ``kill -9`` rarely lands in that window (a few milliseconds per flush), so this test
puts the crash exactly there: the first worker's consumer fails on ``commit``, after the
candles and states of the batch are stored. The next worker reads the same records again from
the last commit and must recognise each one by the position stored with its symbol's state.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from stream.consumer import StreamWorker
from stream.contract import Positions, Record, SymbolState
from stream.windows import Windows
from tests.distributed import GRACE_MS, Cluster, diff, make_ticks, reference
from tests.services.kafka import KafkaBroker
from tests.services.mongo import MongoServer


class Crash(Exception):
    pass


class CrashOnCommit:
    """The real Kafka consumer, except that ``commit`` never happens: the process 'dies'."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.durable: bool = inner.durable  # type: ignore[attr-defined]
        self.polled = 0

    async def poll(self, *, max_records: int, timeout_ms: int) -> list[Record]:
        got: list[Record] = await self.inner.poll(  # type: ignore[attr-defined]
            max_records=max_records, timeout_ms=timeout_ms
        )
        self.polled += len(got)
        return got

    async def commit(self, positions: Positions | None = None) -> None:
        raise Crash("killed between the store write and the commit")

    def seek(self, positions: Positions) -> None:
        self.inner.seek(positions)  # type: ignore[attr-defined]

    def lag(self) -> int | None:
        lag: int | None = self.inner.lag()  # type: ignore[attr-defined]
        return lag

    def end(self, partition: int) -> int | None:
        end: int | None = self.inner.end(partition)  # type: ignore[attr-defined]
        return end

    async def close(self) -> None:
        await self.inner.close()  # type: ignore[attr-defined]


@pytest.mark.timeout(120)
async def test_records_replayed_after_a_crash_before_commit_are_not_counted_again(
    tmp_path: Path, kafka_broker: KafkaBroker, mongo_server: MongoServer
) -> None:
    cluster = Cluster(tmp_path, kafka_broker, mongo_server)
    try:
        ticks = make_ticks(3_000, seed=5)
        expected = reference(ticks)
        bus, store = await cluster.bus(), await cluster.store()
        await cluster.publish(ticks[:2_000], chunk=500, pause_s=0)

        group = cluster.settings.bus.group
        first = await StreamWorker.open(bus, store=store, windows=Windows(grace_ms=GRACE_MS),
                                        group=group)  # fmt: skip
        crashing = CrashOnCommit(first.consumer)
        first.consumer = crashing
        with pytest.raises(Crash):
            async with asyncio.timeout(60):
                await first.run()  # stored its first flush, then "died" committing it
        assert crashing.polled > 0
        assert first.stats.store_writes >= 1
        await crashing.close()

        await cluster.publish(ticks[2_000:], chunk=500, pause_s=0)
        second = await StreamWorker.open(bus, store=store, windows=Windows(grace_ms=GRACE_MS),
                                         group=group)  # fmt: skip
        task = asyncio.create_task(second.run())
        got = await cluster.converge(expected, seconds=60)
        second.stop()
        await task
        await second.consumer.close()
        assert second.stats.replayed > 0  # it did read records the first one had stored
        assert got == expected, diff(expected, got)
    finally:
        await cluster.close()


@pytest.mark.timeout(120)
async def test_a_symbol_moved_to_another_partition_is_not_skipped_as_a_replay(
    tmp_path: Path, kafka_broker: KafkaBroker, mongo_server: MongoServer
) -> None:
    """A state stored from partition 3 at a high position (before ``partition_map`` moved the
    symbol) must not make the worker skip the symbol's ticks in its new partition."""
    cluster = Cluster(tmp_path, kafka_broker, mongo_server)
    try:
        ticks = [t for t in make_ticks(400, seed=6) if t.symbol == "XAU-USD"]
        store = await cluster.store()
        old = SymbolState("XAU-USD", None, ticks[0].ts_ms - 60_000, 1_000_000, {}, [], 3)
        await store.write([], [old])
        await cluster.publish(ticks, chunk=100, pause_s=0)
        bus = await cluster.bus()
        worker = await StreamWorker.open(bus, store=store, windows=Windows(grace_ms=GRACE_MS),
                                         group=cluster.settings.bus.group)  # fmt: skip
        task = asyncio.create_task(worker.run())
        expected = {k: v for k, v in reference(ticks).items() if k[0] == "XAU-USD"}
        got = await cluster.converge(expected, seconds=60)
        worker.stop()
        await task
        await worker.consumer.close()
        assert worker.stats.replayed == 0
        assert got == expected, diff(expected, got)
        state = await store.state("XAU-USD")
        assert state is not None
        assert state.partition == 0  # pinned by the default partition map
    finally:
        await cluster.close()
