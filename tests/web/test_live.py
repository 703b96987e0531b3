"""The /ws endpoint with a real websocket client against the whole embedded service."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from stream.contract import Candle
from tests.conftest import Service, embedded_service
from tests.web.test_api import METALS, wait_for_prices
from web.live import newest_candles


async def recv(ws: ClientConnection, timeout_s: float = 5) -> Any:
    return orjson.loads(await asyncio.wait_for(ws.recv(), timeout_s))


async def subscribe(ws: ClientConnection, *channels: str) -> None:
    await ws.send(orjson.dumps({"op": "subscribe", "channels": list(channels)}).decode())


async def collect(ws: ClientConnection, count: int) -> list[Any]:
    return [await recv(ws) for _ in range(count)]


@pytest.fixture
async def ready(service: Service) -> Service:
    await wait_for_prices(service, METALS)
    return service


async def test_ticks_channel_gives_a_snapshot_then_updates_numbered_one_by_one(
    ready: Service,
) -> None:
    async with connect(ready.ws_url) as ws:
        await subscribe(ws, "ticks:XAU-USD")
        snap = await recv(ws)
        assert snap["type"] == "snapshot"
        assert snap["channel"] == "ticks:XAU-USD"
        assert snap["data"]["symbol"] == "XAU-USD"
        updates = await collect(ws, 10)
        assert [u["type"] for u in updates] == ["update"] * 10
        assert [u["seq"] for u in updates] == list(range(snap["seq"] + 1, snap["seq"] + 11))
        for u in updates:
            assert u["data"]["symbol"] == "XAU-USD"
            assert u["data"]["bid"] <= u["data"]["ask"]
            assert u["data"]["recv_ms"] >= u["data"]["ts_ms"] - 60_000


async def test_candles_channel_snapshot_holds_recent_candles_then_updates(ready: Service) -> None:
    async with connect(ready.ws_url) as ws:
        await subscribe(ws, "candles:XAG-USD:1s")
        snap = await recv(ws)
        assert snap["type"] == "snapshot"
        candles = snap["data"]["candles"]
        assert candles
        assert [c["start_ms"] for c in candles] == sorted(c["start_ms"] for c in candles)
        update = await recv(ws)
        assert update["seq"] == snap["seq"] + 1
        assert update["data"]["start_ms"] >= candles[-1]["start_ms"] - 1_000
        assert set(update["data"]) == {
            "start_ms",
            "open",
            "high",
            "low",
            "close",
            "ticks",
            "closed",
        }


async def test_two_clients_see_the_same_numbering_of_a_channel(ready: Service) -> None:
    async with connect(ready.ws_url) as a, connect(ready.ws_url) as b:
        await subscribe(a, "ticks:XPT-USD")
        await subscribe(b, "ticks:XPT-USD")
        await recv(a), await recv(b)
        seen_a = {u["seq"]: u["data"] for u in await collect(a, 20)}
        seen_b = {u["seq"]: u["data"] for u in await collect(b, 20)}
        common = set(seen_a) & set(seen_b)
        assert common
        assert all(seen_a[s] == seen_b[s] for s in common)


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("not json", "bad_json"),
        ("[1,2]", "bad_message"),
        ('{"op":"dance","channels":[]}', "bad_op"),
        ('{"op":"subscribe","channels":"ticks:XAU-USD"}', "bad_message"),
        ('{"op":"subscribe","channels":["quotes:XAU-USD"]}', "bad_channel"),
        ('{"op":"subscribe","channels":["candles:XAU-USD:2m"]}', "bad_channel"),
        ('{"op":"subscribe","channels":["ticks:gold"]}', "bad_channel"),
        ('{"op":"subscribe","channels":["ticks:XXX-USD"]}', "unknown_symbol"),
        ('{"op":"subscribe","channels":[],"sinse":{}}', "bad_message"),
        (
            '{"op":"subscribe","channels":["ticks:XAU-USD"],"since":{"ticks:XAU-USD":-1}}',
            "bad_message",
        ),
        ('{"op":"subscribe","channels":["ticks:XAU-USD"],"since":[5]}', "bad_message"),
        ('{"op":"subscribe","channels":["ticks:XAU-USD"],"max_hz":0}', "bad_message"),
        ('{"op":"subscribe","channels":["ticks:XAU-USD"],"max_hz":5000}', "bad_message"),
        ('{"op":"subscribe","channels":["ticks:XAU-USD"],"max_hz":"fast"}', "bad_message"),
    ],
)
async def test_a_bad_message_gets_an_error_and_the_connection_stays_up(
    ready: Service, message: str, code: str
) -> None:
    async with connect(ready.ws_url) as ws:
        await ws.send(message)
        error = await recv(ws)
        assert error["type"] == "error"
        assert error["code"] == code
        assert error["message"]
        await subscribe(ws, "ticks:XAU-USD")
        assert (await recv(ws))["type"] == "snapshot"


async def test_unsubscribe_stops_a_channel(ready: Service) -> None:
    async with connect(ready.ws_url) as ws:
        await subscribe(ws, "ticks:XAU-USD", "ticks:XAG-USD")
        await collect(ws, 4)
        await ws.send(orjson.dumps({"op": "unsubscribe", "channels": ["ticks:XAU-USD"]}).decode())
        await ws.send(orjson.dumps({"op": "ping"}).decode())
        # answered in order: what was queued before the unsubscribe comes before the pong
        while orjson.loads(await asyncio.wait_for(ws.recv(), 10))["type"] != "pong":
            pass
        later = await collect(ws, 10)
        assert {m["channel"] for m in later} == {"ticks:XAG-USD"}


async def test_server_shutdown_closes_clients_with_going_away(tmp_path: Path) -> None:
    async with embedded_service(tmp_path / "d") as svc:
        await wait_for_prices(svc, METALS)
        ws = await connect(svc.ws_url)
        await subscribe(ws, "ticks:XAU-USD")
        await recv(ws)
        svc.stop.set()
        with pytest.raises(ConnectionClosed):
            await drain_until_closed(ws)
        assert ws.close_code == 1001


async def drain_until_closed(ws: ClientConnection) -> None:
    while True:
        await recv(ws, timeout_s=10)


def _candle(start_ms: int, ticks: int, close: float) -> Candle:
    return Candle("XAU-USD", "1m", start_ms, start_ms + 60_000, 1.0, 2.0, 0.5, close, ticks,
                  start_ms, start_ms + 1, False)  # fmt: skip


@pytest.mark.parametrize(
    ("stored", "recent", "closes"),
    [
        ([], [(0, 3, 1.5)], {0: 1.5}),
        ([(0, 3, 1.0)], [], {0: 1.0}),
        ([(0, 3, 1.0)], [(0, 5, 1.5)], {0: 1.5}),  # the hub is ahead of the store
        ([(0, 9, 1.0)], [(0, 5, 1.5)], {0: 1.0}),  # the hub missed updates: the store wins
        ([(0, 5, 1.0)], [(0, 5, 1.5)], {0: 1.5}),
        ([(0, 1, 1.0), (60_000, 2, 1.2)], [(60_000, 4, 1.3)], {0: 1.0, 60_000: 1.3}),
    ],
)
def test_the_candle_with_more_ticks_wins_when_store_and_hub_disagree(
    stored: list[tuple[int, int, float]],
    recent: list[tuple[int, int, float]],
    closes: dict[int, float],
) -> None:
    merged = newest_candles([_candle(*c) for c in stored], [_candle(*c) for c in recent])
    assert {k: c.close for k, c in merged.items()} == closes
