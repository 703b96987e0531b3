"""The archives with the real in-process bus and SQLite: dead letters with their reasons and
raw bytes, and raw ticks, each kept once. Replays after a crash with a real Kafka broker, and
both stores."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from stream.archive import DeadLetterArchive, TickArchive
from stream.bus.kafka import KafkaBus, KafkaOptions, TopicSpec
from stream.bus.memory import MemoryBus
from stream.contract import (
    DEADLETTER,
    TICKS,
    Consumer,
    DeadLetter,
    Record,
    Store,
    StoreError,
    Tick,
    encode_deadletter,
    encode_tick,
)
from stream.contract.resolutions import DAY_MS
from stream.store.mongo import MongoStore
from stream.store.sqlite import SqliteStore
from tests.services.kafka import KafkaBroker
from tests.services.mongo import MongoServer


async def test_archived_letters_are_in_the_store_with_reason_and_raw_bytes(tmp_path: Path) -> None:
    bus = MemoryBus()
    store = await SqliteStore.open(tmp_path / "s.db")
    try:
        consumer = await bus.consumer(DEADLETTER, group="a")
        archive = DeadLetterArchive(consumer=consumer, store=store, clock_ms=lambda: 1_000)
        producer = await bus.producer()
        letter = DeadLetter("crossed quote: bid 2 > ask 1", "vendor:x", 7, b"\x00raw\xff")
        await producer.send_many(DEADLETTER, [(None, encode_deadletter(letter)), (None, b"junk")])
        assert await archive.drain_once(timeout_ms=100) == 2
        newest, oldest = await store.deadletters(limit=10)
        assert oldest == letter
        assert newest.reason.startswith("undecodable dead letter")
        assert (newest.source, newest.ts_ms, newest.raw) == (DEADLETTER, 1_000, b"junk")
    finally:
        await store.close()


async def test_on_the_in_process_bus_a_letter_at_an_offset_used_before_a_restart_is_kept(
    tmp_path: Path,
) -> None:
    """Its positions start again with the process: they do not identify a letter."""
    store = await SqliteStore.open(tmp_path / "s.db")
    try:
        letters = [DeadLetter(f"late: {i}", "vendor:x", 10 + i, b"%d" % i) for i in range(2)]
        for one in letters:
            bus = MemoryBus()  # a new process: offsets from 0 again
            archive = DeadLetterArchive(
                consumer=await bus.consumer(DEADLETTER, group="a"), store=store
            )
            await (await bus.producer()).send(DEADLETTER, encode_deadletter(one))
            assert await archive.drain_once(timeout_ms=500) == 1
            await bus.close()
        assert await store.deadletters(limit=10) == letters[::-1]
    finally:
        await store.close()


@pytest.fixture(params=["sqlite", "mongo"])
def open_store(request: pytest.FixtureRequest) -> Callable[[Path], Awaitable[Store]]:
    if request.param == "sqlite":
        return lambda tmp: SqliteStore.open(tmp / "s.db")
    server: MongoServer = request.getfixturevalue("mongo_server")
    return lambda tmp: MongoStore.open(server.uri, database=f"a{uuid.uuid4().hex[:12]}")


@pytest.fixture
async def store(
    open_store: Callable[[Path], Awaitable[Store]], tmp_path: Path
) -> AsyncIterator[Store]:
    opened = await open_store(tmp_path)
    yield opened
    await opened.close()


async def _poll(consumer: Consumer, want: int, *, seconds: float = 30) -> list[Record]:
    records: list[Record] = []
    async with asyncio.timeout(seconds):
        while len(records) < want:
            records += await consumer.poll(max_records=want - len(records), timeout_ms=200)
    return records


async def test_letters_archived_again_after_a_crash_before_the_commit_are_stored_once(
    kafka_broker: KafkaBroker, store: Store
) -> None:
    """A worker killed between the store write and the commit: the next one reads the same
    records from the last commit and writes them again."""
    suffix = uuid.uuid4().hex[:8]
    topics = {DEADLETTER: TopicSpec(f"dl-{suffix}", 2, 3_600_000)}
    bus = KafkaBus(KafkaOptions(bootstrap=kafka_broker.bootstrap, client_id=f"a-{suffix}",
                                topics=topics, session_timeout_ms=2_000))  # fmt: skip
    await bus.start(timeout_s=30)
    try:
        letters = [DeadLetter(f"crossed quote: {i}", f"vendor:v{i % 3}", 100 + i % 4, b"%d" % i)
                   for i in range(12)]  # fmt: skip
        producer = await bus.producer()
        await producer.send_many(DEADLETTER, [(b"%d" % i, encode_deadletter(d))
                                              for i, d in enumerate(letters)])  # fmt: skip
        await producer.flush()
        group = f"archive-{suffix}"
        crashed = DeadLetterArchive(consumer=await bus.consumer(DEADLETTER, group=group),
                                    store=store)  # fmt: skip
        assert crashed.consumer.durable
        assert await crashed.keep(await _poll(crashed.consumer, 7)) == 7  # written, no commit
        await crashed.consumer.close()

        archive = DeadLetterArchive(consumer=await bus.consumer(DEADLETTER, group=group),
                                    store=store)  # fmt: skip
        async with asyncio.timeout(30):
            while archive.archived < len(letters):
                await archive.drain_once(timeout_ms=200)
        assert archive.archived == len(letters)  # every record again, the first 7 included
        got = await store.deadletters(limit=100)
        assert sorted(got, key=lambda d: d.raw) == sorted(letters, key=lambda d: d.raw)
    finally:
        await bus.close()


async def test_a_batch_written_again_by_the_same_archive_is_stored_once(
    kafka_broker: KafkaBroker, store: Store
) -> None:
    """The write retried (``while_unavailable``) or the records polled again after a seek."""
    suffix = uuid.uuid4().hex[:8]
    topics = {DEADLETTER: TopicSpec(f"dl-{suffix}", 1, 3_600_000)}
    bus = KafkaBus(KafkaOptions(bootstrap=kafka_broker.bootstrap, client_id=f"a-{suffix}",
                                topics=topics))  # fmt: skip
    await bus.start(timeout_s=30)
    try:
        letters = [DeadLetter("unparsable: x", "vendor:v", 100, b"same bytes") for _ in range(3)]
        producer = await bus.producer()
        await producer.send_many(DEADLETTER, [(None, encode_deadletter(d)) for d in letters])
        await producer.flush()
        archive = DeadLetterArchive(consumer=await bus.consumer(DEADLETTER, group=suffix),
                                    store=store)  # fmt: skip
        records = await _poll(archive.consumer, 3)
        await archive.keep(records)
        archive.consumer.seek({0: records[0].offset})
        assert await archive.keep(await _poll(archive.consumer, 3)) == 3
        # Three letters alike, at three positions: three letters, each once.
        assert await store.deadletters(limit=100) == letters
    finally:
        await bus.close()


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
