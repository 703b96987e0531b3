"""The Apache Kafka bus (aiokafka): the distributed backend of the ``Bus`` port.

- Topics keep their logical names in the code (``ticks``, ``updates``, ``deadletter``); the bus
  maps them to configured Kafka names, partition counts and retention, and creates the missing
  ones at ``start``. An existing topic is used as it is (a warning names any difference).
- One idempotent producer client per bus, shared by its ``KafkaProducer``s and replaced after a
  delivery that failed for good; how records are placed and sent is in ``kafka_producer``.
- Consumers (``kafka_consumer``): a group consumer commits only what its owner says, after the
  owner's store write, and runs the owner's ``on_revoke`` before a rebalance moves its
  partitions; a group-less consumer reads every partition from the end.

Errors from the client are raised as ``BusError`` with the operation named, except while the
broker is merely unreachable: then sends wait (bounded by ``delivery_timeout_ms``) and polls
return nothing until it is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from stream.bus.kafka_consumer import KafkaConsumer
from stream.bus.kafka_producer import KafkaProducer, Pins
from stream.contract import DEADLETTER, TICKS, UPDATES, BusError, Revoked

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
        wrapper.subscribe(on_revoke)
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
