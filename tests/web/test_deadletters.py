"""``GET /api/v1/deadletters``: pages and filters over real sockets.

Against a real web app and SQLite store, with letters put in through the store; then the whole
embedded service, whose dead letters come from the bad rows of a replayed tape.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from stream.contract import DeadLetter
from tests.conftest import embedded_service
from tests.web.live_server import LiveServer, live_server
from web.auth import AuthConfig
from web.keys import STORE
from web.live import LiveConfig

KEY = "k-deadletters-5c2e"
T0 = 1_795_000_000_000

#: (reason, source), oldest first; every third shares its time with the one before.
KINDS = [
    ("crossed quote: bid 2 > ask 1", "vendor:alpha"),
    ("unparsable: not JSON", "vendor:beta"),
    ("late: by 80 ms", "stream:ticks"),
    ("seq jump: 2000000 after 5", "vendor:alpha"),
    ("crossed quote: bid 3 > ask 2", "vendor:beta"),
    ("crossed quotes: another kind", "vendor:alpha"),
    ("late", "vendor:alpha"),
]


def letters(n: int) -> list[DeadLetter]:
    out = []
    for i in range(n):
        reason, source = KINDS[i % len(KINDS)]
        out.append(DeadLetter(reason, source, T0 + i - i // 3, b"raw %d \xff" % i))
    return out


def shown(d: DeadLetter) -> dict[str, object]:
    return {"reason": d.reason, "source": d.source, "ts_ms": d.ts_ms,
            "raw": d.raw.decode("utf-8", "replace")}  # fmt: skip


def newest_first(planted: list[DeadLetter]) -> list[dict[str, object]]:
    """In the order of the API, for letters stored in one batch: time, then the later stored."""
    order = sorted(range(len(planted)), key=lambda i: (planted[i].ts_ms, i), reverse=True)
    return [shown(planted[i]) for i in order]


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with live_server(tmp_path, LiveConfig(), auth=AuthConfig(api_keys=(KEY,))) as s:
        yield s


async def get(url: str, params: dict[str, str], *, key: str | None = KEY) -> tuple[int, Any]:
    headers = {} if key is None else {"X-API-Key": key}
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.get(url + "api/v1/deadletters", params=params) as resp,
    ):
        return resp.status, await resp.json()


async def every_page(url: str, params: dict[str, str]) -> list[list[dict[str, Any]]]:
    """The pages from the newest, following ``next`` until it is null."""
    pages = []
    query = dict(params)
    for _ in range(1_000):
        status, body = await get(url, query)
        assert status == 200, body
        assert set(body) == {"letters", "next"}
        pages.append(body["letters"])
        if body["next"] is None:
            return pages
        query["before"] = body["next"]
    raise AssertionError("no last page")


async def test_the_newest_hundred_come_first_with_the_cursor_of_the_rest(
    server: LiveServer,
) -> None:
    planted = letters(130)
    await server.app[STORE].add_deadletters(planted)
    status, body = await get(server.url, {})
    assert status == 200
    assert body["letters"] == newest_first(planted)[:100]
    assert isinstance(body["next"], str)
    status, rest = await get(server.url, {"before": body["next"]})
    assert (status, rest) == (200, {"letters": newest_first(planted)[100:], "next": None})


@pytest.mark.parametrize("limit", [1, 6, 29, 1_000])
async def test_following_next_gives_every_letter_once_newest_first(
    server: LiveServer, limit: int
) -> None:
    planted = letters(29)
    await server.app[STORE].add_deadletters(planted)
    pages = await every_page(server.url, {"limit": str(limit)})
    assert [len(page) for page in pages] == [min(limit, 29 - i) for i in range(0, 29, limit)]
    assert [d for page in pages for d in page] == newest_first(planted)


@pytest.mark.parametrize(
    ("params", "wanted"),
    [
        ({"vendor": "alpha"}, lambda r, s: s == "vendor:alpha"),
        ({"source": "stream:ticks"}, lambda r, s: s == "stream:ticks"),
        ({"source": "vendor:"}, lambda r, s: False),
        ({"reason": "crossed quote"}, lambda r, s: r.startswith("crossed quote:")),
        ({"reason": "late"}, lambda r, s: r.split(":")[0] == "late"),
        ({"reason": "seq jump"}, lambda r, s: r.startswith("seq jump:")),
        ({"reason": "crossed"}, lambda r, s: False),
        ({"reason": "late", "vendor": "alpha"}, lambda r, s: r == "late"),
        ({"vendor": "beta", "source": "vendor:beta"}, lambda r, s: s == "vendor:beta"),
        ({"vendor": "beta", "source": "vendor:alpha"}, lambda r, s: False),
    ],
)
async def test_vendor_source_and_reason_kind_filter_every_page(
    server: LiveServer, params: dict[str, str], wanted: Any
) -> None:
    planted = letters(40)
    await server.app[STORE].add_deadletters(planted)
    pages = await every_page(server.url, {"limit": "3", **params})
    expected = [d for d in newest_first(planted) if wanted(d["reason"], d["source"])]
    assert [d for page in pages for d in page] == expected
    assert all(len(page) == 3 for page in pages[:-1])


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"limit": "0"}, "limit must be between 1 and 1000, got 0"),
        ({"limit": "1001"}, "limit must be between 1 and 1000"),
        ({"limit": "ten"}, "limit must be an integer, got 'ten'"),
        ({"limit": ""}, "limit must be an integer, got ''"),
        ({"before": ""}, "before must be 1 to 200 characters, got ''"),
        ({"before": "not-a-cursor"}, "before must be the next of an earlier page"),
        ({"before": "eyJ0c19tcyI6IDF9"}, "before must be the next of an earlier page"),
        ({"before": "x" * 201}, "before must be 1 to 200 characters"),
        ({"vendor": ""}, "vendor must be 1 to 200 characters, got ''"),
        ({"source": "s" * 201}, "source must be 1 to 200 characters"),
        ({"reason": ""}, "reason must be 1 to 200 characters, got ''"),
        ({"reason": "crossed quote: bid 2"}, "reason is a reason's kind, the text before"),
        # a vendor and another source match nothing, but the cursor is checked all the same
        (
            {"vendor": "a", "source": "vendor:b", "before": "not-a-cursor"},
            "before must be the next of an earlier page",
        ),
    ],
)
async def test_a_bad_parameter_is_a_400_that_names_it(
    server: LiveServer, params: dict[str, str], words: str
) -> None:
    await server.app[STORE].add_deadletters(letters(3))
    status, body = await get(server.url, params)
    assert status == 400, body
    assert words in body["error"]["message"]


async def test_without_credentials_it_is_a_401_whatever_the_parameters(
    server: LiveServer,
) -> None:
    for params in ({}, {"limit": "0"}, {"before": "not-a-cursor"}, {"vendor": "alpha"}):
        status, body = await get(server.url, params, key=None)
        assert status == 401, (params, body)
        assert "credentials required" in body["error"]["message"]


TAPE_T0 = 1_790_000_000_000


async def test_the_bad_rows_of_a_replayed_tape_are_listed_by_vendor_and_reason_kind(
    tmp_path: Path,
) -> None:
    """Ingest rejects them, the archive stores them, and the API pages through them."""
    rows = [f"XAU-USD,{TAPE_T0 + i * 1_000},2000.0,2000.5,2000.2" for i in range(30)]
    crossed = {i: f"XAU-USD,{TAPE_T0 + i * 1_000},2001.0,2000.5,2000.7" for i in (3, 11, 19)}
    unparsable = {i: f"XAU-USD,{TAPE_T0 + i * 1_000},2000.0" for i in (7, 23)}
    rows = [crossed.get(i) or unparsable.get(i) or row for i, row in enumerate(rows)]
    tape = tmp_path / "tape.csv"
    tape.write_text("symbol,ts_ms,bid,ask,price\n" + "\n".join(rows) + "\n")
    config = tmp_path / "vendors.toml"
    config.write_text(f'[[vendors]]\nname = "tape"\nkind = "replay"\npath = "{tape}"\nspeed = 0\n')
    async with embedded_service(
        tmp_path / "data", config=config, auth={"api_keys": KEY}
    ) as service:
        async with asyncio.timeout(20):
            while True:
                status, body = await get(service.url, {"vendor": "tape", "limit": "100"})
                assert status == 200, body
                if len(body["letters"]) >= 5:
                    break
                await asyncio.sleep(0.1)
        pages = await every_page(service.url, {"vendor": "tape", "reason": "crossed quote",
                                               "limit": "2"})  # fmt: skip
        got = [d for page in pages for d in page]
        assert [d["raw"] for d in got] == [crossed[i] for i in (19, 11, 3)]
        assert all(d["reason"].startswith("crossed quote: ") for d in got)
        pages = await every_page(service.url, {"vendor": "tape", "reason": "unparsable"})
        assert sorted(d["raw"] for d in pages[0]) == sorted(unparsable.values())
        status, body = await get(service.url, {"vendor": "simulator"})
        assert (status, body) == (200, {"letters": [], "next": None})
