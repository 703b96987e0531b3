"""Archives: records of a bus topic kept in the store, one shared loop.

- ``DeadLetterArchive``: every rejected message from ``deadletter``, with its reason and raw
  bytes (a record that is not a dead letter is kept too, as raw bytes with that reason, at the
  time the archive read it). On a durable bus (Kafka) each letter is keyed by its bus position,
  so a batch written again after a crash before its commit is stored once; the in-process
  bus's positions start again with the process, so its letters are stored without a key.
- ``TickArchive``: the optional raw tick archive (``[storage] tick_archive``). It reads
  ``ticks`` as its own consumer group, so it neither slows nor depends on the stream workers;
  a tick archived twice after a restart is stored once (the store keys ticks by ``tick_key``).
  Records that are not ticks are left to the stream worker, which dead-letters them.

Each polls a batch, writes it (retried while the store is unavailable), then commits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from stream.contract import (
    Consumer,
    DeadLetter,
    DecodeError,
    Record,
    Store,
    decode_deadletter,
    decode_tick,
    now_ms,
)
from stream.retry import while_unavailable

log = logging.getLogger(__name__)


class Archive:
    """Moves records from the bus into the store, then commits; subclasses say how."""

    def __init__(self, *, consumer: Consumer, store: Store, max_batch: int) -> None:
        self.consumer = consumer
        self.store = store
        self.max_batch = max_batch
        self.archived = 0
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            await self.drain_once(timeout_ms=200)

    async def drain_once(self, *, timeout_ms: int) -> int:
        """Archive one polled batch; how many records were kept."""
        records = await self.consumer.poll(max_records=self.max_batch, timeout_ms=timeout_ms)
        if not records:
            return 0
        kept = await self.keep(records)
        await self.consumer.commit()
        self.archived += kept
        return kept

    async def keep(self, records: list[Record]) -> int:
        raise NotImplementedError


class DeadLetterArchive(Archive):
    def __init__(
        self,
        *,
        consumer: Consumer,
        store: Store,
        max_batch: int = 1_000,
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        super().__init__(consumer=consumer, store=store, max_batch=max_batch)
        self.clock_ms = clock_ms

    async def keep(self, records: list[Record]) -> int:
        letters = []
        for rec in records:
            try:
                letters.append(decode_deadletter(rec.value))
            except DecodeError as exc:
                why = f"undecodable dead letter: {exc}"
                letters.append(DeadLetter(why, rec.topic, self.clock_ms(), rec.value))
        keys = None
        if self.consumer.durable:
            keys = [f"{rec.topic}:{rec.partition}:{rec.offset}" for rec in records]
        await while_unavailable(
            f"write of {len(letters)} dead letters",
            lambda: self.store.add_deadletters(letters, keys=keys),
        )
        log.debug("archived %d dead letters", len(letters))
        return len(letters)


class TickArchive(Archive):
    def __init__(self, *, consumer: Consumer, store: Store, max_batch: int = 5_000) -> None:
        super().__init__(consumer=consumer, store=store, max_batch=max_batch)

    async def keep(self, records: list[Record]) -> int:
        ticks = []
        for rec in records:
            try:
                ticks.append(decode_tick(rec.value))
            except DecodeError:
                continue  # the stream worker dead-letters it
        if ticks:
            await while_unavailable(
                f"archive of {len(ticks)} ticks", lambda: self.store.archive_ticks(ticks)
            )
        return len(ticks)
