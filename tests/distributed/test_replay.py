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
from stream.contract import Positions, Record
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
