"""The Kafka bus's producer: record placement by key, batched sends, and delivery checks.

- Every ``KafkaProducer`` sends through its bus's one idempotent client (``acks=all``), which
  keeps retrying a batch for ``delivery_timeout_ms`` while no broker takes it. Once a delivery
  has failed for good its sequence numbers are broken, so the bus stops that client and starts a
  fresh one (a new producer id) on the next send, and a caller can send the same records again.
- ``send_many`` builds one record batch per partition. A keyed record goes to the partition
  ``partition_map`` pins its key (a symbol) to, modulo the topic's partition count, on every
  topic; any other key is placed with the Java client's murmur2 hashing (``partition_of``). An
  external producer writing ``ticks`` must place records the same way, pinned symbols included,
  so that a symbol's ticks land on one partition whichever client wrote them. Change a pinned
  symbol's partition only with the pipeline drained (ingest stopped, the stream workers caught
  up): otherwise its ticks sit in two partitions, read in no fixed order. Even drained, a stream
  worker's stored position for a symbol is an offset in the partition it came from: in the new
  partition, the symbol's ticks at offsets up to that one are taken for replays and skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

from stream.contract import BusError

Pins = frozenset[tuple[bytes, int]]  # (key, partition number) pairs: hashable, for the cache


@lru_cache(maxsize=65_536)
def partition_of(key: bytes, partitions: int, pinned: Pins = frozenset()) -> int:
    """The partition of a keyed record: its pinned number modulo ``partitions``, else murmur2.

    murmur2 as the Java client's default partitioner places keys. Cached because symbols repeat
    and murmur2 is Python; a frozenset keeps its hash, so the pins cost the cache nothing.
    """
    for pinned_key, number in pinned:
        if pinned_key == key:
            return number % partitions
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


Delivery = tuple[AIOKafkaProducer, asyncio.Future[Any]]  # a batch, and who sent it


class Clients(Protocol):
    """What a producer needs of its bus: topic names, the pinned keys, and the shared client."""

    @property
    def pinned(self) -> Pins: ...

    def name(self, topic: str) -> str: ...

    async def client(self) -> AIOKafkaProducer: ...

    def current_client(self) -> AIOKafkaProducer | None: ...

    def delivery_failed(self, producers: set[AIOKafkaProducer]) -> None: ...


class KafkaProducer:
    """Sends return once the client holds the records; ``flush`` once the broker has them all.

    Every wrapper sends through the bus's current client. The client retries a batch for
    ``delivery_timeout_ms``; a delivery that still fails is raised by the next ``flush``, so a
    caller that commits after flushing never commits past a lost record, and the bus replaces
    the client that failed before the next send.
    """

    def __init__(self, bus: Clients) -> None:
        self._bus = bus
        self._partitions: dict[str, int] = {}
        self._deliveries: list[Delivery] = []
        self._prune_at = 4_096

    async def send(self, topic: str, value: bytes, *, key: bytes | None = None) -> None:
        name = self._bus.name(topic)
        producer = await self._bus.client()
        part = None
        if key is not None:
            part = partition_of(key, await self._partitions_of(producer, name), self._bus.pinned)
        try:
            self._track(producer, await producer.send(name, value, key=key, partition=part))
        except KafkaError as exc:
            raise BusError(f"send to {name}: {exc!r}") from exc

    def _track(self, producer: AIOKafkaProducer, delivery: asyncio.Future[Any]) -> None:
        deliveries = self._deliveries
        deliveries.append((producer, delivery))
        if len(deliveries) >= self._prune_at:  # keep the list short between flushes
            failed = [d for d in deliveries if d[1].done() and d[1].exception() is not None]
            self._deliveries = failed + [d for d in deliveries if not d[1].done()]
            self._prune_at = max(4_096, 2 * len(self._deliveries))

    async def send_many(self, topic: str, items: Sequence[tuple[bytes | None, bytes]]) -> None:
        if not items:
            return
        name = self._bus.name(topic)
        producer = await self._bus.client()
        partitions = await self._partitions_of(producer, name)
        pinned = self._bus.pinned
        by_partition: dict[int, list[tuple[bytes | None, bytes]]] = {}
        spread = 0
        for key, value in items:
            if key is None:
                part, spread = spread % partitions, spread + 1
            else:
                part = partition_of(key, partitions, pinned)
            group = by_partition.get(part)
            if group is None:
                by_partition[part] = [(key, value)]
            else:
                group.append((key, value))
        try:
            for part, group in by_partition.items():
                await self._send_partition(producer, name, part, group)
        except KafkaError as exc:
            raise BusError(f"send {len(items)} records to {name}: {exc!r}") from exc

    async def _send_partition(
        self,
        producer: AIOKafkaProducer,
        name: str,
        partition: int,
        items: list[tuple[bytes | None, bytes]],
    ) -> None:
        batch = producer.create_batch()
        for key, value in items:
            if batch.append(key=key, value=value, timestamp=None) is None:
                self._track(producer, await producer.send_batch(batch, name, partition=partition))
                batch = producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None) is None:
                    raise BusError(f"a record of {len(value)} bytes does not fit a batch of {name}")
        if batch.record_count():
            self._track(producer, await producer.send_batch(batch, name, partition=partition))

    async def _partitions_of(self, producer: AIOKafkaProducer, name: str) -> int:
        partitions = self._partitions.get(name)
        if partitions is None:
            try:
                found = await producer.partitions_for(name)
            except KafkaError as exc:
                raise BusError(f"partitions of {name}: {exc!r}") from exc
            partitions = self._partitions[name] = len(found)
        return partitions

    async def flush(self) -> None:
        deliveries, self._deliveries = self._deliveries, []
        self._prune_at = 4_096
        producer = self._bus.current_client()
        if producer is not None:
            try:
                await producer.flush()
            except KafkaError as exc:
                raise BusError(f"flush: {exc!r}") from exc
        outcomes = await asyncio.gather(*(d for _, d in deliveries), return_exceptions=True)
        failed = [(p, o) for (p, _), o in zip(deliveries, outcomes, strict=True)
                  if isinstance(o, BaseException)]  # fmt: skip
        if failed:
            self._bus.delivery_failed({p for p, _ in failed})
            first = failed[0][1]
            raise BusError(
                f"{len(failed)} of {len(outcomes)} batches were not delivered: {first!r}"
            ) from first
