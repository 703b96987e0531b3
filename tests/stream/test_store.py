"""The store contract: one suite, run against every store adapter."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Protocol

import pytest

from stream.contract import Candle, DeadLetter, DecodeError, Store, SymbolState, Tick
from stream.contract.resolutions import DAY_MS, MINUTE_MS
from stream.store.mongo import MongoStore
from stream.store.sqlite import SqliteStore
from tests.services.mongo import MongoServer


class Opener(Protocol):
    def __call__(self, tmp: Path, *, max_deadletters: int = 100_000) -> Awaitable[Store]: ...


RETENTION: dict[str, int | None] = {"1m": DAY_MS, "1d": None}

#: 2100-01-01: candle times far enough ahead that MongoDB's TTL monitor never removes them while
#: a test runs, so only ``purge`` (given its own "now") decides what is past retention.
T0 = 4_102_444_800_000


@pytest.fixture(params=["sqlite", "mongo"])
def opener(request: pytest.FixtureRequest) -> Opener:
    if request.param == "sqlite":

        async def sqlite(tmp: Path, *, max_deadletters: int = 100_000) -> Store:
            return await SqliteStore.open(
                tmp / "store.db",
                retention_ms=RETENTION,
                tick_archive_ms=DAY_MS,
                max_deadletters=max_deadletters,
            )

        return sqlite
    server: MongoServer = request.getfixturevalue("mongo_server")

    async def mongo(tmp: Path, *, max_deadletters: int = 100_000) -> Store:
        # One database per test directory: reopening the same directory finds the same data.
        database = "t" + hashlib.sha1(str(tmp).encode()).hexdigest()[:16]
        return await MongoStore.open(
            server.uri,
            database=database,
            retention_ms=RETENTION,
            tick_archive_ms=DAY_MS,
            max_deadletters=max_deadletters,
        )

    return mongo


@pytest.fixture
async def store(opener: Opener, tmp_path: Path) -> AsyncIterator[Store]:
    s = await opener(tmp_path)
    yield s
    await s.close()


def candle(start_ms: int, *, symbol: str = "XAU-USD", res: str = "1m", close: float = 2.0,
           closed: bool = True, ticks: int = 3) -> Candle:  # fmt: skip
    return Candle(symbol, res, start_ms, start_ms + MINUTE_MS, 1.0, 3.0, 0.5, close, ticks,
                  start_ms + 1, start_ms + 59_000, closed)  # fmt: skip


def state(symbol: str = "XAU-USD", *, pos: int = 7, price: float = 2.5) -> SymbolState:
    tick = Tick(symbol, "v", price - 0.1, price + 0.1, price, 1_000, 1_001, None, 9)
    return SymbolState(symbol, tick, 1_000, pos, {"ticks": 4, "1m": 2}, [candle(T0, closed=False)])


async def test_written_candles_read_back_oldest_first(store: Store) -> None:
    await store.write([candle(T0 + 2 * MINUTE_MS), candle(T0), candle(T0 + MINUTE_MS)], [])
    got = await store.candles("XAU-USD", "1m")
    assert [c.start_ms for c in got] == [T0, T0 + MINUTE_MS, T0 + 2 * MINUTE_MS]
    assert got[0] == candle(T0)


async def test_upsert_replaces_a_candle_by_symbol_res_and_start(store: Store) -> None:
    await store.write([candle(T0, close=2.0, closed=False)], [])
    await store.write([candle(T0, close=2.7, closed=True, ticks=9)], [])
    assert await store.candles("XAU-USD", "1m") == [candle(T0, close=2.7, closed=True, ticks=9)]


async def test_writing_the_same_batch_twice_changes_nothing(store: Store) -> None:
    batch = [candle(T0), candle(T0 + MINUTE_MS)]
    await store.write(batch, [state()])
    await store.write(batch, [state()])
    assert await store.candles("XAU-USD", "1m") == batch
    assert await store.state("XAU-USD") == state()


async def test_candles_are_kept_apart_by_symbol_and_resolution(store: Store) -> None:
    await store.write(
        [candle(T0), candle(T0, symbol="XAG-USD", close=9.0), candle(T0, res="1d", close=5.0)], []
    )
    assert [c.close for c in await store.candles("XAG-USD", "1m")] == [9.0]
    assert [c.close for c in await store.candles("XAU-USD", "1d")] == [5.0]
    assert await store.candles("XPT-USD", "1m") == []


@pytest.mark.parametrize(
    ("start_ms", "end_ms", "limit", "expected"),
    [
        (None, None, 500, [0, 1, 2, 3, 4]),
        (2, None, 500, [2, 3, 4]),
        (None, 2, 500, [0, 1]),
        (1, 4, 500, [1, 2, 3]),
        (None, None, 2, [3, 4]),  # the newest `limit`, oldest first
        (1, 4, 1, [3]),
        (5, None, 500, []),
    ],
)
async def test_candle_range_and_limit(
    store: Store, start_ms: int | None, end_ms: int | None, limit: int, expected: list[int]
) -> None:
    await store.write([candle(T0 + i * MINUTE_MS) for i in range(5)], [])
    got = await store.candles(
        "XAU-USD",
        "1m",
        start_ms=None if start_ms is None else T0 + start_ms * MINUTE_MS,
        end_ms=None if end_ms is None else T0 + end_ms * MINUTE_MS,
        limit=limit,
    )
    assert [(c.start_ms - T0) // MINUTE_MS for c in got] == expected


async def test_symbol_state_round_trips_and_is_replaced(store: Store) -> None:
    assert await store.state("XAU-USD") is None
    await store.write([], [state(pos=1)])
    await store.write([], [state(pos=2, price=3.0)])
    assert await store.state("XAU-USD") == state(pos=2, price=3.0)


async def test_states_lists_every_symbol_in_order(store: Store) -> None:
    await store.write([], [state("XPT-USD"), state("XAG-USD"), state("XAU-USD")])
    assert [s.symbol for s in await store.states()] == ["XAG-USD", "XAU-USD", "XPT-USD"]


async def test_data_survives_closing_and_reopening(opener: Opener, tmp_path: Path) -> None:
    first = await opener(tmp_path)
    await first.write([candle(T0)], [state()])
    await first.close()
    second = await opener(tmp_path)
    try:
        assert await second.candles("XAU-USD", "1m") == [candle(T0)]
        assert await second.state("XAU-USD") == state()
    finally:
        await second.close()


async def test_purge_drops_closed_candles_past_their_retention_only(store: Store) -> None:
    now = T0 + 10 * DAY_MS
    old, recent = now - 2 * DAY_MS, now - MINUTE_MS * 10
    await store.write(
        [
            candle(old),
            candle(recent),
            candle(old + MINUTE_MS, closed=False),
            candle(old, res="1d"),  # kept forever
        ],
        [],
    )
    assert await store.purge(now) == 1
    assert [c.start_ms for c in await store.candles("XAU-USD", "1m")] == [
        old + MINUTE_MS,
        recent,
    ]
    assert len(await store.candles("XAU-USD", "1d")) == 1


async def test_dead_letters_keep_reason_source_and_raw_bytes_newest_first(store: Store) -> None:
    letters = [DeadLetter(f"reason {i}", "vendor:x", i, bytes([i, 0xFF, 0x00])) for i in range(3)]
    await store.add_deadletters(letters)
    got = await store.deadletters(limit=2)
    assert got == [letters[2], letters[1]]


def letter(i: int, *, reason: str = "late", source: str = "vendor:x") -> DeadLetter:
    return DeadLetter(f"{reason}: {i}", source, T0 + i, b"raw %d" % i)


async def test_the_same_keyed_letter_written_twice_is_stored_once(store: Store) -> None:
    letters = [letter(i) for i in range(3)]
    keys = [f"deadletter:0:{i}" for i in range(3)]
    await store.add_deadletters(letters[:2], keys=keys[:2])
    await store.add_deadletters(letters, keys=keys)  # a replay of two, and one new
    assert await store.deadletters(limit=10) == letters[::-1]


async def test_letters_without_a_key_are_stored_every_time(store: Store) -> None:
    await store.add_deadletters([letter(0), letter(1)], keys=["deadletter:0:0", None])
    await store.add_deadletters([letter(1)])
    await store.add_deadletters([letter(0), letter(1)], keys=["deadletter:0:0", None])
    assert await store.deadletters(limit=10) == [letter(1)] * 3 + [letter(0)]


async def test_keys_go_one_to_one_with_the_letters(store: Store) -> None:
    with pytest.raises(ValueError, match="2 keys for 1 dead letters"):
        await store.add_deadletters([letter(0)], keys=["deadletter:0:0", "deadletter:0:1"])
    assert await store.deadletters() == []


async def test_dead_letters_are_newest_first_by_their_time_not_by_when_stored(
    store: Store,
) -> None:
    await store.add_deadletters([letter(5), letter(1)])
    await store.add_deadletters([letter(3)], keys=["deadletter:0:9"])
    assert await store.deadletters(limit=10) == [letter(5), letter(3), letter(1)]


async def test_only_the_newest_max_deadletters_by_time_are_kept(
    opener: Opener, tmp_path: Path
) -> None:
    store = await opener(tmp_path, max_deadletters=3)
    try:
        await store.add_deadletters([letter(4), letter(0), letter(2)], keys=["a", "b", None])
        await store.add_deadletters([letter(1), letter(3)])
        assert await store.deadletters(limit=10) == [letter(4), letter(3), letter(2)]
    finally:
        await store.close()


async def all_pages(store: Store, *, limit: int, **filters: str) -> list[list[DeadLetter]]:
    pages: list[list[DeadLetter]] = []
    before: str | None = None
    while len(pages) < 100:
        page, before = await store.deadletter_page(limit=limit, before=before, **filters)
        pages.append(page)
        if before is None:
            return pages
    raise AssertionError(f"no last page: {pages[:3]}")


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 8])
async def test_pages_hold_every_letter_once_newest_first_through_equal_times(
    store: Store, limit: int
) -> None:
    # Seven letters, three at each of two times: the order among them is the store's own.
    letters = [DeadLetter(f"late: {i}", "vendor:x", T0 + i // 3, b"%d" % i) for i in range(7)]
    await store.add_deadletters(letters[:4], keys=["deadletter:0:9", None, "deadletter:0:10", None])
    await store.add_deadletters(letters[4:], keys=[None, "deadletter:0:2", "deadletter:0:11"])
    pages = await all_pages(store, limit=limit)
    assert [len(p) for p in pages] == [min(limit, 7 - i) for i in range(0, 7, limit)]
    got = [d for page in pages for d in page]
    assert sorted(got, key=lambda d: d.raw) == letters
    assert [d.ts_ms for d in got] == sorted((d.ts_ms for d in letters), reverse=True)
    assert got == await store.deadletters(limit=10)  # one order, however it is paged


async def test_no_letters_is_one_empty_page(store: Store) -> None:
    assert await store.deadletter_page() == ([], None)


#: (reason, source) of the letters the filters choose from, oldest first.
MIXED = [
    ("crossed quote: bid 2 > ask 1", "vendor:a"),
    ("crossed quote", "vendor:b"),
    ("crossed quotes: not the kind", "vendor:a"),
    ("late: by 80 ms", "stream:ticks"),
    ("late", "vendor:a"),
    ("seq jump: 9 after 1", "vendor:b"),
    ("crossed quote: bid 3 > ask 2", "vendor:a"),
    ("crossed quote:", "vendor:a:b"),
]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"source": "vendor:a"}, [6, 4, 2, 0]),
        ({"source": "vendor:"}, []),
        ({"reason": "crossed quote"}, [7, 6, 1, 0]),
        ({"reason": "late"}, [4, 3]),
        ({"reason": "crossed"}, []),
        ({"reason": "seq jump"}, [5]),
        ({"reason": "crossed quote", "source": "vendor:a"}, [6, 0]),
        ({"reason": "late", "source": "vendor:b"}, []),
    ],
)
async def test_pages_filter_by_source_and_by_the_kind_of_reason(
    store: Store, filters: dict[str, str], expected: list[int]
) -> None:
    letters = [DeadLetter(r, s, T0 + i, b"%d" % i) for i, (r, s) in enumerate(MIXED)]
    await store.add_deadletters(letters)
    pages = await all_pages(store, limit=1, **filters)
    assert [d for page in pages for d in page] == [letters[i] for i in expected]
    assert (await store.deadletter_page(limit=100, **filters))[1] is None


async def test_a_page_is_the_letters_before_the_cursor_even_after_newer_ones_came(
    store: Store,
) -> None:
    await store.add_deadletters([letter(i) for i in range(4)])
    first, cursor = await store.deadletter_page(limit=2)
    assert first == [letter(3), letter(2)]
    assert cursor is not None
    await store.add_deadletters([letter(9), letter(-1)])
    older = [letter(1), letter(0), letter(-1)]
    assert await store.deadletter_page(limit=5, before=cursor) == (older, None)


def cursor_of(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "before",
    [
        "",
        "not a cursor",
        "!!!!",
        "é",
        "A",  # one character short of a whole base64 group
        cursor_of({"ts_ms": 1}),
        cursor_of([1]),
        cursor_of([1.5, "x"]),
        cursor_of([2**63, 1]),
        cursor_of([1, None]),
        cursor_of([1, 1, 1]),
        "A" * 400,
    ],
)
async def test_a_cursor_the_store_did_not_give_is_a_decode_error(store: Store, before: str) -> None:
    await store.add_deadletters([letter(0)])
    with pytest.raises(DecodeError, match="not a dead-letter cursor"):
        await store.deadletter_page(before=before)


#: ``deadletters`` as SQLite files made before letters had keys hold it.
SQLITE_DEADLETTERS_BEFORE_KEYS = """
CREATE TABLE deadletters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    reason TEXT NOT NULL, source TEXT NOT NULL, ts_ms INTEGER NOT NULL, raw BLOB NOT NULL
);
"""


async def test_sqlite_adds_the_key_column_to_a_file_made_before_keys(tmp_path: Path) -> None:
    """SQLite only: the MongoDB store's counterpart is in ``test_store_mongo.py``."""
    path = tmp_path / "old.db"
    old = letter(0)
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(SQLITE_DEADLETTERS_BEFORE_KEYS)
        db.execute(
            "INSERT INTO deadletters (reason, source, ts_ms, raw) VALUES (?,?,?,?)",
            (old.reason, old.source, old.ts_ms, old.raw),
        )
        db.commit()
    for _ in range(2):  # the second open finds the column there
        store = await SqliteStore.open(path)
        try:
            await store.add_deadletters([letter(1)], keys=["deadletter:0:1"])
            assert await store.deadletters(limit=10) == [letter(1), old]
        finally:
            await store.close()


def raw_tick(i: int, *, symbol: str = "XAU-USD") -> Tick:
    ts = T0 + i * 1_000
    return Tick(symbol, "sim-alpha", 2400.0 + i, 2400.5 + i, 2400.25 + i, ts, ts + 3, None, i)


async def test_archived_ticks_read_back_oldest_first_and_a_replay_stores_them_once(
    store: Store,
) -> None:
    ticks = [raw_tick(i) for i in range(5)] + [raw_tick(0, symbol="XAG-USD")]
    await store.archive_ticks(ticks[3:])
    await store.archive_ticks(ticks)  # a replay of some of them
    assert await store.archived_ticks("XAU-USD") == ticks[:5]
    assert await store.archived_ticks("XAG-USD") == [ticks[5]]
    got = await store.archived_ticks("XAU-USD", start_ms=T0 + 1_000, end_ms=T0 + 4_000, limit=2)
    assert got == ticks[2:4]  # the newest `limit` in the range, oldest first


async def test_purge_drops_archived_ticks_past_the_archive_retention(store: Store) -> None:
    await store.archive_ticks([raw_tick(0), raw_tick(100_000)])
    now = T0 + 100_000 * 1_000 + 60_000  # one day after the first, one minute after the second
    assert await store.purge(now) >= 1
    assert await store.archived_ticks("XAU-USD") == [raw_tick(100_000)]
