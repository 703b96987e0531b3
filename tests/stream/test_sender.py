"""The ordered, bounded outgoing buffer on the in-process bus (its outages: the distributed
end-to-end test, on a real broker that is killed)."""

from __future__ import annotations

import asyncio

import pytest

from stream.bus.memory import MemoryBus
from stream.sender import Sender


async def test_records_arrive_once_in_order_and_drain_waits_for_all_of_them() -> None:
    bus = MemoryBus()
    a = await bus.consumer("a", group="g")
    b = await bus.consumer("b", group="g")
    sender = Sender(await bus.producer())
    task = asyncio.create_task(sender.run())
    try:
        for i in range(0, 3_000, 7):
            await sender.put([("a", None, str(n).encode()) for n in range(i, min(i + 7, 3_000))])
            await sender.put([("b", b"k", str(i).encode())])
        await sender.drain()
        assert sender.stats.queued == 0
        got_a = [r.value for r in await a.poll(max_records=10_000, timeout_ms=10)]
        got_b = [r.value for r in await b.poll(max_records=10_000, timeout_ms=10)]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert got_a == [str(n).encode() for n in range(3_000)]
    assert got_b == [str(i).encode() for i in range(0, 3_000, 7)]
    assert sender.stats.delivered == 3_000 + len(got_b)


async def test_a_full_buffer_makes_the_producer_of_records_wait_instead_of_growing() -> None:
    bus = MemoryBus()
    sender = Sender(await bus.producer(), max_queued=10)
    await sender.put([("t", None, b"x")] * 10)  # nothing sends yet: the buffer is full
    blocked = asyncio.create_task(sender.put([("t", None, b"y")]))
    await asyncio.sleep(0.05)
    assert not blocked.done()
    assert sender.stats.queued == 10
    task = asyncio.create_task(sender.run())
    try:
        async with asyncio.timeout(5):
            await blocked
            await sender.drain()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert sender.stats.delivered == 11


def test_a_buffer_without_room_is_refused() -> None:
    with pytest.raises(ValueError, match="max_queued"):
        Sender(None, max_queued=0)  # type: ignore[arg-type]
