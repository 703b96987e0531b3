"""The MongoDB store (pymongo's ``AsyncMongoClient``): the distributed backend of ``Store``.

Collections, created with their indexes by ``open``:

- ``candles``: one document per ``(symbol, res, start_ms)``, whose ``_id`` is that key as a
  string, so an upsert is a replace by ``_id``; a unique index on the three fields as well.
  Closed candles carry ``expire_at`` (their end plus their resolution's retention) and a TTL
  index removes them; open candles and kept-forever resolutions have no ``expire_at``.
- ``states``: one document per symbol, what its stream worker needs to restart (see
  ``SymbolState``), written after the candles of the same batch.
- ``quotes``: the latest tick per symbol, for readers that want just the price.
- ``deadletters``: rejected input with reason and raw bytes, newest ``max_deadletters`` kept,
  keyed so that a replayed letter is stored once (``mongo_letters``).
- ``ticks`` (only with ``tick_archive_ms``): the raw tick archive, one document per tick keyed
  by ``tick_key``, each removed by a TTL index ``tick_archive_ms`` after its time.

Writes are ordered bulk replaces by key: idempotent, so replaying a batch changes nothing.
Reads use the configured read preference (``secondaryPreferred`` sends them to secondaries).
Every call is bounded by ``timeout_ms`` (``mongo_calls``): a server that cannot be reached, or
that stops answering, raises ``StoreUnavailable`` so the caller retries; anything else raises
``StoreError``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

import msgspec
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReplaceOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.read_preferences import ReadPreference, _ServerMode

from stream.contract import Candle, DeadLetter, StoreError, SymbolState, Tick, tick_key
from stream.store import DEFAULT_RETENTION_MS
from stream.store.mongo_calls import Doc, at, bounded
from stream.store.mongo_letters import MongoLetters

log = logging.getLogger(__name__)
T = TypeVar("T")

READ_PREFERENCES: dict[str, _ServerMode] = {
    "primary": ReadPreference.PRIMARY,
    "primaryPreferred": ReadPreference.PRIMARY_PREFERRED,
    "secondary": ReadPreference.SECONDARY,
    "secondaryPreferred": ReadPreference.SECONDARY_PREFERRED,
    "nearest": ReadPreference.NEAREST,
}

_CANDLE_FIELDS = Candle.__struct_fields__
_NOT_ID = {"_id": False, "expire_at": False}


class MongoStore:
    """Candles, symbol states, latest quotes and dead letters in one MongoDB database."""

    def __init__(
        self,
        client: AsyncMongoClient[Doc],
        database: str,
        *,
        retention_ms: Mapping[str, int | None] = DEFAULT_RETENTION_MS,
        max_deadletters: int = 100_000,
        read_preference: str = "primary",
        tick_archive_ms: int | None = None,
        timeout_ms: int = 5_000,
    ) -> None:
        if timeout_ms <= 0:
            raise ValueError(f"timeout_ms {timeout_ms}: must be > 0")
        if read_preference not in READ_PREFERENCES:
            raise ValueError(
                f"read preference {read_preference!r}: use one of {', '.join(READ_PREFERENCES)}"
            )
        self.client = client
        self.read_preference = read_preference
        self.retention_ms = dict(retention_ms)
        self.max_deadletters = max_deadletters
        self.tick_archive_ms = tick_archive_ms
        self.timeout_ms = timeout_ms  # the bound on every call, socket timeout included
        db: AsyncDatabase[Doc] = client.get_database(database)
        reads = READ_PREFERENCES[read_preference]
        self.db = db
        self._candles: AsyncCollection[Doc] = db.get_collection("candles")
        self._candles_read = self._candles.with_options(read_preference=reads)
        self._states: AsyncCollection[Doc] = db.get_collection("states")
        self._quotes: AsyncCollection[Doc] = db.get_collection("quotes")
        letters: AsyncCollection[Doc] = db.get_collection("deadletters")
        self._letters = MongoLetters(
            letters,
            letters.with_options(read_preference=reads),
            max_deadletters=max_deadletters,
            timeout_ms=timeout_ms,
        )
        self._ticks: AsyncCollection[Doc] = db.get_collection("ticks")
        self._ticks_read = self._ticks.with_options(read_preference=reads)

    @classmethod
    async def open(
        cls,
        uri: str,
        *,
        database: str = "pricestream",
        retention_ms: Mapping[str, int | None] = DEFAULT_RETENTION_MS,
        max_deadletters: int = 100_000,
        read_preference: str = "primary",
        timeout_ms: int = 5_000,
        tick_archive_ms: int | None = None,
    ) -> MongoStore:
        """Connect to ``uri`` and create the collections' indexes (idempotent)."""
        client: AsyncMongoClient[Doc] = AsyncMongoClient(
            uri,
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
            socketTimeoutMS=timeout_ms,  # a server that stops answering mid-call
            tz_aware=True,
        )
        store = cls(
            client,
            database,
            retention_ms=retention_ms,
            max_deadletters=max_deadletters,
            read_preference=read_preference,
            tick_archive_ms=tick_archive_ms,
            timeout_ms=timeout_ms,
        )
        try:
            await store._run("index creation", store._create_indexes)
            await store._letters.key_old()
        except BaseException:
            await client.close()
            raise
        return store

    async def _create_indexes(self) -> None:
        await self._candles.create_index(
            [("symbol", ASCENDING), ("res", ASCENDING), ("start_ms", ASCENDING)],
            unique=True,
            name="candle_key",
        )
        await self._candles.create_index("expire_at", expireAfterSeconds=0, name="retention")
        await self._letters.create_indexes()
        if self.tick_archive_ms is not None:
            await self._ticks.create_index([("symbol", ASCENDING), ("ts_ms", ASCENDING)],
                                           name="by_time")  # fmt: skip
            await self._ticks.create_index("expire_at", expireAfterSeconds=0, name="retention")

    async def _run(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        return await bounded(what, call, timeout_ms=self.timeout_ms)

    def _candle_doc(self, c: Candle) -> Doc:
        doc: Doc = {
            "_id": f"{c.symbol}|{c.res}|{c.start_ms}",
            "symbol": c.symbol, "res": c.res, "start_ms": c.start_ms, "end_ms": c.end_ms,
            "open": c.open, "high": c.high, "low": c.low, "close": c.close, "ticks": c.ticks,
            "first_ts_ms": c.first_ts_ms, "last_ts_ms": c.last_ts_ms, "closed": c.closed,
        }  # fmt: skip
        keep_ms = self.retention_ms.get(c.res)
        if c.closed and keep_ms is not None:
            doc["expire_at"] = at(c.end_ms + keep_ms)
        return doc

    async def write(self, candles: Sequence[Candle], states: Sequence[SymbolState]) -> None:
        candle_ops = [ReplaceOne({"_id": d["_id"]}, d, upsert=True)
                      for d in map(self._candle_doc, candles)]  # fmt: skip
        state_ops = []
        quote_ops = []
        for s in states:
            doc = msgspec.to_builtins(s)
            doc["_id"] = doc.pop("symbol")
            state_ops.append(ReplaceOne({"_id": s.symbol}, doc, upsert=True))
            if s.latest is not None:
                quote = doc["latest"]
                quote["_id"] = s.symbol
                quote["updated_at"] = at(s.latest.recv_ms)
                quote_ops.append(ReplaceOne({"_id": s.symbol}, quote, upsert=True))

        async def write() -> None:
            # In this order: a state never claims a position whose candles are not stored yet.
            if candle_ops:
                await self._candles.bulk_write(candle_ops, ordered=True)
            if state_ops:
                await self._states.bulk_write(state_ops, ordered=True)
            if quote_ops:
                await self._quotes.bulk_write(quote_ops, ordered=True)

        await self._run(f"write of {len(candle_ops)} candles, {len(state_ops)} states", write)

    async def candles(
        self,
        symbol: str,
        res: str,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 500,
    ) -> list[Candle]:
        span: Doc = {}
        if start_ms is not None:
            span["$gte"] = start_ms
        if end_ms is not None:
            span["$lt"] = end_ms
        query: Doc = {"symbol": symbol, "res": res}
        if span:
            query["start_ms"] = span

        async def read() -> list[Doc]:
            cursor = self._candles_read.find(query, _NOT_ID).sort("start_ms", DESCENDING)
            return await cursor.limit(limit).to_list()

        docs = await self._run(f"read of {symbol} {res} candles", read)
        out = [Candle(*(d[f] for f in _CANDLE_FIELDS)) for d in docs]
        out.reverse()
        return out

    async def state(self, symbol: str) -> SymbolState | None:
        doc = await self._run(f"read of {symbol} state", lambda: self._states.find_one(symbol))
        return None if doc is None else _state(doc)

    async def states(self) -> list[SymbolState]:
        async def read() -> list[Doc]:
            return await self._states.find({}).sort("_id", ASCENDING).to_list()

        return [_state(doc) for doc in await self._run("read of states", read)]

    async def archive_ticks(self, ticks: Sequence[Tick]) -> None:
        keep_ms = self.tick_archive_ms
        if keep_ms is None:
            raise StoreError("mongodb store was opened without a tick archive")
        ops = []
        for t in ticks:
            doc = msgspec.to_builtins(t)
            doc["_id"] = tick_key(t)
            doc["expire_at"] = at(t.ts_ms + keep_ms)
            ops.append(ReplaceOne({"_id": doc["_id"]}, doc, upsert=True))
        if not ops:
            return

        async def write() -> None:
            await self._ticks.bulk_write(ops, ordered=True)

        await self._run(f"archive of {len(ops)} ticks", write)

    async def archived_ticks(
        self,
        symbol: str,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 1_000,
    ) -> list[Tick]:
        span: Doc = {}
        if start_ms is not None:
            span["$gte"] = start_ms
        if end_ms is not None:
            span["$lt"] = end_ms
        query: Doc = {"symbol": symbol}
        if span:
            query["ts_ms"] = span

        async def read() -> list[Doc]:
            cursor = self._ticks_read.find(query, _NOT_ID)
            cursor = cursor.sort([("ts_ms", DESCENDING), ("_id", DESCENDING)])
            return await cursor.limit(limit).to_list()

        docs = await self._run(f"read of {symbol} archived ticks", read)
        try:
            return [msgspec.convert(d, Tick) for d in reversed(docs)]
        except msgspec.ValidationError as exc:
            raise StoreError(f"mongodb archived tick of {symbol} is not valid: {exc}") from exc

    async def add_deadletters(
        self, letters: Sequence[DeadLetter], *, keys: Sequence[str | None] | None = None
    ) -> None:
        await self._letters.add(letters, keys=keys)

    async def deadletters(self, *, limit: int = 100) -> list[DeadLetter]:
        letters, _ = await self._letters.page(limit=limit)
        return letters

    async def deadletter_page(
        self,
        *,
        limit: int = 100,
        before: str | None = None,
        source: str | None = None,
        reason: str | None = None,
    ) -> tuple[list[DeadLetter], str | None]:
        return await self._letters.page(limit=limit, before=before, source=source, reason=reason)

    async def purge(self, now_ms: int) -> int:
        """Delete what is past its ``expire_at`` now; MongoDB's TTL monitor does the same, later.

        Candles stored before a retention change keep the expiry they were written with.
        """

        async def purge() -> int:
            expired = {"expire_at": {"$lt": at(now_ms)}}
            result = await self._candles.delete_many(expired)
            removed = int(result.deleted_count)
            if self.tick_archive_ms is not None:
                removed += int((await self._ticks.delete_many(expired)).deleted_count)
            return removed

        removed = await self._run("purge", purge)
        if removed:
            log.info("purged %d candles past retention", removed)
        return removed

    async def close(self) -> None:
        await self.client.close()


def _state(doc: Doc) -> SymbolState:
    doc = dict(doc)
    doc["symbol"] = doc.pop("_id")
    try:
        return msgspec.convert(doc, SymbolState)
    except msgspec.ValidationError as exc:
        raise StoreError(f"mongodb state of {doc['symbol']} is not valid: {exc}") from exc
