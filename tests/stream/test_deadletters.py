"""The dead-letter archive keeps every rejected message in the store."""

from __future__ import annotations

from pathlib import Path

from stream.bus.memory import MemoryBus
from stream.contract import DEADLETTER, DeadLetter, encode_deadletter
from stream.deadletters import DeadLetterArchive
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
