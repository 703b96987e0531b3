"""The in-process bus: groups share, fan-out sees all, a full queue makes the sender wait."""

from __future__ import annotations

import asyncio

from stream.bus.memory import MemoryBus


async def test_group_members_share_records_and_fanout_consumers_each_see_all() -> None:
    bus = MemoryBus()
    a = await bus.consumer("t", group="g")
    b = await bus.consumer("t", group="g")
    watcher = await bus.consumer("t", group=None)
    producer = await bus.producer()
    await producer.send_many("t", [(b"k", str(i).encode()) for i in range(10)])
    first = await a.poll(max_records=6, timeout_ms=100)
    second = await b.poll(max_records=100, timeout_ms=100)
    seen = await watcher.poll(max_records=100, timeout_ms=100)
    assert [r.value for r in first + second] == [str(i).encode() for i in range(10)]
    assert [r.offset for r in seen] == list(range(10))
    assert not a.durable


async def test_poll_waits_up_to_its_timeout_then_returns_nothing() -> None:
    bus = MemoryBus()
    consumer = await bus.consumer("t", group="g")
    assert await consumer.poll(max_records=10, timeout_ms=20) == []


async def test_poll_wakes_when_a_record_arrives() -> None:
    bus = MemoryBus()
    consumer = await bus.consumer("t", group="g")
    producer = await bus.producer()
    waiting = asyncio.create_task(consumer.poll(max_records=10, timeout_ms=5_000))
    await asyncio.sleep(0.01)
    await producer.send("t", b"x", key=b"XAU-USD")
    records = await asyncio.wait_for(waiting, 1)
    assert [(r.key, r.value) for r in records] == [(b"XAU-USD", b"x")]


async def test_a_full_queue_blocks_the_sender_until_the_consumer_reads() -> None:
    bus = MemoryBus(capacity=4)
    consumer = await bus.consumer("t", group="g")
    producer = await bus.producer()
    sending = asyncio.create_task(producer.send_many("t", [(None, b"x")] * 10))
    await asyncio.sleep(0.02)
    assert not sending.done()
    assert bus.backlog("t") == 4
    got = 0
    while got < 10:
        got += len(await consumer.poll(max_records=3, timeout_ms=1_000))
        assert bus.backlog("t") <= 4
    await asyncio.wait_for(sending, 1)


async def test_a_closed_fanout_consumer_no_longer_holds_the_sender_back() -> None:
    bus = MemoryBus(capacity=2)
    watcher = await bus.consumer("t", group=None)
    producer = await bus.producer()
    await watcher.close()
    await asyncio.wait_for(producer.send_many("t", [(None, b"x")] * 10), 1)
