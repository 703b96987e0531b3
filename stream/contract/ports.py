"""The small interfaces (ports) every backend implements: the bus and the store.

The in-process bus and Kafka implement ``Bus``; SQLite and MongoDB implement ``Store``. Nothing
above the adapters knows which one it runs on; one contract test suite runs against each.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import NamedTuple, Protocol

import msgspec

from stream.contract.model import Candle, DeadLetter, Tick

TICKS = "ticks"
UPDATES = "updates"
DEADLETTER = "deadletter"
#: Each vendor's raw ticks while ingest publishes a composite price on ``ticks``.
VENDOR_TICKS = "vendor-ticks"
#: ``VendorStatus`` snapshots, one per vendor about every second (key = vendor name).
VENDORS = "vendors"


class Record(NamedTuple):
    """One message read from the bus. ``offset`` rises within ``(topic, partition)``."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


class Producer(Protocol):
    async def send(self, topic: str, value: bytes, *, key: bytes | None = None) -> None:
        """Publish one message; returns once the bus has accepted it (may wait: backpressure)."""
        ...

    async def send_many(self, topic: str, items: Sequence[tuple[bytes | None, bytes]]) -> None:
        """Publish ``(key, value)`` pairs in order; one await for the whole batch."""
        ...

    async def flush(self) -> None:
        """Wait until everything sent so far is durably accepted."""
        ...


#: How far records are processed: partition -> the offset after the last one processed.
Positions = Mapping[int, int]


class Consumer(Protocol):
    #: True when positions survive a restart, so a replayed record can be recognised.
    durable: bool

    async def poll(self, *, max_records: int, timeout_ms: int) -> list[Record]:
        """Up to ``max_records`` records, waiting at most ``timeout_ms`` for the first one."""
        ...

    async def commit(self, positions: Positions | None = None) -> None:
        """Mark records as processed: up to ``positions``, or all that ``poll`` returned."""
        ...

    def seek(self, positions: Positions) -> None:
        """Make later polls read from these offsets again (partitions not held: left alone)."""
        ...

    def end(self, partition: int) -> int | None:
        """The offset after the last record of ``partition`` that this consumer knows of (the
        high-water mark of its last fetch); None while unknown. Never awaits."""
        ...

    def lag(self) -> int | None:
        """How far behind the end of its topic this consumer is, in records: the sum over the
        partitions it holds of (end offset - next offset it will read); None while unknown.

        It says what waits to be read, not what is read and not yet committed. Never awaits:
        it is read when metrics are scraped.
        """
        ...

    async def close(self) -> None: ...


#: Called with the partitions a group consumer is about to lose, before another member of the
#: group can read them: the owner flushes and commits what it holds for them, then forgets it.
Revoked = Callable[[frozenset[int]], Awaitable[None]]


class Bus(Protocol):
    async def producer(self) -> Producer: ...

    async def consumer(
        self, topic: str, *, group: str | None, on_revoke: Revoked | None = None
    ) -> Consumer:
        """A consumer of ``topic``.

        With a ``group``, consumers of the same group share the topic's partitions (each record
        reaches one of them), and ``on_revoke`` runs before partitions move to another member.
        With ``group=None`` the consumer sees every record published after it started (fan-out,
        as each web node reads ``updates``).
        """
        ...

    async def close(self) -> None: ...


class SymbolState(msgspec.Struct, frozen=True, gc=False):
    """What the stream worker that owns a symbol needs to carry on after a restart.

    ``latest`` is the tick with the newest ``ts_ms`` seen, ``watermark_ms`` its time (the
    event-time clock of the symbol's windows), ``pos`` the bus position of the last tick
    processed (-1 when the bus keeps no positions) in bus partition ``partition`` (-1: not
    known, a state stored before it was recorded), ``seqs`` the last sequence number published
    per channel and ``open`` the candles that ticks can still change.

    The state is written after the candles of the same batch and in one piece (one row, one
    document), so a restored state never claims a position whose candles were not written.
    """

    symbol: str
    latest: Tick | None
    watermark_ms: int
    pos: int
    seqs: dict[str, int]
    open: list[Candle]
    partition: int = -1


class Store(Protocol):
    async def write(self, candles: Sequence[Candle], states: Sequence[SymbolState]) -> None:
        """Upsert candles by ``(symbol, res, start_ms)``, then symbol states by symbol.

        Idempotent: writing the same values again changes nothing. Returns once durable.
        """
        ...

    async def candles(
        self,
        symbol: str,
        res: str,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 500,
    ) -> list[Candle]:
        """Up to ``limit`` candles with ``start_ms <= candle.start_ms < end_ms``, oldest first.

        When more match, the newest ``limit`` are returned.
        """
        ...

    async def state(self, symbol: str) -> SymbolState | None: ...

    async def states(self) -> list[SymbolState]:
        """Every symbol's state, ordered by symbol."""
        ...

    async def archive_ticks(self, ticks: Sequence[Tick]) -> None:
        """Keep raw ticks for the archive's retention, given when the store is opened.

        Idempotent: a tick archived again (a replay) is stored once. Raises ``StoreError``
        when the store was opened without an archive.
        """
        ...

    async def archived_ticks(
        self,
        symbol: str,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 1_000,
    ) -> list[Tick]:
        """Archived ticks with ``start_ms <= ts_ms < end_ms``, oldest first (the newest
        ``limit`` when more match)."""
        ...

    async def add_deadletters(
        self, letters: Sequence[DeadLetter], *, keys: Sequence[str | None] | None = None
    ) -> None:
        """Keep dead letters: the newest ``max_deadletters`` (by ``ts_ms``) given at open.

        ``keys``, one per letter when given, makes the write idempotent: a letter whose key is
        stored already is not stored again (the archive keys a letter by its bus position, so a
        replayed batch is kept once). A letter without a key is always stored. Raises
        ``ValueError`` when ``keys`` is not as long as ``letters``.
        """
        ...

    async def deadletters(self, *, limit: int = 100) -> list[DeadLetter]:
        """The newest dead letters, newest first: the letters of ``deadletter_page()``."""
        ...

    async def deadletter_page(
        self,
        *,
        limit: int = 100,
        before: str | None = None,
        source: str | None = None,
        reason: str | None = None,
    ) -> tuple[list[DeadLetter], str | None]:
        """Up to ``limit`` (>= 1) dead letters, newest first, and the cursor of the next page:
        None when no older letter matches.

        Newest first is ``ts_ms`` descending, letters of the same ``ts_ms`` in an order of the
        store's that never changes, so paging neither skips nor repeats a letter. ``before``:
        a cursor an earlier page returned (an opaque string), None for the newest page.
        ``source``: only the letters from this source. ``reason``: only the letters of this
        kind: the reason's text before its first ``:`` (all of it when it has none). Raises
        ``DecodeError`` when ``before`` is not a cursor of this store.
        """
        ...

    async def purge(self, now_ms: int) -> int:
        """Delete candles (and archived ticks) past their retention; return how many."""
        ...

    async def close(self) -> None: ...
