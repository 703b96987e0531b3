"""Server-Sent Events with a real aiohttp client: the same messages, ``Last-Event-ID`` resume."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from tests.web.live_server import LiveServer, live_server
from web.live import MAX_SEQ, LiveConfig
from web.sse import parse_last_event_id

CH = "ticks:XAU-USD"


@dataclass
class Event:
    id: str | None
    data: Any


async def events(resp: aiohttp.ClientResponse, count: int, timeout_s: float = 5) -> list[Event]:
    """The next ``count`` events with data; comments and ``retry`` lines are skipped."""
    out: list[Event] = []
    event_id: str | None = None
    data: list[str] = []
    while len(out) < count:
        line = (await asyncio.wait_for(resp.content.readline(), timeout_s)).decode()
        if not line:
            raise AssertionError(f"the stream ended after {len(out)} events")
        line = line.rstrip("\n")
        if line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("data: "):
            data.append(line[6:])
        elif line == "" and data:
            out.append(Event(event_id, orjson.loads("\n".join(data))))
            event_id, data = None, []
    return out


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with live_server(tmp_path, LiveConfig(history_messages=100)) as s:
        await s.ticks(range(1, 11))
        await s.seq_reached(CH, 10)
        yield s


async def test_stream_gives_the_websocket_messages_with_resumable_ids(server: LiveServer) -> None:
    url = server.url + f"api/v1/stream?channels={CH}"
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        (snap,) = await events(resp, 1)
        assert snap.data["type"] == "snapshot"
        assert snap.data["seq"] == 10
        assert snap.id == f"{CH}=10"
        await server.ticks(range(11, 14))
        got = await events(resp, 3)
        assert [e.data["seq"] for e in got] == [11, 12, 13]
        assert [e.id for e in got] == [f"{CH}=11", f"{CH}=12", f"{CH}=13"]


async def test_last_event_id_resumes_exactly_after_a_dropped_connection(
    server: LiveServer,
) -> None:
    both = f"{CH},ticks:XAG-USD"
    await server.ticks(range(1, 6), symbol="XAG-USD")
    await server.seq_reached("ticks:XAG-USD", 5)
    url = server.url + f"api/v1/stream?channels={both}"
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as resp:
            await events(resp, 2)  # the two snapshots
            await server.ticks(range(11, 16))
            last = (await events(resp, 5))[-1]
        assert last.id == f"{CH}=15,ticks:XAG-USD=5"
        await server.ticks(range(16, 31))  # while the client is away
        await server.ticks(range(6, 9), symbol="XAG-USD")
        await server.seq_reached(CH, 30)
        await server.seq_reached("ticks:XAG-USD", 8)
        async with http.get(url, headers={"Last-Event-ID": last.id}) as resp:
            got = await events(resp, 2 + 15 + 3)
            heads = [e.data for e in got if e.data["type"] == "subscribed"]
            assert {(h["channel"], h["seq"], h["missed"]) for h in heads} == {
                (CH, 15, 15),
                ("ticks:XAG-USD", 5, 3),
            }
            assert all(h["recovered"] is True for h in heads)
            gold = [e.data["seq"] for e in got if e.data.get("channel") == CH][1:]
            silver = [e.data["seq"] for e in got if e.data.get("channel") == "ticks:XAG-USD"][1:]
            assert gold == list(range(16, 31))
            assert silver == [6, 7, 8]
            assert got[-1].id is not None
            assert f"{CH}=30" in got[-1].id


@pytest.mark.parametrize(
    ("query", "headers", "status", "words"),
    [
        ("", {}, 400, "channels parameter is required"),
        ("?channels=quotes:XAU-USD", {}, 400, "is not 'ticks:SYMBOL'"),
        ("?channels=ticks:XXX-USD", {}, 404, "no prices"),
        (f"?channels={CH}&max_hz=0", {}, 400, "max_hz"),
        (f"?channels={CH}", {"Last-Event-ID": "garbage"}, 400, "Last-Event-ID"),
    ],
)
async def test_a_bad_stream_request_is_a_json_error(
    server: LiveServer, query: str, headers: dict[str, str], status: int, words: str
) -> None:
    url = server.url + "api/v1/stream" + query
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        assert resp.status == status
        body = await resp.json()
        assert words in body["error"]["message"]
    assert not server.hub.clients


@pytest.mark.parametrize(
    ("raw", "since"),
    [
        (None, {}),
        ("", {}),
        (f"{CH}=0", {CH: 0}),
        (f"{CH}=1041, candles:XAU-USD:1m=377", {CH: 1041, "candles:XAU-USD:1m": 377}),
        (f"{CH}={MAX_SEQ}", {CH: MAX_SEQ}),
        (f"{CH}=007", {CH: 7}),
    ],
)
def test_last_event_id_parses_to_the_seq_of_each_channel(
    raw: str | None, since: dict[str, int]
) -> None:
    assert parse_last_event_id(raw) == since


@pytest.mark.parametrize(
    "raw",
    [
        f"{CH}=\u00b2",  # str.isdigit() says yes
        f"{CH}=\u0663",  # int() reads it as 3
        f"{CH}=\uff17",  # a fullwidth 7
        f"{CH}=" + "9" * 5_000,  # past Python's int string limit
        f"{CH}={MAX_SEQ + 1}",
        f"{CH}=99999999999999999999",
        f"{CH}=-1",
        f"{CH}=+1",
        f"{CH}=1_0",
        f"{CH}=1 0",
        f"{CH}=",
        "=5",
        CH,
        f"{CH}=1,,",
    ],
)
def test_a_last_event_id_that_is_not_small_ascii_numbers_is_a_400(raw: str) -> None:
    with pytest.raises(web.HTTPBadRequest) as refused:
        parse_last_event_id(raw)
    assert refused.value.text is not None
    assert "the bad part" in refused.value.text
    assert len(refused.value.text) < 300
