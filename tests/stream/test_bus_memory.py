"""The in-process bus: what only it does (one queue per group, a bounded queue that makes the
sender wait). What every bus does is in ``test_bus_contract``."""

from __future__ import annotations

import asyncio

from stream.bus.memory import MemoryBus
from tests.stream.test_bus_contract import eventually


async def test_members_of_a_group_take_turns_at_its_one_queue_in_publish_order() -> None:
    bus = MemoryBus()
    a = await bus.consumer("t", group="g")
    b = await bus.consumer("t", group="g")
    producer = await bus.producer()
    await producer.send_many("t", [(b"k", str(i).encode()) for i in range(10)])
    first = await a.poll(max_records=6, timeout_ms=100)
    second = await b.poll(max_records=100, timeout_ms=100)
    assert [r.value for r in first + second] == [str(i).encode() for i in range(10)]
    assert [r.offset for r in first + second] == list(range(10))
    assert a.lag() == b.lag() == 0  # one queue: each member reports the group's backlog


async def test_poll_waits_up_to_its_timeout_then_returns_nothing() -> None:
    bus = MemoryBus()
    consumer = await bus.consumer("t", group="g")
    assert await consumer.poll(max_records=10, timeout_ms=20) == []


async def test_poll_wakes_when_a_record_arrives() -> None:
    bus = MemoryBus()
    consumer = await bus.consumer("t", group="g")
    producer = await bus.producer()
    waiting = asyncio.create_task(consumer.poll(max_records=10, timeout_ms=5_000))
    await asyncio.sleep(0)  # one turn of the loop: the poll runs until it waits for a record
    assert not waiting.done()
    await producer.send("t", b"x", key=b"XAU-USD")
    records = await asyncio.wait_for(waiting, 1)
    assert [(r.key, r.value) for r in records] == [(b"XAU-USD", b"x")]


async def test_a_full_queue_blocks_the_sender_until_the_consumer_reads() -> None:
    bus = MemoryBus(capacity=4)
    consumer = await bus.consumer("t", group="g")
    producer = await bus.producer()
    sending = asyncio.create_task(producer.send_many("t", [(None, b"x")] * 10))
    await eventually(lambda: bus.backlog("t") == 4, 1, what="a full queue")
    await asyncio.sleep(0)  # a turn of the loop in which the sender could go on: it does not
    assert not sending.done()
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


async def test_lag_counts_records_published_and_not_polled_yet() -> None:
    bus = MemoryBus(capacity=8)
    producer = await bus.producer()
    await producer.send_many("t", [(None, b"before")] * 3)  # before any consumer: never theirs
    member = await bus.consumer("t", group="g")
    watcher = await bus.consumer("t", group=None)
    assert member.lag() == watcher.lag() == 0
    await producer.send_many("t", [(None, str(i).encode()) for i in range(6)])
    assert len(await member.poll(max_records=4, timeout_ms=100)) == 4
    assert member.lag() == 2
    assert watcher.lag() == 6
    # A sender waiting on the full queue has published its records already: they count.
    sending = asyncio.create_task(producer.send_many("t", [(None, b"more")] * 10))
    await eventually(lambda: bus.backlog("t") == 8, 1, what="a full queue")
    await asyncio.sleep(0)
    assert not sending.done()
    assert watcher.lag() == 16
    assert member.lag() == 12
    read = 0
    for _ in range(20):  # the member reads too: its queue holds the sender up first
        read += len(await watcher.poll(max_records=5, timeout_ms=100))
        assert watcher.lag() == 16 - read
        await member.poll(max_records=5, timeout_ms=100)
    assert read == 16
    await asyncio.wait_for(sending, 1)
    assert member.lag() == 0
    await watcher.close()
    assert watcher.lag() is None
