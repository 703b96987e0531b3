"""The raw tick archive: every tick on the bus kept in the store for a bounded time.

Optional (``[storage] tick_archive``). It reads ``ticks`` as its own consumer group, so it
neither slows nor depends on the stream workers; a tick archived twice after a restart is
stored once (the store keys ticks by ``tick_key``). Records that are not ticks are left to the
stream worker, which dead-letters them.
"""

from __future__ import annotations

import asyncio
import logging

from stream.contract import Consumer, DecodeError, Store, decode_tick
from stream.retry import while_unavailable

log = logging.getLogger(__name__)


class TickArchive:
    """Moves ticks from the bus into the store's archive, then commits."""

    def __init__(self, *, consumer: Consumer, store: Store, max_batch: int = 5_000) -> None:
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
        records = await self.consumer.poll(max_records=self.max_batch, timeout_ms=timeout_ms)
        if not records:
            return 0
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
        await self.consumer.commit()
        self.archived += len(ticks)
        return len(ticks)
