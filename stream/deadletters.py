"""The dead-letter archive: keeps every rejected message from the bus in the store."""

from __future__ import annotations

import asyncio
import logging

from stream.contract import Consumer, DeadLetter, DecodeError, Store, decode_deadletter
from stream.retry import while_unavailable

log = logging.getLogger(__name__)


class DeadLetterArchive:
    """Moves records from the ``deadletter`` topic into the store, then commits."""

    def __init__(self, *, consumer: Consumer, store: Store) -> None:
        self.consumer = consumer
        self.store = store
        self.archived = 0
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            await self.drain_once(timeout_ms=200)

    async def drain_once(self, *, timeout_ms: int) -> int:
        records = await self.consumer.poll(max_records=1_000, timeout_ms=timeout_ms)
        if not records:
            return 0
        letters = []
        for rec in records:
            try:
                letters.append(decode_deadletter(rec.value))
            except DecodeError as exc:
                letters.append(
                    DeadLetter(f"undecodable dead letter: {exc}", rec.topic, 0, rec.value)
                )
        await while_unavailable(
            f"write of {len(letters)} dead letters", lambda: self.store.add_deadletters(letters)
        )
        await self.consumer.commit()
        self.archived += len(letters)
        log.debug("archived %d dead letters", len(letters))
        return len(letters)
