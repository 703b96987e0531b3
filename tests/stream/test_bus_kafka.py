"""The Kafka bus against a real broker: what only Kafka does (topics, the partition map,
broker restarts, a fresh producer). What every bus does is in ``test_bus_contract``."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.partitioner import DefaultPartitioner

from stream.bus.kafka import KafkaBus, KafkaOptions
from stream.bus.kafka_producer import partition_of
from stream.contract import BusError, Record, Tick, decode_tick, encode_tick
from tests.services.kafka import FAST_GROUPS, KafkaBroker
from tests.stream.test_bus_contract import eventually, kafka_options, read_until, ready

METALS = {"XAU-USD": 0, "XAG-USD": 1, "XPT-USD": 2, "XPD-USD": 3}  # the default [bus] map


def options(
    broker: KafkaBroker, *, partitions: int = 3, partition_map: Mapping[str, int] | None = None
) -> KafkaOptions:
    return kafka_options(broker, partitions=partitions, partition_map=dict(partition_map or {}))


@pytest.fixture
async def bus(kafka_broker: KafkaBroker) -> AsyncIterator[KafkaBus]:
    bus = KafkaBus(options(kafka_broker))
    await bus.start(timeout_s=30)
    yield bus
    await bus.close()


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
    consumer = await bus.consumer("t", group=None)  # no group to join: a fan-out consumer
    await ready(consumer)
    producer = await bus.producer()
    keys = [b"XAU-USD", b"XAG-USD", b"XPT-USD", b"XPD-USD"]
    items = [(keys[i % 4], f"{i}".encode()) for i in range(400)]
    await producer.send_many("t", items)
    await producer.flush()
    got = await read_until(consumer, lambda got: len(got) >= 400)
    assert len(got) == 400
    for key in keys:
        mine = [r for r in got if r.key == key]
        assert len({r.partition for r in mine}) == 1
        assert [int(r.value) for r in mine] == [int(v) for k, v in items if k == key]
        expected = DefaultPartitioner()(key, [0, 1, 2], [0, 1, 2])
        assert mine[0].partition == expected


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
    assert partition_of(key, partitions, pinned) == expected


async def test_two_members_of_a_group_each_own_two_of_the_four_pinned_metals(
    kafka_broker: KafkaBroker,
) -> None:
    bus = KafkaBus(options(kafka_broker, partitions=6, partition_map=METALS))
    await bus.start(timeout_s=30)
    try:
        members = [await bus.consumer("t", group="workers") for _ in range(2)]
        # Each member knows its lag once it holds partitions and has polled them: with two
        # members, both hold some only once the group has shared them out. Joining takes ~5 s.
        await ready(*members)

        producer = await bus.producer()
        ticks = [Tick(symbol, "test", 1.0, 1.1, 1.05, 1_000 + i, 1_000 + i)
                 for i in range(11) for symbol in METALS]  # fmt: skip
        await producer.send_many("t", [(t.symbol.encode(), encode_tick(t)) for t in ticks[:40]])
        for tick in ticks[40:]:  # one record at a time follows the same map
            await producer.send("t", encode_tick(tick), key=tick.symbol.encode())
        await producer.flush()
        reads: list[list[Record]] = [[], []]

        async def all_read() -> bool:
            for member, got in zip(members, reads, strict=True):
                got += await member.poll(max_records=100, timeout_ms=100)
            return sum(map(len, reads)) >= 44

        await eventually(all_read, what="reading the 44 ticks")
    finally:
        await bus.close()
    assert sum(map(len, reads)) == 44
    owned = [{decode_tick(r.value).symbol for r in got} for got in reads]
    assert [len(symbols) for symbols in owned] == [2, 2]
    assert owned[0] | owned[1] == set(METALS)
    for got in reads:
        for record in got:
            assert record.partition == METALS[decode_tick(record.value).symbol]


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
            # the idempotent producer keeps retrying the batch instead of expiring it. (A span
            # of time is the point here, not a synchronisation: nothing to wait for instead.)
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
