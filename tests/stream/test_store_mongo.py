"""What the MongoDB store does beyond the shared contract, against nx-27017 and the real driver."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stream.contract import Candle, DeadLetter, StoreUnavailable, SymbolState, Tick
from stream.contract.resolutions import DAY_MS, MINUTE_MS
from stream.retry import while_unavailable
from stream.store.mongo import MongoStore
from tests.services.mongo import MongoServer
from tests.tcp_proxy import TcpProxy, tcp_proxy

T0 = 4_102_444_800_000  # 2100-01-01, out of the TTL monitor's reach


def candle(start_ms: int, *, res: str = "1m", closed: bool = True) -> Candle:
    return Candle("XAU-USD", res, start_ms, start_ms + MINUTE_MS, 1.0, 3.0, 0.5, 2.0, 3,
                  start_ms + 1, start_ms + 59_000, closed)  # fmt: skip


@pytest.fixture
async def store(mongo_server: MongoServer) -> AsyncIterator[MongoStore]:
    s = await MongoStore.open(
        mongo_server.uri,
        database=f"m{uuid.uuid4().hex[:12]}",
        retention_ms={"1m": DAY_MS, "1d": None},
        read_preference="secondaryPreferred",
    )
    yield s
    await s.close()


async def test_open_creates_the_unique_candle_key_and_the_retention_ttl_index(
    store: MongoStore,
) -> None:
    indexes = await store.db.get_collection("candles").index_information()
    keys = {tuple(k for k, _ in info["key"]): info for info in indexes.values()}
    assert keys[("symbol", "res", "start_ms")]["unique"] is True
    assert keys[("expire_at",)]["expireAfterSeconds"] == 0


async def test_closed_candles_expire_after_their_resolution_retention_open_ones_never(
    store: MongoStore,
) -> None:
    await store.write([candle(T0), candle(T0 + MINUTE_MS, closed=False), candle(T0, res="1d")], [])
    docs = {d["_id"]: d async for d in store.db.get_collection("candles").find({})}
    closed = docs[f"XAU-USD|1m|{T0}"]
    expected = dt.datetime.fromtimestamp((T0 + MINUTE_MS + DAY_MS) / 1000, dt.UTC)
    assert closed["expire_at"] == expected
    assert "expire_at" not in docs[f"XAU-USD|1m|{T0 + MINUTE_MS}"]
    assert "expire_at" not in docs[f"XAU-USD|1d|{T0}"]  # kept forever


async def test_quotes_hold_the_latest_tick_per_symbol_for_plain_readers(store: MongoStore) -> None:
    tick = Tick("XAU-USD", "sim-alpha", 2400.1, 2400.5, 2400.3, T0, T0 + 4, None, 17)
    await store.write([], [SymbolState("XAU-USD", tick, T0, 5, {"ticks": 1}, [])])
    quote = await store.db.get_collection("quotes").find_one("XAU-USD")
    assert quote is not None
    assert (quote["bid"], quote["ask"], quote["price"], quote["vendor"]) == (
        2400.1, 2400.5, 2400.3, "sim-alpha",
    )  # fmt: skip
    assert quote["ts_ms"] == T0


async def test_letters_stored_before_keys_get_theirs_at_open_and_sort_with_keyed_ones(
    mongo_server: MongoServer,
) -> None:
    """They have ObjectId ``_id``s, which do not compare with the keyed letters' strings."""
    database = f"k{uuid.uuid4().hex[:12]}"
    old = [DeadLetter("late", "vendor:x", T0 + i, b"old %d" % i) for i in range(3)]
    client = mongo_server.client()
    try:
        collection = client.get_database(database).get_collection("deadletters")
        await collection.insert_many(
            [{"reason": d.reason, "source": d.source, "ts_ms": d.ts_ms, "raw": d.raw} for d in old]
        )
        store = await MongoStore.open(mongo_server.uri, database=database, max_deadletters=3)
        try:
            docs = await collection.find({}).to_list()
            assert sorted(d["key"] for d in docs) == sorted(str(d["_id"]) for d in docs)
            new = DeadLetter("late", "vendor:x", T0 + 5, b"new")
            await store.add_deadletters([new], keys=["deadletter:0:0"])
            assert await store.deadletters(limit=10) == [new, old[2], old[1]]  # the oldest trimmed
        finally:
            await store.close()
    finally:
        await client.close()


async def test_reads_use_the_configured_read_preference(store: MongoStore) -> None:
    assert store.read_preference == "secondaryPreferred"
    await store.write([candle(T0)], [])
    assert await store.candles("XAU-USD", "1m") == [candle(T0)]


async def test_an_unknown_read_preference_is_refused_with_the_choices(
    mongo_server: MongoServer,
) -> None:
    with pytest.raises(ValueError, match="secondaryPreferred"):
        await MongoStore.open(mongo_server.uri, read_preference="secondaries")


async def test_an_unreachable_server_raises_store_unavailable_so_callers_retry(
    tmp_path: Path,
) -> None:
    async with MongoServer(tmp_path) as mongo:
        store = await MongoStore.open(mongo.uri, database="down", timeout_ms=500)
        try:
            await store.write([candle(T0)], [])
            await mongo.stop()
            with pytest.raises(StoreUnavailable, match="write of 1 candles"):
                await store.write([candle(T0 + MINUTE_MS)], [])
            await mongo.start()
            await store.write([candle(T0 + MINUTE_MS)], [])
            assert len(await store.candles("XAU-USD", "1m")) == 2
        finally:
            await store.close()


@contextlib.asynccontextmanager
async def store_behind_proxy(mongo: MongoServer) -> AsyncIterator[tuple[MongoStore, TcpProxy]]:
    """A store with a 500 ms bound, talking to ``mongo`` through a proxy the test can stall.

    The driver's monitor checks the server every ``heartbeatFrequencyMS`` (10 s by default) and,
    when a check gets no answer, cancels what is in flight. So that only the store's own bound
    can end a stalled call, the checks are set 60 s apart, and the one the driver makes 0.5 s
    after it starts is let pass before the store is handed over.
    """
    async with tcp_proxy(mongo.port) as proxy:
        store = await MongoStore.open(
            f"mongodb://127.0.0.1:{proxy.port}/?directConnection=true&heartbeatFrequencyMS=60000",
            database=f"s{uuid.uuid4().hex[:12]}",
            timeout_ms=500,
        )
        try:
            await asyncio.sleep(1)
            yield store, proxy
        finally:
            proxy.resume()  # closing ends the server's sessions, which needs an answer
            await store.close()


async def test_a_stalled_server_raises_store_unavailable_instead_of_hanging_a_write(
    mongo_server: MongoServer,
) -> None:
    async with asyncio.timeout(10), store_behind_proxy(mongo_server) as (store, proxy):
        await store.write([candle(T0)], [])
        proxy.stall()
        with pytest.raises(StoreUnavailable, match="write of 1 candles") as caught:
            await store.write([candle(T0 + MINUTE_MS)], [])
        assert "500 ms" in str(caught.value)
        assert caught.value.__cause__ is not None
        proxy.resume()
        await while_unavailable("write", lambda: store.write([candle(T0 + MINUTE_MS)], []))
        assert await store.candles("XAU-USD", "1m") == [candle(T0), candle(T0 + MINUTE_MS)]


async def test_retrying_a_write_through_a_stall_stores_it_once_the_server_answers_again(
    mongo_server: MongoServer,
) -> None:
    async with asyncio.timeout(10), store_behind_proxy(mongo_server) as (store, proxy):
        await store.write([candle(T0)], [])
        failures: list[StoreUnavailable | None] = []
        failed_twice = asyncio.Event()  # it failed, waited, and failed again: still retrying

        def heard(failure: StoreUnavailable | None) -> None:
            failures.append(failure)
            if len(failures) == 2:
                failed_twice.set()

        async def write() -> None:
            await store.write([candle(T0 + MINUTE_MS)], [])

        proxy.stall()
        async with asyncio.TaskGroup() as tasks:
            retried = tasks.create_task(while_unavailable("write", write, on_failure=heard))
            await failed_twice.wait()
            assert not retried.done()
            proxy.resume()
        assert failures[-1] is None  # told that it succeeded after failing
        assert all(isinstance(f, StoreUnavailable) for f in failures[:-1])
        assert await store.candles("XAU-USD", "1m") == [candle(T0), candle(T0 + MINUTE_MS)]


async def test_closing_the_store_while_the_server_is_stalled_does_not_hang(
    mongo_server: MongoServer,
) -> None:
    async with asyncio.timeout(10), store_behind_proxy(mongo_server) as (store, proxy):
        await store.write([candle(T0)], [])
        proxy.stall()
        await store.close()  # ends the server's sessions: bounded by the socket timeout
