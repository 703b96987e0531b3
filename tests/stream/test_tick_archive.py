"""The tick archive with the real in-process bus and SQLite: every tick kept, once."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.bus.memory import MemoryBus
from stream.contract import TICKS, StoreError, Tick, encode_tick
from stream.contract.resolutions import DAY_MS
from stream.store.sqlite import SqliteStore
from stream.tick_archive import TickArchive

T0 = 1_790_000_000_000


def tick(i: int) -> Tick:
    return Tick("XPT-USD", "v", 990.0 + i, 991.0 + i, 990.5 + i, T0 + i, T0 + i + 2, 1.5, i)


async def test_every_tick_on_the_bus_lands_in_the_archive_and_bad_records_are_skipped(
    tmp_path: Path,
) -> None:
    bus = MemoryBus()
    store = await SqliteStore.open(tmp_path / "s.db", tick_archive_ms=DAY_MS)
    try:
        archive = TickArchive(consumer=await bus.consumer(TICKS, group="a"), store=store)
        producer = await bus.producer()
        ticks = [tick(i) for i in range(50)]
        await producer.send_many(TICKS, [(b"XPT-USD", encode_tick(t)) for t in ticks])
        await producer.send(TICKS, b"not a tick")
        assert await archive.drain_once(timeout_ms=500) == 50
        assert await store.archived_ticks("XPT-USD", limit=100) == ticks
    finally:
        await store.close()


async def test_a_store_opened_without_an_archive_refuses_ticks(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "s.db")
    try:
        with pytest.raises(StoreError, match="without a tick archive"):
            await store.archive_ticks([tick(0)])
    finally:
        await store.close()
