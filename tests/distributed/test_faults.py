"""Faults in distributed mode: after each, the stored candles equal a clean run exactly.

Every test publishes the same kind of fixed tick list (some out of order, some late) to Kafka
while ``pricestream stream`` processes run, injects its fault mid-stream, and then waits until
MongoDB holds exactly the candles the pure windows produce from the same ticks in one go: no
tick lost, none counted twice.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from tests.distributed import Cluster, diff, make_ticks, reference
from tests.services.kafka import FAST_GROUPS, KafkaBroker
from tests.services.mongo import MongoServer

pytestmark = pytest.mark.timeout(300)


async def test_kill_9_of_the_stream_worker_at_random_points_loses_and_doubles_nothing(
    cluster: Cluster,
) -> None:
    ticks = make_ticks(16_000, seed=1)
    expected = reference(ticks)
    worker = cluster.start("stream", "worker-0")
    await cluster.wait_running(worker)
    publishing = asyncio.create_task(cluster.publish(ticks, chunk=100, pause_s=0.05))
    rng = random.Random(7)
    for round_ in range(3):
        await asyncio.sleep(rng.uniform(0.8, 2.0))
        await worker.kill()
        await asyncio.sleep(rng.uniform(0.1, 0.8))
        worker = cluster.start("stream", f"worker-{round_ + 1}")
        await cluster.wait_running(worker)
    await publishing
    got = await cluster.converge(expected)
    assert got == expected, diff(expected, got) + "\n" + cluster.logs()


async def test_a_second_worker_joining_mid_stream_takes_over_partitions_exactly(
    cluster: Cluster,
) -> None:
    ticks = make_ticks(12_000, seed=2)
    expected = reference(ticks)
    first = cluster.start("stream", "worker-a")
    await cluster.wait_running(first)
    publishing = asyncio.create_task(cluster.publish(ticks, chunk=100, pause_s=0.05))
    await asyncio.sleep(1.5)
    second = cluster.start("stream", "worker-b")
    await cluster.wait_running(second)
    await publishing
    got = await cluster.converge(expected)
    assert got == expected, diff(expected, got) + "\n" + cluster.logs()
    assert "handed over" in first.log.read_text(), (
        f"the first worker never gave partitions up\n{cluster.logs(first)}"
    )


async def test_the_broker_down_for_ten_seconds_mid_stream_loses_and_doubles_nothing(
    tmp_path: Path, mongo_server: MongoServer
) -> None:
    async with KafkaBroker(tmp_path / "kafka", extra_properties=FAST_GROUPS) as broker:
        cluster = Cluster(tmp_path, broker, mongo_server)
        try:
            ticks = make_ticks(8_000, seed=3)
            expected = reference(ticks)
            worker = cluster.start("stream", "worker")
            await cluster.wait_running(worker)
            await cluster.publish(ticks[:4_000], chunk=100, pause_s=0.05)
            await broker.stop()
            await asyncio.sleep(10)
            await broker.start()
            await cluster.publish(ticks[4_000:], chunk=100, pause_s=0.05)
            got = await cluster.converge(expected)
            assert got == expected, diff(expected, got) + "\n" + cluster.logs()
            assert worker.alive(), cluster.logs(worker)
        finally:
            await cluster.close()


async def test_mongodb_down_for_ten_seconds_the_worker_retries_and_catches_up(
    tmp_path: Path, kafka_broker: KafkaBroker
) -> None:
    async with MongoServer(tmp_path / "mongo") as mongo:
        cluster = Cluster(tmp_path, kafka_broker, mongo)
        try:
            ticks = make_ticks(8_000, seed=4)
            expected = reference(ticks)
            worker = cluster.start("stream", "worker")
            await cluster.wait_running(worker)
            publishing = asyncio.create_task(cluster.publish(ticks, chunk=100, pause_s=0.1))
            await asyncio.sleep(2)
            await mongo.stop()
            await asyncio.sleep(10)  # ticks keep arriving on Kafka meanwhile
            await mongo.start()
            await publishing
            got = await cluster.converge(expected)
            assert got == expected, diff(expected, got) + "\n" + cluster.logs()
            text = worker.log.read_text()
            assert "retrying" in text, f"the worker never saw the store down\n{text[-3000:]}"
            assert worker.alive(), cluster.logs(worker)
        finally:
            await cluster.close()
