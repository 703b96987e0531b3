"""The Kafka bus's consumer: polls, committed positions, lag, and handing partitions over.

A group consumer commits only what it was told to (``commit`` after the owner's store write) and
runs the owner's ``on_revoke`` before its partitions move, so the next owner starts from flushed
state. A group-less consumer reads every partition from the end: fan-out.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from stream.contract import BusError, Positions, Record, Revoked

log = logging.getLogger(__name__)


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
    """One topic read through an ``AIOKafkaConsumer``: as a group member, or from the end."""

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

    def subscribe(self, on_revoke: Revoked | None) -> None:
        """Subscribe the client to the topic, running ``on_revoke`` before partitions move."""
        self._consumer.subscribe([self.name], listener=_Listener(self, on_revoke))

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
