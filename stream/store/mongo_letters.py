"""The dead letters of the MongoDB store: keyed inserts, a size cap, newest-first pages.

Each document's ``_id`` and ``key`` are the letter's key: the one the archive gives (its bus
position; inserted only if absent, so a replayed letter is stored once), or a fresh id for a
letter without one. Only the newest ``max_deadletters`` are kept. Newest first is
``(ts_ms, key)`` descending (index ``newest_first``): ``key`` rather than ``_id``, which is an
ObjectId in letters stored before keys, and ObjectIds and strings do not compare. ``key_old``,
run by the store's ``open``, gives such older letters their ``key`` (their ``_id`` as text). A
page ends with an opaque cursor, the ``(ts_ms, key)`` of its last letter.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, InsertOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection

from stream.contract import DeadLetter
from stream.store.cursor import PageCursor
from stream.store.mongo_calls import Doc, bounded

log = logging.getLogger(__name__)
T = TypeVar("T")

_NEWEST_FIRST = [("ts_ms", DESCENDING), ("key", DESCENDING)]
_OLDEST_FIRST = [("ts_ms", ASCENDING), ("key", ASCENDING)]
#: Letters stored before keys are given theirs this many per call.
_KEYING_BATCH = 1_000


#: A page cursor: the ``(ts_ms, key)`` of the last letter of the page before.
_CURSOR: PageCursor[str] = PageCursor(str, "dead-letter cursor")


class MongoLetters:
    """The ``deadletters`` collection; ``reads`` is it with the store's read preference."""

    def __init__(
        self,
        collection: AsyncCollection[Doc],
        reads: AsyncCollection[Doc],
        *,
        max_deadletters: int,
        timeout_ms: int,
    ) -> None:
        self.collection = collection
        self.reads = reads
        self.max_deadletters = max_deadletters
        self.timeout_ms = timeout_ms

    async def create_indexes(self) -> None:
        await self.collection.create_index(_NEWEST_FIRST, name="newest_first")

    async def key_old(self) -> None:
        """Give the letters stored before keys their ``key``: their ``_id`` as text.

        A batch per call (each bounded by ``timeout_ms``); any number of processes may do it at
        once, as they set the same values.
        """
        missing = {"key": {"$exists": False}}

        async def count() -> int:
            return await self.collection.count_documents(missing)

        async def key_some() -> int:
            docs = await self.collection.find(missing, {"_id": True}).limit(_KEYING_BATCH).to_list()
            ops = [UpdateOne({"_id": d["_id"]}, {"$set": {"key": str(d["_id"])}}) for d in docs]
            if ops:
                await self.collection.bulk_write(ops, ordered=False)
            return len(ops)

        left = await self._run("count of dead letters without a key", count)
        if left:
            log.info("giving %d dead letters stored before keys their key", left)
        for _ in range(-(-left // _KEYING_BATCH)):  # no more rounds than there were letters
            if not await self._run("keying of dead letters stored before keys", key_some):
                break

    async def _run(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        return await bounded(what, call, timeout_ms=self.timeout_ms)

    async def add(
        self, letters: Sequence[DeadLetter], *, keys: Sequence[str | None] | None = None
    ) -> None:
        if keys is None:
            keys = [None] * len(letters)
        elif len(keys) != len(letters):
            raise ValueError(f"{len(keys)} keys for {len(letters)} dead letters")
        if not letters:
            return
        ops: list[InsertOne[Doc] | UpdateOne] = []
        for d, key in zip(letters, keys, strict=True):
            doc = {"reason": d.reason, "source": d.source, "ts_ms": d.ts_ms, "raw": d.raw}
            if key is None:
                ident = str(ObjectId())
                ops.append(InsertOne({"_id": ident, "key": ident, **doc}))
            else:  # stored once: a letter already there is left as it is
                doc["key"] = key
                ops.append(UpdateOne({"_id": key}, {"$setOnInsert": doc}, upsert=True))

        async def write() -> None:
            await self.collection.bulk_write(ops, ordered=True)
            excess = await self.collection.count_documents({}) - self.max_deadletters
            if excess > 0:
                oldest = self.collection.find({}, {"_id": True}).sort(_OLDEST_FIRST)
                ids = [d["_id"] for d in await oldest.limit(excess).to_list()]
                await self.collection.delete_many({"_id": {"$in": ids}})

        await self._run(f"write of {len(ops)} dead letters", write)

    async def page(
        self,
        *,
        limit: int = 100,
        before: str | None = None,
        source: str | None = None,
        reason: str | None = None,
    ) -> tuple[list[DeadLetter], str | None]:
        if limit < 1:
            raise ValueError(f"limit {limit}: must be >= 1")
        where: list[Doc] = []
        if before is not None:
            ts_ms, key = _CURSOR.decode(before)
            where.append(
                {"$or": [{"ts_ms": {"$lt": ts_ms}}, {"ts_ms": ts_ms, "key": {"$lt": key}}]}
            )
        if source is not None:
            where.append({"source": source})
        if reason is not None:  # the kind alone, or the kind and ':' (';' is the next character)
            kind: Doc = {"$gte": reason + ":", "$lt": reason + ";"}
            where.append({"$or": [{"reason": reason}, {"reason": kind}]})
        query: Doc = {"$and": where} if where else {}

        async def read() -> list[Doc]:
            cursor = self.reads.find(query).sort(_NEWEST_FIRST)
            return await cursor.limit(limit + 1).to_list()  # one more: is there a next page?

        docs = await self._run("read of dead letters", read)
        letters = [
            DeadLetter(d["reason"], d["source"], int(d["ts_ms"]), bytes(d["raw"]))
            for d in docs[:limit]
        ]  # fmt: skip (bson's Int64 for large numbers: an int)
        if len(docs) <= limit:
            return letters, None
        last = docs[limit - 1]  # a letter an older version stored has no key until an open
        return letters, _CURSOR.encode(int(last["ts_ms"]), last.get("key", str(last["_id"])))
