"""The stream worker: ticks from the bus -> windows -> updates and the store.

One loop, in this order for every batch polled from ``ticks``:

1. decode; a record that is not a tick goes to the dead-letter topic with the reason;
2. restore the windows of symbols this worker has not seen yet from the store;
3. fold the ticks into the windows (late or future ticks are dead-lettered);
4. number the changed channels and publish one update per symbol on ``updates`` at once, so
   live clients see a tick within milliseconds;
5. write-behind (``stream.writebehind``): the changed candles and symbol states are kept
   (conflated) and written to the store every ``flush_interval_ms``, in the background while
   the next batches are processed; only after that write are the bus positions of the written
   batches committed. While the store is unavailable live updates go on, and past
   ``MAX_PENDING`` changed candles the worker waits for the store before it reads on.

Workers of one group share the ``ticks`` partitions. Before a rebalance takes partitions away,
the worker flushes and commits, then forgets the windows of the symbols it read from them; the
worker that takes them over rebuilds those windows from the store on their first tick.

A crash loses nothing: the bus re-delivers every record after the last commit, and a replayed
record at or below the position stored with its symbol's state is recognised and skipped, so
nothing is counted twice. Tick updates republished by a replay carry the same sequence numbers
as the first time (they count accepted ticks). Candle updates are numbered per batch, and the
replay batches differently, so a worker that restores a symbol on a durable bus numbers its
candle updates past anything its predecessor can have published after the stored state (one
update per record at most, up to the partition's end): web nodes that saw the old numbers take
the new updates instead of ignoring them, and clients see a jump, not stale candles.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from functools import partial

from stream.contract import (
    DEADLETTER,
    TICKS,
    UPDATES,
    Bus,
    Consumer,
    DeadLetter,
    DecodeError,
    Positions,
    Producer,
    Record,
    Store,
    SymbolState,
    Tick,
    decode_tick,
    encode_deadletter,
    encode_tick,
    encode_update_raw,
    now_ms,
)
from stream.stats import WorkerStats
from stream.windows import Outcome, Windows
from stream.writebehind import WriteBehind

log = logging.getLogger(__name__)

#: most ticks in one update record (about 150 bytes each): records stay far below the broker's
#: 1 MB message limit however large the batch
UPDATE_TICKS = 1_000
#: the candle-number jump on restore when the partition's end is not known
UNKNOWN_AHEAD = 1 << 24
_ACCEPTED = Outcome.ACCEPTED  # a module global: cheaper than the enum attribute per tick


class StreamWorker:
    """Consumes ``ticks``, keeps the windows, publishes ``updates``, writes the store."""

    def __init__(
        self,
        *,
        consumer: Consumer,
        producer: Producer,
        store: Store,
        windows: Windows,
        max_batch: int = 5_000,
        flush_interval_ms: int = 100,
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        self.consumer = consumer
        self.producer = producer
        self.store = store
        self.windows = windows
        self.max_batch = max_batch
        self.flush_interval_ms = flush_interval_ms
        self.clock_ms = clock_ms
        self.stats = WorkerStats()
        self.writer = WriteBehind(store=store, producer=producer, commit=self._commit,
                                  stats=self.stats)  # fmt: skip
        self._seqs: dict[str, dict[str, int]] = {}
        self._stopping = asyncio.Event()
        self._lock = asyncio.Lock()  # one of: processing a batch, a flush, a revocation
        self._processed: dict[int, int] = {}  # partition -> offset after the last one processed
        self._partition: dict[str, int] = {}  # symbol -> the bus partition its ticks come from

    @classmethod
    async def open(
        cls,
        bus: Bus,
        *,
        store: Store,
        windows: Windows,
        group: str = "stream",
        max_batch: int = 5_000,
        flush_interval_ms: int = 100,
    ) -> StreamWorker:
        """A worker in consumer group ``group`` of ``ticks``, flushing before each rebalance."""
        holder: list[StreamWorker] = []

        async def revoked(partitions: frozenset[int]) -> None:
            if holder:
                await holder[0].revoke(partitions)

        worker = cls(
            consumer=await bus.consumer(TICKS, group=group, on_revoke=revoked),
            producer=await bus.producer(),
            store=store,
            windows=windows,
            max_batch=max_batch,
            flush_interval_ms=flush_interval_ms,
        )
        holder.append(worker)
        return worker

    async def _commit(self, positions: Positions) -> None:
        await self.consumer.commit(positions)

    def not_ready(self) -> str | None:
        """Why the worker cannot make progress now (for readiness checks), or None."""
        return self.writer.not_ready()

    def stop(self) -> None:
        """Ask ``run`` to finish: it drains what it polled, flushes, commits and returns."""
        self._stopping.set()

    async def run(self) -> None:
        """Consume until ``stop``; then drain what the bus still holds, flush and commit."""
        next_flush = time.monotonic() + self.flush_interval_ms / 1000
        try:
            while True:
                stopping = self._stopping.is_set()
                wait_ms = 0 if stopping else int((next_flush - time.monotonic()) * 1000)
                # Not under the lock: the bus may hold a poll until a rebalance is over, and the
                # rebalance waits for ``revoke``, which takes the lock.
                seen = self.stats.revocations
                records = await self.consumer.poll(
                    max_records=self.max_batch, timeout_ms=min(max(wait_ms, 1), 100)
                )
                async with self._lock:
                    if records and self.stats.revocations != seen:
                        # A rebalance overtook this poll: its records may be from partitions
                        # handed over (the next owner reads them) or from the new assignment;
                        # read again from where they start, keeping only what is still ours.
                        self.consumer.seek(_first_offsets(records))
                        records = []
                    if records:
                        await self.process(records)
                    if time.monotonic() >= next_flush:
                        await self._flush(wait=False)
                        next_flush = time.monotonic() + self.flush_interval_ms / 1000
                # A durable bus keeps what is left for the next worker; the in-process one is
                # drained, since nothing else would ever read it.
                if stopping and (self.consumer.durable or not records):
                    break
        except BaseException:
            await self.writer.cancel()  # a crash: what is not committed will be replayed
            raise
        await self.flush()

    async def revoke(self, partitions: frozenset[int]) -> None:
        """Flush and commit, then forget the symbols read from ``partitions``.

        If the flush fails (the bus or the store went away mid-rebalance), the symbols are
        forgotten all the same, with their unwritten changes: their next owner replays them
        from the last commit. The changes of the symbols kept stay pending for the next write.
        """
        async with self._lock:
            try:
                await self._flush(wait=True, handover=True)
            except Exception as exc:
                log.warning(
                    "handing over partitions %s without a last write (%s); their next owner "
                    "replays them from the last commit",
                    sorted(partitions), exc,
                )  # fmt: skip
            finally:
                for part in partitions:
                    self._processed.pop(part, None)
                gone = [s for s, p in self._partition.items() if p in partitions]
                for symbol in gone:
                    self.windows.forget(symbol)
                    self._seqs.pop(symbol, None)
                    del self._partition[symbol]
                self.writer.forget(gone)
                self.stats.revocations += 1
            log.info("handed over %d symbols of partitions %s", len(gone), sorted(partitions))

    async def process(self, records: list[Record]) -> None:
        """Fold one polled batch into the windows and publish its updates."""
        self.stats.batches += 1
        self.stats.ticks_in += len(records)
        durable = self.consumer.durable
        letters: list[tuple[int, DeadLetter]] = []  # (offset, letter): kept in bus order
        ticks: list[Tick] = []
        kept: list[Record] = []  # the record of each tick in ``ticks``
        processed = self._processed
        for rec in records:
            processed[rec.partition] = rec.offset + 1  # records come in order per partition
            try:
                ticks.append(decode_tick(rec.value))
            except DecodeError as exc:
                letters.append((rec.offset, self._reject("undecodable", str(exc), rec)))
            else:
                kept.append(rec)
        await self._restore({t.symbol: r.partition for t, r in zip(ticks, kept, strict=True)})

        receive = self.windows.receive
        accepted: dict[str, list[bytes]] = {}  # the JSON of each accepted tick, by symbol
        for tick, rec in zip(ticks, kept, strict=True):
            outcome = receive(tick, rec.offset if durable else None)
            if outcome is _ACCEPTED:
                raw = rec.value if rec.value[:1] == b"{" else encode_tick(tick)
                same = accepted.get(tick.symbol)
                if same is None:
                    accepted[tick.symbol] = [raw]
                else:
                    same.append(raw)
            elif outcome is Outcome.REPLAYED:
                self.stats.replayed += 1
            elif outcome is Outcome.LATE:
                why = f"tick at {tick.ts_ms} is older than the watermark less the grace period"
                letters.append((rec.offset, self._reject("late", why, rec)))
            else:
                why = f"tick at {tick.ts_ms} is too far after its receipt at {tick.recv_ms}"
                letters.append((rec.offset, self._reject("future", why, rec)))
        changes = self.windows.take()

        updates: list[tuple[bytes | None, bytes]] = []
        keep = self.writer.keep
        for symbol, change in changes.items():
            seqs = self._seqs.setdefault(symbol, {})
            mine = accepted.get(symbol, [])
            first = seqs.get("ticks", 0) + 1
            tick_pairs = list(zip(range(first, first + len(mine)), mine, strict=True))
            if mine:
                seqs["ticks"] = first + len(mine) - 1
            candle_pairs = []
            for candle in change.candles:
                seqs[candle.res] = seq = seqs.get(candle.res, 0) + 1
                candle_pairs.append((seq, candle))
            state = change.state
            keep(change.candles, SymbolState(
                symbol, state.latest, state.watermark_ms, state.pos, dict(seqs), state.open,
                self._partition.get(symbol, -1) if durable else -1,
            ))  # fmt: skip
            # One record per symbol, split past UPDATE_TICKS ticks: a batch read from a backlog
            # (after an outage, a restart) can hold thousands of one symbol's ticks, and one
            # record of them all outgrew what the broker takes (MessageSizeTooLarge).
            key = symbol.encode()
            for i in range(0, max(len(tick_pairs), 1), UPDATE_TICKS):
                part = tick_pairs[i : i + UPDATE_TICKS]
                last = i + UPDATE_TICKS >= len(tick_pairs)
                if part or (last and candle_pairs):
                    msg = encode_update_raw(symbol, part, candle_pairs if last else [])
                    updates.append((key, msg))
        self.stats.ticks_accepted += sum(len(v) for v in accepted.values())
        if updates:
            await self.producer.send_many(UPDATES, updates)
            self.stats.updates_out += len(updates)
        if letters:
            letters.sort(key=lambda pair: pair[0])
            dead = [(None, encode_deadletter(letter)) for _, letter in letters]
            await self.producer.send_many(DEADLETTER, dead)
        self.writer.processed(len(records))

    async def flush(self) -> None:
        """Write the pending candles and states, then commit the bus positions; wait for it."""
        async with self._lock:
            await self._flush(wait=True)

    async def _flush(self, *, wait: bool, handover: bool = False) -> None:
        """``WriteBehind.flush`` with the positions processed so far.

        Called with the lock held, between batches, so the positions are exactly those of the
        records whose changes are pending.
        """
        await self.writer.flush(self._processed, wait=wait, handover=handover)

    async def _restore(self, symbols: dict[str, int]) -> None:
        for symbol, partition in symbols.items():
            if symbol in self.windows:
                continue
            self._partition[symbol] = partition
            state = await self.writer.retrying(
                f"read of {symbol}", partial(self.store.state, symbol)
            )
            if state is not None and not self.consumer.durable:
                state = SymbolState(
                    symbol, state.latest, state.watermark_ms, -1, state.seqs, state.open
                )
            elif state is not None and state.partition not in (-1, partition):
                # The symbol's ticks now come from another partition ([bus] partition_map
                # changed): its stored position counts in the old one, and every tick of the
                # new one is new to it.
                log.warning(
                    "%s moved from partition %d to %d: its position %d there does not apply",
                    symbol, state.partition, partition, state.pos,
                )  # fmt: skip
                state = SymbolState(
                    symbol, state.latest, state.watermark_ms, -1, state.seqs, state.open,
                    partition,
                )  # fmt: skip
            seqs = dict(state.seqs) if state is not None else {}
            ahead = self._published_ahead(partition, -1 if state is None else state.pos)
            if ahead:
                # A worker before this one may have published candle updates past the stored
                # state, numbered by its own batches; number this worker's after all of them,
                # so every web node takes its updates. Tick numbers need no jump: they count
                # accepted ticks, the same however the records are batched.
                for res in self.windows.resolutions:
                    seqs[res] = seqs.get(res, 0) + ahead
            self._seqs[symbol] = seqs
            if state is None:
                continue
            self.windows.restore(state)
            log.info(
                "restored %s: watermark %d, %d open candles, candle numbers +%d",
                symbol,
                state.watermark_ms,
                len(state.open),
                ahead,
            )

    def _published_ahead(self, partition: int, pos: int) -> int:
        """How many candle updates per channel an earlier owner of ``partition`` may have
        published after the stored position ``pos``: at most one per record after it."""
        if not self.consumer.durable:
            return 0  # nothing outlives this process: no earlier owner's updates exist
        end = self.consumer.end(partition)
        if end is None:
            return UNKNOWN_AHEAD
        return max(0, end - pos - 1)

    def _reject(self, reason: str, detail: str, rec: Record) -> DeadLetter:
        self.stats.rejected[reason] = self.stats.rejected.get(reason, 0) + 1
        return DeadLetter(f"{reason}: {detail}", f"stream:{rec.topic}", self.clock_ms(), rec.value)


def _first_offsets(records: list[Record]) -> dict[int, int]:
    first: dict[int, int] = {}
    for rec in records:
        if rec.offset < first.get(rec.partition, rec.offset + 1):
            first[rec.partition] = rec.offset
    return first
