"""The Apache Kafka bus (aiokafka): the distributed backend of the ``Bus`` port.

- Topics keep their logical names in the code (``ticks``, ``updates``, ``deadletter``); the bus
  maps them to configured Kafka names, partition counts and retention, and creates the missing
  ones at ``start``. An existing topic is used as it is (a warning names any difference).
- One idempotent producer per bus, ``acks=all``, that keeps retrying a batch for
  ``delivery_timeout_ms`` while no broker takes it. Once a delivery has failed for good its
  sequence numbers are broken, so the bus stops it and starts a fresh one (a new producer id)
  on the next send, and a caller can send the same records again.
- ``send_many`` builds one record batch per partition. A keyed record goes to the partition
  ``partition_map`` pins its key (a symbol) to, modulo the topic's partition count, on every
  topic; any other key is placed with the Java client's murmur2 hashing. An external producer
  writing ``ticks`` must place records the same way, pinned symbols included, so that a
  symbol's ticks land on one partition whichever client wrote them. Change a pinned symbol's
  partition only with the pipeline drained (ingest stopped, the stream workers caught up):
  otherwise its ticks sit in two partitions, read in no fixed order. Even drained, a stream
  worker's stored position for a symbol is an offset in the partition it came from: in the new
  partition, the symbol's ticks at offsets up to that one are taken for replays and skipped.
- A group consumer commits only what it was told to (``commit`` after the owner's store write)
  and runs the owner's ``on_revoke`` before its partitions move, so the next owner starts from
  flushed state. A group-less consumer reads every partition from the end: fan-out.

Errors from the client are raised as ``BusError`` with the operation named, except while the
broker is merely unreachable: then sends wait (bounded by ``delivery_timeout_ms``) and polls
return nothing until it is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaError,
    TopicAlreadyExistsError,
    for_code,
)
from aiokafka.partitioner import murmur2

from stream.contract import DEADLETTER, TICKS, UPDATES, BusError, Positions, Record, Revoked

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """How one logical topic looks in Kafka."""

    name: str
    partitions: int
    retention_ms: int | None = None  # None: the broker's default

    def new_topic(self, replication_factor: int) -> NewTopic:
        configs = {} if self.retention_ms is None else {"retention.ms": str(self.retention_ms)}
        return NewTopic(self.name, self.partitions, replication_factor, topic_configs=configs)


def default_topics() -> dict[str, TopicSpec]:
    return {
        TICKS: TopicSpec(TICKS, 6, 7 * 86_400_000),
        UPDATES: TopicSpec(UPDATES, 3, 86_400_000),
        DEADLETTER: TopicSpec(DEADLETTER, 1, 30 * 86_400_000),
    }


@dataclass(frozen=True, slots=True)
class KafkaOptions:
    bootstrap: str = "127.0.0.1:9092"
    client_id: str = "pricestream"
    topics: Mapping[str, TopicSpec] = field(default_factory=default_topics)
    replication_factor: int = 1
    linger_ms: int = 5
    max_batch_bytes: int = 512 * 1024
    request_timeout_ms: int = 30_000  # consumers and the admin client
    #: how long the producer keeps retrying a batch while no broker takes it, and how long a
    #: send waits for room: aiokafka's producer ``request_timeout_ms`` (its requests' timeout too)
    delivery_timeout_ms: int = 300_000
    session_timeout_ms: int = 10_000
    fetch_max_bytes: int = 16 * 1024 * 1024
    #: symbol -> partition number (taken modulo the topic's partitions); other keys: murmur2
    partition_map: Mapping[str, int] = field(default_factory=dict)


Pins = frozenset[tuple[bytes, int]]  # (key, partition number) pairs: hashable, for the cache


@lru_cache(maxsize=65_536)
def _partition_of(key: bytes, partitions: int, pinned: Pins = frozenset()) -> int:
    """The partition of a keyed record: its pinned number modulo ``partitions``, else murmur2.

    murmur2 as the Java client's default partitioner places keys. Cached because symbols repeat
    and murmur2 is Python; a frozenset keeps its hash, so the pins cost the cache nothing.
    """
    for pinned_key, number in pinned:
        if pinned_key == key:
            return number % partitions
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


Delivery = tuple[AIOKafkaProducer, asyncio.Future[Any]]  # a batch, and who sent it


class KafkaProducer:
    """Sends return once the client holds the records; ``flush`` once the broker has them all.

    Every wrapper sends through the bus's current client. The client retries a batch for
    ``delivery_timeout_ms``; a delivery that still fails is raised by the next ``flush``, so a
    caller that commits after flushing never commits past a lost record, and the bus replaces
    the client that failed before the next send.
    """

    def __init__(self, bus: KafkaBus) -> None:
        self._bus = bus
        self._partitions: dict[str, int] = {}
        self._deliveries: list[Delivery] = []
        self._prune_at = 4_096

    async def send(self, topic: str, value: bytes, *, key: bytes | None = None) -> None:
        name = self._bus.name(topic)
        producer = await self._bus.client()
        part = None
        if key is not None:
            part = _partition_of(key, await self._partitions_of(producer, name), self._bus.pinned)
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
                part = _partition_of(key, partitions, pinned)
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


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, consumer: KafkaConsumer, on_revoke: Revoked | None) -> None:
        self._consumer = consumer
        self._on_revoke = on_revoke

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        parts = frozenset(tp.partition for tp in revoked)
        if not parts:
            return
        log.info("partitions %s of %s revoked", sorted(parts), self._consumer.topic)
        try:
            if self._on_revoke is not None:
                await self._on_revoke(parts)
        finally:
            self._consumer.forget(parts)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        parts = sorted(tp.partition for tp in assigned)
        log.info("partitions %s of %s assigned", parts, self._consumer.topic)


class KafkaConsumer:
    def __init__(self, topic: str, name: str, consumer: AIOKafkaConsumer, group: str | None):
        self.topic = topic
        self.name = name
        self.durable = group is not None
        self._consumer = consumer
        self._group = group
        self._next: dict[TopicPartition, int] = {}  # the next offset after what poll returned
        # Where the client started reading partitions that poll has returned nothing from yet.
        self._start: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._closed = False

    async def poll(self, *, max_records: int, timeout_ms: int) -> list[Record]:
        if not self._consumer.assignment():
            # In a rebalance the client's getmany waits for the new assignment, however long
            # that takes; keep the caller's timeout instead.
            await asyncio.sleep(timeout_ms / 1000)
            return []
        try:
            batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        except KafkaError as exc:
            raise BusError(f"poll {self.name}: {exc!r}") from exc
        out: list[Record] = []
        topic = self.topic
        for tp, messages in batches.items():
            if not messages:
                continue
            part = tp.partition
            out.extend(Record(topic, part, m.offset, m.key, m.value) for m in messages)
            self._next[tp] = messages[-1].offset + 1
        await self._note_starts()
        return out

    async def _note_starts(self) -> None:
        """Remember where the client reads partitions that poll has returned nothing from."""
        client = self._consumer
        for tp in client.assignment():
            if tp in self._next or tp in self._start or client.highwater(tp) is None:
                continue
            # A fetch response came for it, so the client has a valid position: no wait here,
            # but a reset between then and now would make ``position`` wait for the next one.
            try:
                async with asyncio.timeout(0.1):
                    self._start[tp] = await client.position(tp)
            except (TimeoutError, IllegalStateError):
                continue  # the next poll tries again

    def end(self, partition: int) -> int | None:
        """The high-water mark the client learnt from its last fetch of ``partition``."""
        end: int | None = self._consumer.highwater(TopicPartition(self.name, partition))
        return end

    def lag(self) -> int | None:
        """The sum over the held partitions of (high-water mark - next offset to read).

        The high-water mark is the one the client learnt from its last fetch response for the
        partition (``AIOKafkaConsumer.highwater``). The client holds None there until its first
        fetch response for the partition after an assignment (checked with aiokafka 0.14: right
        after ``start`` every held partition's mark is None; the background fetcher fills them
        in within milliseconds, without a ``poll``). ``lag`` is None until then and until the
        first ``poll`` after it (which notes where reading starts), and with no partitions held
        (before joining the group, during a rebalance, or a member with nothing to read). The
        client fetches ahead of ``poll``, so the mark is fresh while the consumer keeps up;
        while its prefetch buffer for a partition is full it stops fetching there, and the lag
        shown may then trail the real one by what arrived since the last fetch.
        """
        client = self._consumer
        held = client.assignment()
        if not held:
            return None
        total = 0
        for tp in held:
            end = client.highwater(tp)
            at = self._next.get(tp, self._start.get(tp))
            if end is None or at is None:
                return None
            total += max(0, end - at)
        return total

    async def commit(self, positions: Positions | None = None) -> None:
        if self._group is None:
            return
        if positions is None:
            wanted = dict(self._next)
        else:
            wanted = {TopicPartition(self.name, p): o for p, o in positions.items()}
        held = self._consumer.assignment()
        # A partition the group took away without a revoke (the listener failed, or the member
        # was dropped) is forgotten here: committing it would fail the whole commit.
        lost = frozenset(tp.partition for tp in self._next if tp not in held)
        if lost:
            self.forget(lost)
        offsets = {tp: o for tp, o in wanted.items()
                   if tp in self._next and self._committed.get(tp, -1) < o}  # fmt: skip
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
            self._committed.update(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # The group moved these partitions on; their next owner replays from the last commit
            # and recognises what this worker already stored by the positions in its states.
            log.warning("commit of %s skipped after a rebalance: %s", self.name, exc)
        except KafkaError as exc:
            raise BusError(f"commit {self.name}: {exc!r}") from exc

    def seek(self, positions: Positions) -> None:
        held = self._consumer.assignment()
        for part, offset in positions.items():
            tp = TopicPartition(self.name, part)
            if tp in held:
                self._consumer.seek(tp, offset)
                self._next[tp] = offset

    def forget(self, partitions: frozenset[int]) -> None:
        self._next = {tp: o for tp, o in self._next.items() if tp.partition not in partitions}
        self._start = {tp: o for tp, o in self._start.items() if tp.partition not in partitions}
        self._committed = {tp: o for tp, o in self._committed.items() if tp in self._next}

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._consumer.stop()


class KafkaBus:
    """The bus on an Apache Kafka cluster; call ``start`` before use and ``close`` after."""

    def __init__(self, options: KafkaOptions) -> None:
        self.options = options
        self.pinned: Pins = frozenset((s.encode(), p) for s, p in options.partition_map.items())
        self._producer: AIOKafkaProducer | None = None  # the client every wrapper sends through
        self._broken: AIOKafkaProducer | None = None  # a client a delivery failed in, to stop
        self._producer_lock = asyncio.Lock()
        self._consumers: list[KafkaConsumer] = []

    def name(self, topic: str) -> str:
        spec = self.options.topics.get(topic)
        return topic if spec is None else spec.name

    async def start(self, *, timeout_s: float = 60.0) -> None:
        """Create the missing topics; retry while the cluster is still coming up."""
        opts = self.options
        last: BaseException | None = None
        delay_s = 0.2
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    try:
                        await self._ensure_topics()
                        return
                    except (KafkaError, OSError) as exc:
                        last = exc
                        log.warning("Kafka at %s not ready (%r); retrying", opts.bootstrap, exc)
                    await asyncio.sleep(delay_s)
                    delay_s = min(delay_s * 2, 2.0)
        except TimeoutError:
            why = repr(last) if last else "its topics have no leader yet"
            raise BusError(
                f"Kafka at {opts.bootstrap} not ready within {timeout_s:.0f}s: {why}"
            ) from last

    async def _ensure_topics(self) -> None:
        opts = self.options
        admin = AIOKafkaAdminClient(
            bootstrap_servers=opts.bootstrap, client_id=f"{opts.client_id}-admin"
        )
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            missing = [s for s in opts.topics.values() if s.name not in existing]
            if missing:
                new = [s.new_topic(opts.replication_factor) for s in missing]
                response = await admin.create_topics(new)
                for error in response.to_object()["topic_errors"]:
                    code = error["error_code"]
                    # Already there: another role created it at the same moment.
                    if code not in (0, TopicAlreadyExistsError.errno):
                        raise BusError(
                            f"cannot create topic {error['topic']}: {for_code(code).__name__}"
                            f" {error.get('error_message') or ''}".rstrip()
                        )
                log.info("created topics %s", ", ".join(s.name for s in missing))
            await self._check_partitions(admin, list(opts.topics.values()))
        finally:
            await admin.close()

    async def _check_partitions(self, admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> None:
        """Wait until every partition has a leader; warn where the count differs from ours."""
        names = [s.name for s in specs]
        while True:
            described: list[dict[str, Any]] = await admin.describe_topics(names)
            led = all(
                d["error_code"] == 0 and d["partitions"]
                and all(p["leader"] >= 0 for p in d["partitions"])
                for d in described
            )  # fmt: skip
            if led:
                break
            await asyncio.sleep(0.1)  # bounded by the timeout of ``start``
        counts = {d["topic"]: len(d["partitions"]) for d in described}
        for spec in specs:
            have = counts.get(spec.name)
            if have is not None and have != spec.partitions:
                log.warning(
                    "topic %s has %d partitions, the configuration asks for %d; using %d",
                    spec.name, have, spec.partitions, have,
                )  # fmt: skip

    async def producer(self) -> KafkaProducer:
        await self.client()
        return KafkaProducer(self)

    def current_client(self) -> AIOKafkaProducer | None:
        """The client sends go through now; None before the first or while it is replaced."""
        return self._producer

    async def client(self) -> AIOKafkaProducer:
        """The client to send through: started on first use, replaced after a failed delivery."""
        producer = self._producer
        if producer is not None:
            return producer
        async with self._producer_lock:
            if self._producer is None:
                broken, self._broken = self._broken, None
                if broken is not None:
                    log.warning(
                        "a delivery failed for good: stopping the Kafka producer and starting a "
                        "fresh one (a new producer id) to send through"
                    )
                    await broken.stop()
                self._producer = await self._start_producer()
            return self._producer

    def delivery_failed(self, producers: set[AIOKafkaProducer]) -> None:
        """Replace the current client before the next send if a delivery failed in it.

        An idempotent producer's sequence numbers for a partition are broken once a batch there
        has failed for good: the broker would refuse every later batch as out of order.
        """
        if self._producer is not None and self._producer in producers:
            self._broken, self._producer = self._producer, None

    async def _start_producer(self) -> AIOKafkaProducer:
        opts = self.options
        producer = AIOKafkaProducer(
            bootstrap_servers=opts.bootstrap,
            client_id=opts.client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=opts.linger_ms,
            max_batch_size=opts.max_batch_bytes,
            request_timeout_ms=opts.delivery_timeout_ms,
        )
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            raise BusError(f"start producer on {opts.bootstrap}: {exc!r}") from exc
        return producer

    async def consumer(
        self, topic: str, *, group: str | None, on_revoke: Revoked | None = None
    ) -> KafkaConsumer:
        opts = self.options
        name = self.name(topic)
        client = AIOKafkaConsumer(
            bootstrap_servers=opts.bootstrap,
            client_id=opts.client_id,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if group is not None else "latest",
            fetch_max_bytes=opts.fetch_max_bytes,
            max_partition_fetch_bytes=opts.fetch_max_bytes,
            request_timeout_ms=opts.request_timeout_ms,
            session_timeout_ms=opts.session_timeout_ms,
            heartbeat_interval_ms=max(opts.session_timeout_ms // 4, 100),
        )
        wrapper = KafkaConsumer(topic, name, client, group)
        client.subscribe([name], listener=_Listener(wrapper, on_revoke))
        try:
            await client.start()
        except KafkaError as exc:
            await client.stop()
            raise BusError(f"start consumer of {name} on {opts.bootstrap}: {exc!r}") from exc
        self._consumers.append(wrapper)
        return wrapper

    async def close(self) -> None:
        for consumer in self._consumers:
            await consumer.close()
        self._consumers.clear()
        for producer in (self._broken, self._producer):
            if producer is not None:
                await producer.stop()
        self._producer = self._broken = None
