"""The archives with the real in-process bus and SQLite: dead letters with their reasons and
raw bytes, and raw ticks, each kept once."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.archive import DeadLetterArchive, TickArchive
from stream.bus.memory import MemoryBus
from stream.contract import (
    DEADLETTER,
    TICKS,
    DeadLetter,
    StoreError,
    Tick,
    encode_deadletter,
    encode_tick,
)
from stream.contract.resolutions import DAY_MS
from stream.store.sqlite import SqliteStore


async def test_archived_letters_are_in_the_store_with_reason_and_raw_bytes(tmp_path: Path) -> None:
    bus = MemoryBus()
    store = await SqliteStore.open(tmp_path / "s.db")
    try:
        archive = DeadLetterArchive(consumer=await bus.consumer(DEADLETTER, group="a"), store=store)
        producer = await bus.producer()
        letter = DeadLetter("crossed quote: bid 2 > ask 1", "vendor:x", 7, b"\x00raw\xff")
        await producer.send_many(DEADLETTER, [(None, encode_deadletter(letter)), (None, b"junk")])
        assert await archive.drain_once(timeout_ms=100) == 2
        newest, oldest = await store.deadletters(limit=10)
        assert oldest == letter
        assert newest.reason.startswith("undecodable dead letter")
        assert newest.raw == b"junk"
    finally:
        await store.close()


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
