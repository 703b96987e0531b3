"""The test servers themselves: a real Kafka broker and nx-27017, through the real clients.

Nothing here skips: without java, mvn (first run) or nx-27017 these tests fail and say what to
install.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tests.services.kafka import KafkaBroker
from tests.services.mongo import MongoServer


async def consume_all(bootstrap: str, topic: str, expected: int) -> list[tuple[bytes, bytes]]:
    """(key, value) of the first ``expected`` records of ``topic``, read from the start."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        records: list[tuple[bytes, bytes]] = []
        async with asyncio.timeout(20):
            while len(records) < expected:
                message = await consumer.getone()
                records.append((message.key, message.value))
        return records
    finally:
        await consumer.stop()


async def test_kafka_broker_round_trip_survives_restart(tmp_path: Path) -> None:
    broker = KafkaBroker(tmp_path / "kafka")
    await broker.start()
    try:
        assert broker.bootstrap == f"127.0.0.1:{broker.port}"
        await broker.create_topics("ticks", partitions=2)

        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        await producer.start()
        try:
            sent = await producer.send_and_wait("ticks", b"tick-1", key=b"EURUSD")
        finally:
            await producer.stop()
        assert sent.offset == 0
        assert await consume_all(broker.bootstrap, "ticks", 1) == [(b"EURUSD", b"tick-1")]

        port, log_dir = broker.port, broker.log_dir
        await broker.stop()
        assert not broker.running
        await broker.start()
        assert (broker.port, broker.log_dir) == (port, log_dir)
        assert await consume_all(broker.bootstrap, "ticks", 1) == [(b"EURUSD", b"tick-1")]
    finally:
        await broker.stop()
    assert "Kafka Server started" in broker.log_file.read_text()


async def test_kafka_broker_comes_back_after_kill(tmp_path: Path) -> None:
    async with KafkaBroker(tmp_path / "kafka") as broker:
        await broker.create_topics("updates")
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait("updates", b"before", key=b"k")
        finally:
            await producer.stop()
        await broker.kill()
        assert not broker.running
        await broker.start()
        assert await consume_all(broker.bootstrap, "updates", 1) == [(b"k", b"before")]


async def test_mongo_round_trip_survives_stop_and_kill(tmp_path: Path) -> None:
    server = MongoServer(tmp_path / "mongo")
    await server.start()
    try:
        at = dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC)
        client = server.client()
        try:
            candles = client.pricestream.candles
            await candles.insert_one({"symbol": "EURUSD", "t": at, "o": 1.1, "c": 1.2})
            doc = await candles.find_one({"symbol": "EURUSD"}, {"_id": 0})
            assert doc == {"symbol": "EURUSD", "t": at, "o": 1.1, "c": 1.2}
        finally:
            await client.close()

        port = server.port
        await server.stop()
        await server.start()
        assert server.port == port
        client = server.client()
        try:
            candles = client.pricestream.candles
            assert await candles.count_documents({"symbol": "EURUSD"}) == 1
            await candles.insert_one({"symbol": "GBPUSD", "t": at})
        finally:
            await client.close()

        await server.kill()
        await server.start()
        client = server.client()
        try:
            symbols = await client.pricestream.candles.distinct("symbol")
            assert sorted(symbols) == ["EURUSD", "GBPUSD"]
        finally:
            await client.close()
    finally:
        await server.stop()
