"""The Kafka bus against a real broker: topics, key order, commits, fan-out and rebalances."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

import pytest
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.partitioner import DefaultPartitioner

from stream.bus.kafka import KafkaBus, KafkaOptions, TopicSpec, _partition_of
from stream.contract import BusError, Record, Tick, decode_tick, encode_tick
from tests.services.kafka import FAST_GROUPS, KafkaBroker

METALS = {"XAU-USD": 0, "XAG-USD": 1, "XPT-USD": 2, "XPD-USD": 3}  # the default [bus] map


def options(
    broker: KafkaBroker, *, partitions: int = 3, partition_map: Mapping[str, int] | None = None
) -> KafkaOptions:
    suffix = uuid.uuid4().hex[:8]
    topics = {"t": TopicSpec(f"t-{suffix}", partitions, 3_600_000)}
    return KafkaOptions(bootstrap=broker.bootstrap, client_id=f"test-{suffix}", topics=topics,
                        partition_map=dict(partition_map or {}))  # fmt: skip


@pytest.fixture
async def bus(kafka_broker: KafkaBroker) -> AsyncIterator[KafkaBus]:
    bus = KafkaBus(options(kafka_broker))
    await bus.start(timeout_s=30)
    yield bus
    await bus.close()


async def drain(consumer: object, want: int, *, seconds: float = 20) -> list[Record]:
    """Poll until ``want`` records arrived (bounded by ``seconds``)."""
    poll = consumer.poll  # type: ignore[attr-defined]
    out: list[Record] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while len(out) < want and loop.time() < deadline:
        out += await poll(max_records=1_000, timeout_ms=200)
    return out


async def test_start_creates_missing_topics_with_partitions_and_retention(
    kafka_broker: KafkaBroker,
) -> None:
    opts = options(kafka_broker, partitions=4)
    bus = KafkaBus(opts)
    await bus.start(timeout_s=30)
    await bus.start(timeout_s=30)  # again: the topic exists now, nothing to do
    await bus.close()
    admin = kafka_broker.admin()
    await admin.start()
    try:
        name = opts.topics["t"].name
        [described] = await admin.describe_topics([name])
        assert len(described["partitions"]) == 4
        [configs] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
        [resource] = configs.to_object()["resources"]
        entries = {e["config_names"]: e["config_value"] for e in resource["config_entries"]}
        assert entries["retention.ms"] == "3600000"
    finally:
        await admin.close()


async def test_a_key_stays_on_one_partition_in_order_as_the_java_client_places_it(
    bus: KafkaBus,
) -> None:
    consumer = await bus.consumer("t", group="g1")
    producer = await bus.producer()
    keys = [b"XAU-USD", b"XAG-USD", b"XPT-USD", b"XPD-USD"]
    items = [(keys[i % 4], f"{i}".encode()) for i in range(400)]
    await producer.send_many("t", items)
    await producer.flush()
    got = await drain(consumer, 400)
    assert len(got) == 400
    for key in keys:
        mine = [r for r in got if r.key == key]
        assert len({r.partition for r in mine}) == 1
        assert [int(r.value) for r in mine] == [int(v) for k, v in items if k == key]
        expected = DefaultPartitioner()(key, [0, 1, 2], [0, 1, 2])
        assert mine[0].partition == expected
    assert consumer.durable


PINS = frozenset((s.encode(), p) for s, p in METALS.items())


@pytest.mark.parametrize(
    ("key", "partitions", "pinned", "expected"),
    [
        # Pinned: the map's number modulo the partition count.
        (b"XAU-USD", 6, PINS, 0),
        (b"XAG-USD", 6, PINS, 1),
        (b"XPT-USD", 6, PINS, 2),
        (b"XPD-USD", 6, PINS, 3),
        (b"XPD-USD", 3, PINS, 0),
        (b"XPD-USD", 1, PINS, 0),
        (b"XAU-USD", 6, frozenset({(b"XAU-USD", 13)}), 1),
        # Not pinned: murmur2, as the Java client places them; the metals on 1, 3, 3 and 3.
        (b"XAU-USD", 6, frozenset(), 3),
        (b"XAG-USD", 6, frozenset(), 1),
        (b"XPT-USD", 6, frozenset(), 3),
        (b"XPD-USD", 6, frozenset(), 3),
        (b"XAU-EUR", 6, PINS, DefaultPartitioner()(b"XAU-EUR", list(range(6)), list(range(6)))),
        (b"XAU-USD ", 6, PINS, DefaultPartitioner()(b"XAU-USD ", list(range(6)), list(range(6)))),
    ],
)
def test_a_pinned_symbol_goes_to_its_partition_and_any_other_key_where_murmur2_puts_it(
    key: bytes, partitions: int, pinned: frozenset[tuple[bytes, int]], expected: int
) -> None:
    assert _partition_of(key, partitions, pinned) == expected


async def test_two_members_of_a_group_each_own_two_of_the_four_pinned_metals(
    kafka_broker: KafkaBroker,
) -> None:
    bus = KafkaBus(options(kafka_broker, partitions=6, partition_map=METALS))
    await bus.start(timeout_s=30)
    try:
        members = [await bus.consumer("t", group="workers") for _ in range(2)]
        # Each member knows its lag once it holds partitions and has polled them: with two
        # members, both hold some only once the group has shared them out. Joining takes ~5 s.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while any(m.lag() is None for m in members) and loop.time() < deadline:
            for member in members:
                assert await member.poll(max_records=100, timeout_ms=100) == []
        assert all(m.lag() is not None for m in members), "the group did not settle in 30 s"

        producer = await bus.producer()
        ticks = [Tick(symbol, "test", 1.0, 1.1, 1.05, 1_000 + i, 1_000 + i)
                 for i in range(11) for symbol in METALS]  # fmt: skip
        await producer.send_many("t", [(t.symbol.encode(), encode_tick(t)) for t in ticks[:40]])
        for tick in ticks[40:]:  # one record at a time follows the same map
            await producer.send("t", encode_tick(tick), key=tick.symbol.encode())
        await producer.flush()
        reads: list[list[Record]] = [[], []]
        deadline = loop.time() + 20
        while sum(map(len, reads)) < 44 and loop.time() < deadline:
            for member, got in zip(members, reads, strict=True):
                got += await member.poll(max_records=100, timeout_ms=100)
    finally:
        await bus.close()
    assert sum(map(len, reads)) == 44
    owned = [{decode_tick(r.value).symbol for r in got} for got in reads]
    assert [len(symbols) for symbols in owned] == [2, 2]
    assert owned[0] | owned[1] == set(METALS)
    for got in reads:
        for record in got:
            assert record.partition == METALS[decode_tick(record.value).symbol]


async def test_a_group_resumes_after_its_last_commit_and_redelivers_the_rest(
    bus: KafkaBus,
) -> None:
    producer = await bus.producer()
    await producer.send_many("t", [(b"k", str(i).encode()) for i in range(10)])
    await producer.flush()
    first = await bus.consumer("t", group="resume")
    got = await drain(first, 10)
    assert [int(r.value) for r in got] == list(range(10))
    await first.commit()
    await producer.send_many("t", [(b"k", str(i).encode()) for i in range(10, 15)])
    await producer.flush()
    assert len(await drain(first, 5)) == 5  # read, never committed
    await first.close()
    second = await bus.consumer("t", group="resume")
    again = await drain(second, 5)
    assert [int(r.value) for r in again] == list(range(10, 15))


async def test_fanout_consumers_each_see_every_record_published_after_they_start(
    bus: KafkaBus,
) -> None:
    producer = await bus.producer()
    await producer.send_many("t", [(b"old", b"before")])
    await producer.flush()
    a = await bus.consumer("t", group=None)
    b = await bus.consumer("t", group=None)
    assert not a.durable
    await asyncio.sleep(1.0)  # both have their partitions' end offsets
    await producer.send_many("t", [(f"k{i}".encode(), str(i).encode()) for i in range(30)])
    await producer.flush()
    for consumer in (a, b):
        got = await drain(consumer, 30)
        assert sorted(int(r.value) for r in got) == list(range(30))


async def test_a_member_flushes_in_on_revoke_before_a_new_member_reads_its_partitions(
    bus: KafkaBus,
) -> None:
    revoked: list[frozenset[int]] = []
    holder: list[object] = []

    async def on_revoke(parts: frozenset[int]) -> None:
        revoked.append(parts)
        await holder[0].commit()  # type: ignore[attr-defined]

    first = await bus.consumer("t", group="rebal", on_revoke=on_revoke)
    holder.append(first)
    producer = await bus.producer()
    await producer.send_many("t", [(f"k{i}".encode(), str(i).encode()) for i in range(60)])
    await producer.flush()
    assert len(await drain(first, 60)) == 60  # all three partitions, not committed yet
    second = await bus.consumer("t", group="rebal")
    # Keep the first member polling so it takes part in the rebalance.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    late: list[Record] = []
    while not revoked and loop.time() < deadline:
        await first.poll(max_records=100, timeout_ms=100)
        late += await second.poll(max_records=100, timeout_ms=100)
    assert revoked == [frozenset({0, 1, 2})]
    for _ in range(20):  # the second member got partitions, and nothing to re-read in them
        late += await second.poll(max_records=100, timeout_ms=100)
        late += await first.poll(max_records=100, timeout_ms=100)
    assert late == []


async def read_until(consumer: object, done: Callable[[list[Record]], bool]) -> list[Record]:
    """Poll a few records at a time until ``done(read)`` (bounded: 20 s)."""
    poll = consumer.poll  # type: ignore[attr-defined]
    out: list[Record] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while not done(out) and loop.time() < deadline:
        out += await poll(max_records=7, timeout_ms=200)
    return out


async def test_lag_is_what_remains_between_the_reader_and_the_end_of_its_partitions(
    bus: KafkaBus,
) -> None:
    producer = await bus.producer()
    await producer.send_many("t", [(f"k{i}".encode(), str(i).encode()) for i in range(60)])
    await producer.flush()
    consumer = await bus.consumer("t", group="lag")
    # Known once a fetch response has come back for every partition held.
    read = await read_until(consumer, lambda got: len(got) > 0 and consumer.lag() is not None)
    assert 0 < len(read) < 60
    assert consumer.lag() == 60 - len(read)
    read += await drain(consumer, 60 - len(read))
    assert len(read) == 60
    assert consumer.lag() == 0
    await consumer.commit()
    assert consumer.lag() == 0  # a commit does not change what waits to be read

    await producer.send_many("t", [(f"k{i}".encode(), str(i).encode()) for i in range(15)])
    await producer.flush()
    # The next fetch responses carry the new high-water marks: the lag is what is left unread.
    more = await read_until(consumer, lambda got: consumer.lag() == 15 - len(got))
    assert consumer.lag() == 15 - len(more)
    assert len(more) < 15 or consumer.lag() == 0


async def test_a_fanout_consumer_lags_only_by_what_was_published_after_it_started(
    bus: KafkaBus,
) -> None:
    producer = await bus.producer()
    await producer.send_many("t", [(b"old", b"before")] * 5)
    await producer.flush()
    watcher = await bus.consumer("t", group=None)
    await read_until(watcher, lambda _: watcher.lag() is not None)
    assert watcher.lag() == 0  # it reads from the end: the 5 older records are not its lag
    await producer.send_many("t", [(f"k{i}".encode(), str(i).encode()) for i in range(30)])
    await producer.flush()
    read = await read_until(watcher, lambda got: len(got) >= 10 and watcher.lag() == 30 - len(got))
    assert len(read) >= 10
    assert watcher.lag() == 30 - len(read)


async def test_a_batch_sent_while_the_broker_is_down_is_delivered_once_it_is_back(
    tmp_path: Path,
) -> None:
    async with KafkaBroker(tmp_path / "kafka", extra_properties=FAST_GROUPS) as broker:
        bus = KafkaBus(dataclasses.replace(options(broker), delivery_timeout_ms=2_000))
        await bus.start(timeout_s=30)
        try:
            producer = await bus.producer()
            await producer.send_many("t", [(b"XAU-USD", b"before")])
            await producer.flush()
            await broker.stop()
            await producer.send_many("t", [(b"XAU-USD", b"during")])
            # Longer down than the delivery timeout: the partition's leader is still known, so
            # the idempotent producer keeps retrying the batch instead of expiring it.
            flushed = asyncio.ensure_future(producer.flush())
            await asyncio.wait({flushed}, timeout=3.0)
            assert not flushed.done()
            await broker.start()
            async with asyncio.timeout(30):
                await flushed
            consumer = await bus.consumer("t", group="check")
            got = await read_until(consumer, lambda got: len(got) >= 2 and consumer.lag() == 0)
            assert consumer.lag() == 0  # read to the end of the partition: nothing more there
            assert [r.value for r in got] == [b"before", b"during"]
        finally:
            await bus.close()


async def test_after_a_delivery_fails_for_good_the_same_records_go_through_a_fresh_producer(
    kafka_broker: KafkaBroker, caplog: pytest.LogCaptureFixture
) -> None:
    bus = KafkaBus(dataclasses.replace(options(kafka_broker), delivery_timeout_ms=2_000))
    await bus.start(timeout_s=30)
    try:
        producer = await bus.producer()
        other = await bus.producer()  # another wrapper of the same bus
        await producer.send_many("t", [(b"XAU-USD", b"before")])
        await producer.flush()
        first = bus.current_client()
        # With its topic gone the partition has no leader: the batch expires after 2 s.
        admin = kafka_broker.admin()
        await admin.start()
        try:
            await admin.delete_topics([bus.name("t")])
        finally:
            await admin.close()
        async with asyncio.timeout(30):
            await producer.send_many("t", [(b"XAU-USD", b"again")])
            with pytest.raises(BusError, match="1 of 1 batches were not delivered"):
                await producer.flush()
        await bus.start(timeout_s=30)  # the topic again, empty
        with caplog.at_level(logging.WARNING, logger="stream.bus.kafka"):
            await other.send_many("t", [(b"XAU-USD", b"again")])  # the caller retries
            await other.flush()
            await producer.send("t", b"and more", key=b"XAU-USD")
            await producer.flush()
        assert bus.current_client() is not first
        assert caplog.text.count("starting a fresh one") == 1
        consumer = await bus.consumer("t", group="check")
        got = await read_until(consumer, lambda got: len(got) >= 2 and consumer.lag() == 0)
        assert consumer.lag() == 0  # read to the end of the partition: nothing more there
        assert [r.value for r in got] == [b"again", b"and more"]
    finally:
        await bus.close()
