"""The in-process bus: the embedded default.

Each topic keeps one bounded queue per consumer group (the group's consumers share it, as
Kafka's group members share partitions) and one per group-less consumer (each sees every record
published after it started). A full queue makes ``send`` wait: a slow consumer applies
backpressure, and memory stays bounded by ``capacity`` records per queue.

Positions are not durable: after a restart the bus is empty and starts again from offset 0.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from itertools import count, repeat

from stream.contract import Positions, Record, Revoked

log = logging.getLogger(__name__)


class _Queue:
    """A bounded FIFO of records with batch put and batch get."""

    def __init__(self, capacity: int, *, start: int) -> None:
        self.capacity = capacity
        self.items: deque[Record] = deque()
        self.start = start  # the topic's next offset when the queue was made: it gets the rest
        self.taken = 0  # records handed out by ``get_many``
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self.closed = False

    def close(self) -> None:
        self.closed = True
        self._writable.set()

    async def put_many(self, records: Sequence[Record]) -> None:
        i = 0
        while i < len(records):
            if self.closed:
                return
            room = self.capacity - len(self.items)
            if room <= 0:
                self._writable.clear()
                await self._writable.wait()
                continue
            self.items.extend(records[i : i + room])
            i += room
            self._readable.set()

    async def get_many(self, max_records: int, timeout_s: float) -> list[Record]:
        if not self.items:
            self._readable.clear()
            try:
                async with asyncio.timeout(timeout_s):
                    while not self.items:
                        await self._readable.wait()
                        self._readable.clear()
            except TimeoutError:
                return []
        items = self.items
        n = min(max_records, len(items))
        out = [items.popleft() for _ in range(n)]
        self.taken += n
        if items:
            self._readable.set()
        self._writable.set()
        return out


class _Topic:
    def __init__(self, name: str) -> None:
        self.name = name
        self.next_offset = 0
        self.groups: dict[str, _Queue] = {}
        self.members: dict[str, int] = {}
        self.fanout: set[_Queue] = set()

    def queues(self) -> list[_Queue]:
        return [*self.groups.values(), *self.fanout]


class MemoryProducer:
    def __init__(self, bus: MemoryBus) -> None:
        self._bus = bus

    async def send(self, topic: str, value: bytes, *, key: bytes | None = None) -> None:
        await self.send_many(topic, [(key, value)])

    async def send_many(self, topic: str, items: Sequence[tuple[bytes | None, bytes]]) -> None:
        if not items:
            return
        t = self._bus.topic(topic)
        first = t.next_offset
        t.next_offset += len(items)
        # tuple.__new__ through map builds the records in C; Record(...) is a Python-level call.
        keys, values = zip(*items, strict=True)
        fields = zip(repeat(topic), repeat(0), count(first), keys, values, strict=False)
        records: list[Record] = list(map(tuple.__new__, repeat(Record), fields))
        for queue in t.queues():
            await queue.put_many(records)

    async def flush(self) -> None:
        return None


class MemoryConsumer:
    durable = False

    def __init__(self, bus: MemoryBus, topic: _Topic, queue: _Queue, group: str | None) -> None:
        self._bus = bus
        self._topic = topic
        self._queue = queue
        self._group = group
        self._closed = False

    async def poll(self, *, max_records: int, timeout_ms: int) -> list[Record]:
        if self._closed:
            raise RuntimeError("poll on a closed consumer")
        return await self._queue.get_many(max_records, timeout_ms / 1000)

    async def commit(self, positions: Positions | None = None) -> None:
        return None

    def seek(self, positions: Positions) -> None:
        """Never needed: one queue is never split, so no poll is ever overtaken by a revoke."""
        return None

    def end(self, partition: int) -> int | None:
        """The topic's next offset: one queue stands for the whole topic, as partition 0."""
        return None if self._closed else self._topic.next_offset

    def lag(self) -> int | None:
        """Records published since this consumer's queue was made and not polled yet, counting
        those a sender still waits to put in the full queue. The members of a group share one
        queue, as if it were one partition, so each reports the group's backlog. None once
        closed."""
        if self._closed:
            return None
        return self._topic.next_offset - self._queue.start - self._queue.taken

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._group is None:
            self._topic.fanout.discard(self._queue)
            self._queue.close()
            return
        self._topic.members[self._group] -= 1


class MemoryBus:
    """An in-process bus; ``capacity`` bounds every queue, in records."""

    def __init__(self, *, capacity: int = 65_536) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._topics: dict[str, _Topic] = {}

    def topic(self, name: str) -> _Topic:
        t = self._topics.get(name)
        if t is None:
            t = self._topics[name] = _Topic(name)
        return t

    async def producer(self) -> MemoryProducer:
        return MemoryProducer(self)

    async def consumer(
        self, topic: str, *, group: str | None, on_revoke: Revoked | None = None
    ) -> MemoryConsumer:
        """``on_revoke`` is accepted for the port and never called: one queue is never split."""
        t = self.topic(topic)
        if group is None:
            queue = _Queue(self.capacity, start=t.next_offset)
            t.fanout.add(queue)
        else:
            shared = t.groups.get(group)
            if shared is None:
                shared = t.groups[group] = _Queue(self.capacity, start=t.next_offset)
            queue = shared
            t.members[group] = t.members.get(group, 0) + 1
        return MemoryConsumer(self, t, queue, group)

    def backlog(self, topic: str) -> int:
        """Records waiting in the fullest queue of ``topic``."""
        return max((len(q.items) for q in self.topic(topic).queues()), default=0)

    async def close(self) -> None:
        for t in self._topics.values():
            for q in t.queues():
                q.close()
