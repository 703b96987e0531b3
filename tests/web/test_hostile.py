"""Hostile requests (issue 12): bytes no client library would send, numbers past every limit, and
requests that fail half-way. Each gets a 4xx that says what is wrong, never a 5xx, and leaves
nothing behind in the hub.

Headers go out byte for byte over a raw socket, since client libraries encode or refuse them.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import pytest
from websockets.asyncio.client import connect

from tests.web.live_server import LiveServer, live_server, recv, send
from tests.web.raw_ws import RawWebSocket
from web.auth import AuthConfig
from web.live import LiveConfig

KEY = "k-3f9a1c77e2b54d0e"
UNICODE_KEY = "k-ünïcode-7"
SECRET = "s" * 32
GOLD, SILVER, PRIVATE = "ticks:XAU-USD", "ticks:XAG-USD", "ticks:XPD-USD"


@dataclass
class Answer:
    status: int
    head: bytes
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


async def raw_get(port: int, target: bytes, headers: bytes = b"") -> Answer:
    """GET ``target`` with ``headers`` (CRLF-ended lines) sent exactly as given. The body is
    read when the answer says how long it is (an event stream's never ends)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers + b"\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        status = int(head.split(b" ", 2)[1])
        length = re.search(rb"\r\ncontent-length: *([0-9]+)\r\n", head, re.IGNORECASE)
        body = await asyncio.wait_for(reader.readexactly(int(length[1])), 5) if length else b""
        return Answer(status, head, body)
    finally:
        writer.close()


def upgrade_headers() -> bytes:
    key = base64.b64encode(os.urandom(16))
    return (
        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\n"
    )


def port_of(server: LiveServer) -> int:
    port = urlsplit(server.url).port
    assert port is not None
    return port


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[LiveServer]:
    auth = AuthConfig(
        api_keys=(KEY, UNICODE_KEY), jwt_secret=SECRET, private_symbols=frozenset({"XPD-USD"})
    )
    async with live_server(tmp_path, LiveConfig(), auth=auth) as s:
        for symbol in ("XAU-USD", "XAG-USD", "XPD-USD"):
            await s.ticks(range(1, 3), symbol=symbol)
            await s.seq_reached(f"ticks:{symbol}", 2)
        yield s


# -- credentials that are not text ----------------------------------------------------------

BAD_CREDENTIALS = [
    pytest.param(b"X-API-Key: \xff", id="key-of-one-bad-byte"),
    pytest.param(b"X-API-Key: k-\xc3\x28-\xed\xa0\x80", id="key-of-broken-utf8"),
    pytest.param(b"X-API-Key: " + KEY.encode() + b"\x80", id="good-key-and-a-bad-byte"),
    pytest.param(b"X-API-Key: " + UNICODE_KEY.encode("latin-1"), id="good-key-in-latin1"),
    pytest.param(b"Authorization: Bearer \xff.\xfe.\xfd", id="token-of-bad-bytes"),
    pytest.param(b"Authorization: B\xe9arer x.y.z", id="scheme-of-bad-bytes"),
]


@pytest.mark.parametrize("credential", BAD_CREDENTIALS)
async def test_undecodable_credentials_are_a_401_never_a_5xx(
    server: LiveServer, credential: bytes
) -> None:
    port, line = port_of(server), credential + b"\r\n"
    for target in (
        f"/api/v1/stream?channels={GOLD}",
        "/api/v1/deadletters",
        "/api/v1/symbols/XPD-USD/latest",
    ):
        got = await raw_get(port, target.encode(), line)
        assert got.status == 401, (target, got)
        assert re.search(rb"\r\nWWW-Authenticate: Bearer\r\n", got.head, re.IGNORECASE)
        assert got.json()["error"]["status"] == 401
    upgrade = await raw_get(port, b"/ws", line + upgrade_headers())
    assert upgrade.status == 401, upgrade
    # the symbol list is public: bad credentials count as none, and private symbols stay out
    listing = await raw_get(port, b"/api/v1/symbols", line)
    assert listing.status == 200, listing
    assert [q["symbol"] for q in listing.json()] == ["XAG-USD", "XAU-USD"]
    assert not server.hub.clients


async def test_a_key_is_compared_as_the_bytes_sent(server: LiveServer) -> None:
    port = port_of(server)
    for key in (KEY.encode(), UNICODE_KEY.encode()):
        got = await raw_get(port, b"/api/v1/symbols/XPD-USD/latest", b"X-API-Key: " + key + b"\r\n")
        assert got.status == 200, (key, got)
        assert got.json()["symbol"] == "XPD-USD"
    got = await raw_get(port, b"/api/v1/deadletters", b"X-API-Key: \xff\xfe\r\n")
    assert got.status == 401
    assert "unknown API key" in got.json()["error"]["message"]


# -- sequence numbers that are not small ASCII numbers --------------------------------------

BAD_SEQS = [
    pytest.param(b"\xc2\xb2", id="superscript-two"),  # str.isdigit() says yes
    pytest.param(b"\xd9\xa3", id="arabic-indic-three"),  # int() reads it as 3
    pytest.param(b"9" * 5_000, id="5000-digits"),  # past Python's int string limit
    pytest.param(b"99999999999999999999", id="past-64-bits"),  # past orjson's ints
    pytest.param(str(2**53).encode(), id="past-2**53-1"),
    pytest.param(b"-1", id="negative"),
    pytest.param(b"+1", id="plus-sign"),
    pytest.param(b"1_000", id="underscore"),
    pytest.param(b"", id="empty"),
]


@pytest.mark.parametrize("seq", BAD_SEQS)
@pytest.mark.parametrize("where", ["header", "query"])
async def test_a_bad_last_event_id_is_a_400_naming_the_bad_part(
    server: LiveServer, seq: bytes, where: str
) -> None:
    value = GOLD.encode() + b"=2," + SILVER.encode() + b"=" + seq
    target = f"/api/v1/stream?channels={GOLD},{SILVER}".encode()
    if where == "header":
        got = await raw_get(port_of(server), target, b"Last-Event-ID: " + value + b"\r\n")
    else:
        query = b"&last_event_id=" + re.sub(rb"[^A-Za-z0-9:=,-]", _percent, value)
        got = await raw_get(port_of(server), target + query)
    assert got.status == 400, got
    message = got.json()["error"]["message"]
    assert "Last-Event-ID" in message
    assert f"{SILVER}=" in message
    assert f"{GOLD}=2" not in message  # the part that is wrong, not the whole id
    assert len(message) < 300


def _percent(match: re.Match[bytes]) -> bytes:
    return b"%%%02X" % match[0][0]


@pytest.mark.parametrize(
    ("since", "code"),
    [
        *[(str(n), "bad_message") for n in (2**53, 2**63, 2**64 - 1, 2**64)],
        *[(text, "bad_message") for text in ("-1", "1.5", "true", '"7"')],
        ("9" * 400, "bad_json"),  # orjson refuses a number it cannot hold
    ],
)
async def test_a_websocket_since_out_of_range_is_a_protocol_error(
    server: LiveServer, since: str, code: str
) -> None:
    subscribe = f'{{"op":"subscribe","channels":["{GOLD}"],"since":{{"{GOLD}":{since}}}}}'
    async with connect(server.ws_url) as ws:
        await ws.send(subscribe)  # by hand: orjson writes no int past 64 bits
        await send(ws, {"op": "ping"})
        error, pong = await recv(ws), await recv(ws)
        assert (error["type"], error["code"], pong["type"]) == ("error", code, "pong")
        assert code != "bad_message" or "since" in error["message"]
        assert not server.hub.channels[GOLD].subscribers


# -- requests that fail half-way ------------------------------------------------------------


def hub_is_empty(server: LiveServer) -> bool:
    """No client registered and no channel with a subscriber."""
    hub = server.hub
    return not hub.clients and not any(ch.subscribers for ch in hub.channels.values())


FAILING_STREAMS = [
    # each fails after the first channel is subscribed, or would without checks up front
    (f"channels={GOLD},{SILVER}&last_event_id={SILVER}=99999999999999999999", 400),
    (f"channels={GOLD},{SILVER}&last_event_id={SILVER}=%C2%B2", 400),
    (f"channels={GOLD},{SILVER}&last_event_id={SILVER}={'9' * 5_000}", 400),
    (f"channels={GOLD},ticks:NOPE-USD", 404),
    (f"channels={GOLD},{PRIVATE}", 401),
    (f"channels={GOLD},quotes:XAU-USD", 400),
    (f"channels={GOLD},candles:XAU-USD:2m", 400),
    (f"channels={GOLD}&max_hz=0", 400),
    ("channels=" + ",".join(f"ticks:X{i}" for i in range(65)), 400),
]


async def test_failed_event_streams_leave_nothing_in_the_hub(server: LiveServer) -> None:
    assert hub_is_empty(server)
    async with aiohttp.ClientSession() as http:
        for _ in range(3):
            for query, status in FAILING_STREAMS:
                async with http.get(f"{server.url}api/v1/stream?{query}") as resp:
                    assert resp.status == status, query[:80]
        await server.until(lambda: hub_is_empty(server))
        # nothing left to fill: updates now reach no outbox
        await server.ticks(range(3, 1_003))
        await server.seq_reached(GOLD, 1_002)
        assert hub_is_empty(server)
        # and a stream that works holds its channels until a write finds the client gone
        async with http.get(f"{server.url}api/v1/stream?channels={GOLD},{SILVER}") as resp:
            assert resp.status == 200
            await asyncio.wait_for(resp.content.readuntil(b'"type":"snapshot"'), 5)
            await server.until(lambda: len(server.hub.channels[SILVER].subscribers) == 1)
            assert len(server.hub.clients) == 1
    loop = asyncio.get_running_loop()
    deadline, seq = loop.time() + 10, 1_003
    while not hub_is_empty(server):
        assert loop.time() < deadline, "the stream's client is still in the hub"
        await server.ticks(range(seq, seq + 1), symbol="XAG-USD")
        seq += 1
        await asyncio.sleep(0.01)


async def test_a_websocket_that_fails_mid_subscribe_leaves_nothing_in_the_hub(
    server: LiveServer,
) -> None:
    async with connect(server.ws_url) as ws:
        await send(ws, {"op": "subscribe", "channels": [GOLD, "ticks:NOPE-USD", SILVER, "q:x"]})
        got = [await recv(ws) for _ in range(4)]
        assert [(m["type"], m.get("channel"), m.get("code")) for m in got] == [
            ("snapshot", GOLD, None),
            ("error", None, "unknown_symbol"),
            ("snapshot", SILVER, None),
            ("error", None, "bad_channel"),
        ]
        await ws.send(
            f'{{"op":"subscribe","channels":["{PRIVATE}"],"since":{{"{PRIVATE}":{2**63}}}}}'
        )
        assert (await recv(ws))["code"] == "bad_message"
        assert len(server.hub.clients) == 1
        assert server.hub.channels[GOLD].subscribers == server.hub.channels[SILVER].subscribers
        assert server.hub.channels[GOLD].subscribers == server.hub.clients
    await server.until(lambda: hub_is_empty(server))


async def test_a_websocket_cut_while_it_subscribes_leaves_nothing_in_the_hub(
    server: LiveServer,
) -> None:
    for _ in range(5):
        ws = await RawWebSocket.open(port_of(server))
        ws.send_json({"op": "subscribe", "channels": [GOLD, "ticks:NOPE-USD", SILVER]})
        transport = ws.writer.transport
        assert isinstance(transport, asyncio.Transport)
        transport.abort()  # a reset, no close frame, while the server is still subscribing
    await server.until(lambda: hub_is_empty(server))
