"""Credentials: the HS256 check as a table, then private channels and the admin endpoint."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.web.live_server import LiveServer, live_server, recv, send
from web.auth import (
    AuthConfig,
    Authenticator,
    AuthError,
    b64encode,
    sign_hs256,
    verify_hs256,
)
from web.live import LiveConfig

SECRET = b"s" * 32
KEY = "k-3f9a1c77e2b54d0e"
NOW_S = 1_795_000_000
PRIVATE = "ticks:XPD-USD"


def test_a_valid_token_gives_its_claims() -> None:
    token = sign_hs256({"sub": "desk-7", "exp": NOW_S + 60}, SECRET)
    assert verify_hs256(token, SECRET, now_s=NOW_S)["sub"] == "desk-7"


@pytest.mark.parametrize(
    ("token", "words"),
    [
        (sign_hs256({"sub": "x"}, b"o" * 32), "signature"),
        (sign_hs256({"sub": "x", "exp": NOW_S - 31}, SECRET), "expired"),
        (sign_hs256({"sub": "x", "nbf": NOW_S + 31}, SECRET), "not valid yet"),
        (sign_hs256({"sub": "x", "exp": "tomorrow"}, SECRET), "exp claim"),
        (b64encode(b'{"alg":"none"}') + "." + b64encode(b'{"sub":"x"}') + ".", "HS256"),
        ("a.b", "not a JWT"),
        ("!!.??.##", "base64url"),
        (sign_hs256({"sub": "x"}, SECRET)[:-2] + "AA", "signature"),
        ("\udcff.\udcfe.\udcfd", "not a JWT"),  # header bytes that are not UTF-8
        (sign_hs256({"sub": "x"}, SECRET) + "\u00e9", "not a JWT"),
    ],
)
def test_a_bad_token_is_refused_with_the_reason(token: str, words: str) -> None:
    with pytest.raises(AuthError, match=words):
        verify_hs256(token, SECRET, now_s=NOW_S)


@pytest.mark.parametrize(
    ("api_key", "words"),
    [
        ("\udcff", "unknown API key"),  # how aiohttp hands over the header byte 0xff
        (KEY + "\udc80", "unknown API key"),
        ("k-\u00fcn\u00efcode", "unknown API key"),
        ("\ud800", "not text"),  # a lone surrogate no header bytes give
    ],
)
def test_a_key_that_is_not_text_is_refused_not_a_crash(api_key: str, words: str) -> None:
    auth = Authenticator(AuthConfig(api_keys=(KEY,)))
    with pytest.raises(AuthError, match=words):
        auth.who(api_key=api_key, token=None, now_s=NOW_S)
    assert auth.who(api_key=KEY, token=None, now_s=NOW_S) == "api-key"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[LiveServer]:
    auth = AuthConfig(
        api_keys=(KEY,), jwt_secret=SECRET.decode(), private_symbols=frozenset({"XPD-USD"})
    )
    async with live_server(tmp_path, LiveConfig(), auth=auth) as s:
        for symbol in ("XAU-USD", "XPD-USD"):
            await s.ticks(range(1, 3), symbol=symbol)
            await s.seq_reached(f"ticks:{symbol}", 2)
        yield s


async def test_a_private_channel_without_credentials_is_refused_public_ones_are_not(
    server: LiveServer,
) -> None:
    async with connect(server.ws_url) as ws:
        await send(ws, {"op": "subscribe", "channels": [PRIVATE]})
        error = await recv(ws)
        assert (error["type"], error["code"]) == ("error", "unauthorized")
        assert "private" in error["message"]
        await send(ws, {"op": "subscribe", "channels": ["ticks:XAU-USD"]})
        assert (await recv(ws))["type"] == "snapshot"
        await send(ws, {"op": "auth", "api_key": "wrong"})
        assert (await recv(ws))["code"] == "unauthorized"
        await send(ws, {"op": "subscribe", "channels": [PRIVATE]})
        assert (await recv(ws))["code"] == "unauthorized"
    assert not server.hub.channels[PRIVATE].subscribers


@pytest.mark.parametrize(
    "auth",
    [{"op": "auth", "api_key": KEY}, {"op": "auth", "token": sign_hs256({"sub": "d"}, SECRET)}],
)
async def test_the_auth_op_opens_private_channels(server: LiveServer, auth: object) -> None:
    async with connect(server.ws_url) as ws:
        await send(ws, auth)
        assert (await recv(ws))["type"] == "authenticated"
        await send(ws, {"op": "subscribe", "channels": [PRIVATE]})
        snap = await recv(ws)
        assert (snap["type"], snap["seq"]) == ("snapshot", 2)


async def test_credentials_in_headers_open_private_channels_and_bad_ones_are_401(
    server: LiveServer,
) -> None:
    async with connect(server.ws_url, additional_headers={"X-API-Key": KEY}) as ws:
        await send(ws, {"op": "subscribe", "channels": [PRIVATE]})
        assert (await recv(ws))["type"] == "snapshot"
    with pytest.raises(InvalidStatus) as refused:
        await connect(server.ws_url, additional_headers={"Authorization": "Bearer x.y.z"})
    assert refused.value.response.status_code == 401


async def test_sse_of_a_private_channel_needs_credentials(server: LiveServer) -> None:
    url = server.url + f"api/v1/stream?channels={PRIVATE}"
    token = sign_hs256({"sub": "d"}, SECRET)
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as resp:
            assert resp.status == 401
            assert "private" in (await resp.json())["error"]["message"]
        async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.status == 200
            head = await asyncio.wait_for(resp.content.readuntil(b'"type":"snapshot"'), 5)
            assert head.endswith(b'"type":"snapshot"')


async def test_deadletters_needs_a_key_and_the_key_never_reaches_the_logs(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = server.url + "api/v1/deadletters"
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as resp:
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"] == "Bearer"
            assert "credentials required" in (await resp.json())["error"]["message"]
        async with http.get(url, headers={"X-API-Key": KEY + "x"}) as resp:
            assert resp.status == 401
            assert "unknown API key" in (await resp.json())["error"]["message"]
        async with http.get(url, headers={"X-API-Key": KEY}) as resp:
            assert resp.status == 200
            assert await resp.json() == {"letters": [], "next": None}
    assert caplog.records  # the access log saw the requests
    assert not [r for r in caplog.records if KEY in r.getMessage()]


async def test_without_configured_credentials_deadletters_is_closed(tmp_path: Path) -> None:
    async with (
        live_server(tmp_path, LiveConfig()) as s,
        aiohttp.ClientSession() as http,
        http.get(s.url + "api/v1/deadletters", headers={"X-API-Key": KEY}) as resp,
    ):
        assert resp.status == 401
        assert "accepts no credentials" in (await resp.json())["error"]["message"]


async def test_a_private_symbols_http_quotes_and_candles_need_credentials_too(
    server: LiveServer,
) -> None:
    base = server.url + "api/v1/symbols"
    async with aiohttp.ClientSession() as http:
        for path in ("/XPD-USD/latest", "/XPD-USD/candles?res=1s"):
            async with http.get(base + path) as resp:
                assert resp.status == 401, path
                assert "credentials required" in (await resp.json())["error"]["message"]
        async with http.get(base + "/XPD-USD/latest", headers={"X-API-Key": KEY}) as resp:
            assert resp.status == 200
            assert (await resp.json())["symbol"] == "XPD-USD"
        async with http.get(base + "/XAU-USD/latest") as resp:
            assert resp.status == 200  # public symbols stay open
        async with http.get(base) as resp:
            assert [q["symbol"] for q in await resp.json()] == ["XAU-USD"]
        async with http.get(base, headers={"X-API-Key": KEY}) as resp:
            assert [q["symbol"] for q in await resp.json()] == ["XAU-USD", "XPD-USD"]
