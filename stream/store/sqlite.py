"""The embedded store: one SQLite file, written from one thread.

SQLite's own API is blocking, so every call runs on a single dedicated thread that owns the
connection; the event loop never waits on disk. The journal is WAL with ``synchronous=FULL``:
once ``write`` returns, the batch survives a crash of the process or the machine.

Dead letters are rows ordered by ``(ts_ms, id)``; a keyed letter (see ``Store.add_deadletters``)
carries its ``key``, unique, so a replayed one is not stored again. ``open`` adds the ``key``
column to a file made before it existed.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from stream.contract import (
    Candle,
    DeadLetter,
    StoreError,
    SymbolState,
    Tick,
    tick_key,
)
from stream.store import DEFAULT_RETENTION_MS
from stream.store.cursor import Int64, PageCursor

log = logging.getLogger(__name__)
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS candles (
    symbol TEXT NOT NULL, res TEXT NOT NULL, start_ms INTEGER NOT NULL, end_ms INTEGER NOT NULL,
    open REAL NOT NULL, high REAL NOT NULL, low REAL NOT NULL, close REAL NOT NULL,
    ticks INTEGER NOT NULL, first_ts_ms INTEGER NOT NULL, last_ts_ms INTEGER NOT NULL,
    closed INTEGER NOT NULL,
    PRIMARY KEY (symbol, res, start_ms)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS states (symbol TEXT PRIMARY KEY, state BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ticks (
    key TEXT PRIMARY KEY, symbol TEXT NOT NULL, ts_ms INTEGER NOT NULL, tick BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ticks_by_time ON ticks (symbol, ts_ms);
CREATE TABLE IF NOT EXISTS deadletters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    reason TEXT NOT NULL, source TEXT NOT NULL, ts_ms INTEGER NOT NULL, raw BLOB NOT NULL,
    key TEXT
);
"""

#: After ``_SCHEMA`` and the migration that adds ``deadletters.key`` to an older file.
_DEADLETTER_INDEXES = (
    "CREATE UNIQUE INDEX IF NOT EXISTS deadletters_by_key ON deadletters (key)",  # NULLs apart
    "CREATE INDEX IF NOT EXISTS deadletters_newest ON deadletters (ts_ms, id)",
)

_UPSERT_CANDLE = """
INSERT INTO candles VALUES (?,?,?,?,?,?,?,?,?,?,?,?)
ON CONFLICT (symbol, res, start_ms) DO UPDATE SET
    end_ms=excluded.end_ms, open=excluded.open, high=excluded.high, low=excluded.low,
    close=excluded.close, ticks=excluded.ticks, first_ts_ms=excluded.first_ts_ms,
    last_ts_ms=excluded.last_ts_ms, closed=excluded.closed
"""

_SELECT_CANDLES = (
    "SELECT symbol, res, start_ms, end_ms, open, high, low, close, ticks, first_ts_ms,"
    " last_ts_ms, closed FROM candles WHERE symbol=? AND res=? AND start_ms>=? AND start_ms<?"
    " ORDER BY start_ms DESC LIMIT ?"
)

_state_enc = msgspec.msgpack.Encoder()
_state_dec = msgspec.msgpack.Decoder(SymbolState)
_tick_dec = msgspec.msgpack.Decoder(Tick)


#: A page cursor: the ``(ts_ms, id)`` of the last letter of the page before.
_CURSOR: PageCursor[int] = PageCursor(Int64, "dead-letter cursor")


def _candle(row: tuple[Any, ...]) -> Candle:
    symbol, res, start, end, o, h, lo, c, ticks, first, last, closed = row
    return Candle(symbol, res, start, end, o, h, lo, c, ticks, first, last, bool(closed))


class SqliteStore:
    """Candles, symbol states and dead letters in one SQLite file."""

    def __init__(
        self,
        path: Path,
        *,
        retention_ms: Mapping[str, int | None] = DEFAULT_RETENTION_MS,
        max_deadletters: int = 100_000,
        tick_archive_ms: int | None = None,
    ) -> None:
        self.path = path
        self.retention_ms = dict(retention_ms)
        self.max_deadletters = max_deadletters
        self.tick_archive_ms = tick_archive_ms
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._conn: sqlite3.Connection | None = None

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        retention_ms: Mapping[str, int | None] = DEFAULT_RETENTION_MS,
        max_deadletters: int = 100_000,
        tick_archive_ms: int | None = None,
    ) -> SqliteStore:
        """Open (creating if needed) the store at ``path``; ``tick_archive_ms``: keep raw ticks."""
        store = cls(path, retention_ms=retention_ms, max_deadletters=max_deadletters,
                    tick_archive_ms=tick_archive_ms)  # fmt: skip
        await store._run("open", store._open)
        return store

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(_SCHEMA)
        conn.execute("BEGIN IMMEDIATE")  # another process opening the same file waits
        try:
            columns = {row[1] for row in conn.execute("PRAGMA table_info(deadletters)")}
            if "key" not in columns:
                conn.execute("ALTER TABLE deadletters ADD COLUMN key TEXT")
                log.info("%s: added the key column to the dead letters", self.path)
            for statement in _DEADLETTER_INDEXES:
                conn.execute(statement)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        self._conn = conn

    async def _run(self, what: str, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, fn)
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite {what} on {self.path}: {exc}") from exc

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"sqlite store {self.path} is not open")
        return self._conn

    async def write(self, candles: Sequence[Candle], states: Sequence[SymbolState]) -> None:
        rows = [
            (
                c.symbol, c.res, c.start_ms, c.end_ms, c.open, c.high, c.low, c.close,
                c.ticks, c.first_ts_ms, c.last_ts_ms, int(c.closed),
            )
            for c in candles
        ]  # fmt: skip
        blobs = [(s.symbol, _state_enc.encode(s)) for s in states]

        def write() -> None:
            db = self._db
            db.execute("BEGIN")
            try:
                db.executemany(_UPSERT_CANDLE, rows)
                db.executemany(
                    "INSERT INTO states VALUES (?,?) ON CONFLICT(symbol) DO UPDATE"
                    " SET state=excluded.state",
                    blobs,
                )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

        await self._run(f"write of {len(rows)} candles, {len(blobs)} states", write)

    async def candles(
        self,
        symbol: str,
        res: str,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 500,
    ) -> list[Candle]:
        lo = -(2**62) if start_ms is None else start_ms
        hi = 2**62 if end_ms is None else end_ms

        def read() -> list[Candle]:
            cur = self._db.execute(_SELECT_CANDLES, (symbol, res, lo, hi, limit))
            out = [_candle(row) for row in cur.fetchall()]
            out.reverse()
            return out

        return await self._run(f"read of {symbol} {res} candles", read)

    async def state(self, symbol: str) -> SymbolState | None:
        def read() -> SymbolState | None:
            row = self._db.execute("SELECT state FROM states WHERE symbol=?", (symbol,)).fetchone()
            return None if row is None else _state_dec.decode(row[0])

        return await self._run(f"read of {symbol} state", read)

    async def states(self) -> list[SymbolState]:
        def read() -> list[SymbolState]:
            rows = self._db.execute("SELECT state FROM states ORDER BY symbol").fetchall()
            return [_state_dec.decode(row[0]) for row in rows]

        return await self._run("read of states", read)

    async def archive_ticks(self, ticks: Sequence[Tick]) -> None:
        if self.tick_archive_ms is None:
            raise StoreError(f"sqlite store {self.path} was opened without a tick archive")
        rows = [(tick_key(t), t.symbol, t.ts_ms, _state_enc.encode(t)) for t in ticks]

        def write() -> None:
            db = self._db
            db.execute("BEGIN")
            db.executemany("INSERT OR IGNORE INTO ticks VALUES (?,?,?,?)", rows)
            db.execute("COMMIT")

        await self._run(f"archive of {len(rows)} ticks", write)

    async def archived_ticks(
        self,
        symbol: str,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 1_000,
    ) -> list[Tick]:
        lo = -(2**62) if start_ms is None else start_ms
        hi = 2**62 if end_ms is None else end_ms

        def read() -> list[Tick]:
            rows = self._db.execute(
                "SELECT tick FROM ticks WHERE symbol=? AND ts_ms>=? AND ts_ms<?"
                " ORDER BY ts_ms DESC, key DESC LIMIT ?",
                (symbol, lo, hi, limit),
            ).fetchall()
            return [_tick_dec.decode(row[0]) for row in reversed(rows)]

        return await self._run(f"read of {symbol} archived ticks", read)

    async def add_deadletters(
        self, letters: Sequence[DeadLetter], *, keys: Sequence[str | None] | None = None
    ) -> None:
        if keys is None:
            keys = [None] * len(letters)
        elif len(keys) != len(letters):
            raise ValueError(f"{len(keys)} keys for {len(letters)} dead letters")
        rows = [(d.reason, d.source, d.ts_ms, d.raw, k) for d, k in zip(letters, keys, strict=True)]
        if not rows:
            return

        def write() -> None:
            db = self._db
            db.execute("BEGIN")
            try:
                db.executemany(
                    "INSERT INTO deadletters (reason, source, ts_ms, raw, key) VALUES (?,?,?,?,?)"
                    " ON CONFLICT (key) DO NOTHING",
                    rows,
                )
                db.execute(
                    "DELETE FROM deadletters WHERE id IN (SELECT id FROM deadletters"
                    " ORDER BY ts_ms DESC, id DESC LIMIT -1 OFFSET ?)",
                    (self.max_deadletters,),
                )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

        await self._run(f"write of {len(rows)} dead letters", write)

    async def deadletters(self, *, limit: int = 100) -> list[DeadLetter]:
        letters, _ = await self.deadletter_page(limit=limit)
        return letters

    async def deadletter_page(
        self,
        *,
        limit: int = 100,
        before: str | None = None,
        source: str | None = None,
        reason: str | None = None,
    ) -> tuple[list[DeadLetter], str | None]:
        if limit < 1:
            raise ValueError(f"limit {limit}: must be >= 1")
        where: list[str] = []
        args: list[object] = []
        if before is not None:
            where.append("(ts_ms, id) < (?, ?)")
            args += _CURSOR.decode(before)
        if source is not None:
            where.append("source = ?")
            args.append(source)
        if reason is not None:  # the kind alone, or the kind and ':' (';' is the next character)
            where.append("(reason = ? OR (reason >= ? AND reason < ?))")
            args += [reason, reason + ":", reason + ";"]
        sql = "SELECT id, reason, source, ts_ms, raw FROM deadletters"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY ts_ms DESC, id DESC LIMIT ?"
        args.append(limit + 1)  # one more: is there a next page?

        def read() -> list[tuple[Any, ...]]:
            return self._db.execute(sql, args).fetchall()

        rows = await self._run("read of dead letters", read)
        letters = [DeadLetter(r[1], r[2], r[3], bytes(r[4])) for r in rows[:limit]]
        last = rows[limit - 1] if len(rows) > limit else None
        return letters, None if last is None else _CURSOR.encode(last[3], last[0])

    async def purge(self, now_ms: int) -> int:
        def purge() -> int:
            removed = 0
            for res, keep_ms in self.retention_ms.items():
                if keep_ms is None:
                    continue
                cur = self._db.execute(
                    "DELETE FROM candles WHERE res=? AND closed=1 AND end_ms < ?",
                    (res, now_ms - keep_ms),
                )
                removed += cur.rowcount
            if self.tick_archive_ms is not None:
                cur = self._db.execute(
                    "DELETE FROM ticks WHERE ts_ms < ?", (now_ms - self.tick_archive_ms,)
                )
                removed += cur.rowcount
            return removed

        removed = await self._run("purge", purge)
        if removed:
            log.info("purged %d candles past retention", removed)
        return removed

    async def close(self) -> None:
        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await self._run("close", close)
        self._pool.shutdown(wait=True)
