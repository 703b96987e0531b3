"""The stream worker's write-behind: conflated changes, one store write at a time, then commit.

The worker gives it the changed candles and symbol states of every batch it processes
(``keep``), conflated by key until the next write. ``flush`` writes them to the store, in the
background or waited for, one write at a time and in order; only after a write is stored, and
the producer has flushed the updates and dead letters of the same records, are their bus
positions committed. While the store is unavailable a call is retried with backoff and nothing
is committed; ``not_ready`` says why, for readiness checks. Past ``MAX_PENDING`` changed
candles a ``flush`` waits for the write in progress instead of leaving the changes for the next.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Iterable
from typing import TypeVar

from stream.contract import (
    Candle,
    Positions,
    Producer,
    Store,
    StoreUnavailable,
    SymbolState,
)
from stream.retry import while_unavailable
from stream.stats import WorkerStats

T = TypeVar("T")

MAX_PENDING = 100_000  # changed candles held while a write is in progress, before waiting


class WriteBehind:
    """The pending changes of one worker and the store write in the background, if any.

    Not safe for concurrent use: the worker calls it under its lock, between batches.
    """

    def __init__(
        self,
        *,
        store: Store,
        producer: Producer,
        commit: Callable[[Positions], Awaitable[None]],
        stats: WorkerStats,
    ) -> None:
        self.store = store
        self.producer = producer
        self.commit = commit  # the worker's: commits on whatever consumer it has now
        self.stats = stats
        self._candles: dict[tuple[str, str, int], Candle] = {}
        self._states: dict[str, SymbolState] = {}
        self._uncommitted = False
        self._records_pending = 0  # records processed since the last flush started
        self._records_writing = 0  # the records of the write in the background
        # The store write in the background, and the event it sets once the write is stored.
        self._writing: tuple[asyncio.Task[None], asyncio.Event] | None = None
        self._store_down: str | None = None  # why the store failed, while it is retried

    def not_ready(self) -> str | None:
        """Why nothing can be stored now (the store is being retried), or None."""
        return self._store_down

    def keep(self, candles: Iterable[Candle], state: SymbolState) -> None:
        """Hold a symbol's changed candles and its state for the next write (the latest wins)."""
        pending = self._candles
        for candle in candles:
            pending[_candle_key(candle)] = candle
        self._states[state.symbol] = state

    def processed(self, records: int) -> None:
        """``records`` more were processed: their positions are committed by the next write."""
        self._records_pending += records
        self._uncommitted = True

    def forget(self, symbols: Collection[str]) -> None:
        """Drop the unwritten changes of ``symbols`` (handed over to another worker)."""
        for symbol in symbols:
            self._states.pop(symbol, None)
        if symbols:
            gone = set(symbols)
            self._candles = {k: c for k, c in self._candles.items() if k[0] not in gone}

    async def cancel(self) -> None:
        """Stop the write in the background (a crash: what is not committed is replayed)."""
        if self._writing is not None:
            task, _ = self._writing
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            self._writing = None

    async def flush(self, positions: Positions, *, wait: bool, handover: bool = False) -> None:
        """Start writing what is pending (``wait``: and finish it), after the previous write.

        ``positions`` (partition -> offset after the last record processed) are those of the
        records whose changes are pending: copied now, committed once the write is stored. In a
        ``handover`` (partitions being revoked) the previous write's commit is abandoned once its
        data is stored: the bus holds commits back until the rebalance, which is waiting for
        this call, is over. This call commits the same positions and later ones itself.
        """
        if self._writing is not None:
            task, stored = self._writing
            busy = not task.done()
            if busy and not wait and len(self._candles) < MAX_PENDING:
                return  # still writing the previous batch: these changes go in the next one
            self._writing = None
            if busy and handover:
                waiter = asyncio.ensure_future(stored.wait())
                await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if not task.done():
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                    self._records_pending += self._records_writing  # committed below instead
            if task.done() and not task.cancelled():
                task.result()  # raises what made it fail
            elif not handover:
                await task
        if not (self._candles or self._states or self._uncommitted):
            return
        candles = sorted(self._candles.values(), key=_candle_key)
        states = sorted(self._states.values(), key=lambda s: s.symbol)
        taken = dict(positions)
        records, self._records_pending = self._records_pending, 0
        self._candles, self._states = {}, {}
        self._uncommitted = False
        stored = asyncio.Event()
        job = self._write_and_commit(candles, states, taken, stored, records)
        if wait:
            try:
                await job
            except BaseException:
                # Not written, or not committed: keep it for the next write, so a worker that
                # goes on never commits past changes it did not store.
                for c in candles:
                    self._candles.setdefault(_candle_key(c), c)
                for st in states:
                    self._states.setdefault(st.symbol, st)
                self._records_pending += records
                self._uncommitted = True
                raise
        else:
            self._records_writing = records
            self._writing = (asyncio.create_task(job, name="store-write"), stored)

    async def _write_and_commit(
        self,
        candles: list[Candle],
        states: list[SymbolState],
        positions: Positions,
        stored: asyncio.Event,
        records: int,
    ) -> None:
        if candles or states:
            started = time.perf_counter()
            await self.retrying("write", lambda: self.store.write(candles, states))
            self.stats.observe_store_write((time.perf_counter() - started) * 1000)
        await self.producer.flush()  # the updates and dead letters of these records are out
        stored.set()
        await self.commit(positions)
        self.stats.ticks_committed += records

    async def retrying(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """``call()`` on the store, retried while it is unavailable (``not_ready`` says so)."""
        return await while_unavailable(what, call, on_failure=self._store_failed)

    def _store_failed(self, exc: StoreUnavailable | None) -> None:
        if exc is None:
            self._store_down = None
            return
        self._store_down = f"store unavailable: {exc}"
        self.stats.store_retries += 1


def _candle_key(c: Candle) -> tuple[str, str, int]:
    return (c.symbol, c.res, c.start_ms)
