"""The /ws endpoint against hostile or careless clients (issue 12, "weak points"): tokens that
expire mid-connection. Each test ends with the hub as it found it: no client, no subscriber.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.web.live_server import LiveServer, drain, live_server, recv, send
from web.auth import AuthConfig, sign_hs256
from web.live import CLOSE_TOKEN_EXPIRED, LiveConfig

SECRET = "s" * 32
GOLD, PRIVATE = "ticks:XAU-USD", "ticks:XPD-USD"


def token(exp_s: float, *, sub: str = "desk-7") -> str:
    return sign_hs256({"sub": sub, "exp": exp_s}, SECRET.encode())


def hub_is_empty(server: LiveServer) -> bool:
    """No client registered and no channel with a subscriber."""
    hub = server.hub
    return not hub.clients and not any(ch.subscribers for ch in hub.channels.values())


async def wall_clock_past(when_s: float) -> None:
    """Wait (polling, at most 10 s) until ``time.time()`` is past ``when_s``."""
    for _ in range(500):
        if time.time() > when_s:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the wall clock did not pass {when_s} within 10 s")


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[LiveServer]:
    # no leeway: a token is refused the moment its exp has passed
    auth = AuthConfig(jwt_secret=SECRET, private_symbols=frozenset({"XPD-USD"}), leeway_s=0)
    async with live_server(tmp_path, LiveConfig(), auth=auth) as s:
        for symbol in ("XAU-USD", "XPD-USD"):
            await s.ticks(range(1, 3), symbol=symbol)
            await s.seq_reached(f"ticks:{symbol}", 2)
        assert hub_is_empty(s)
        yield s


# -- token expiry ----------------------------------------------------------------------------


async def test_a_connection_holding_a_private_channel_is_closed_with_4001_when_its_token_expires(
    server: LiveServer,
) -> None:
    exp_s = time.time() + 1.5
    headers = {"Authorization": f"Bearer {token(exp_s)}"}
    async with connect(server.ws_url, additional_headers=headers) as ws:
        await send(ws, {"op": "subscribe", "channels": [GOLD, PRIVATE]})
        assert [(await recv(ws))["channel"] for _ in range(2)] == [GOLD, PRIVATE]
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(10):
                await drain(ws)
        assert time.time() > exp_s  # not before the token expired
        assert ws.close_code == CLOSE_TOKEN_EXPIRED
        assert (ws.close_reason or "").startswith("token expired")
    await server.until(lambda: hub_is_empty(server))


async def test_a_private_subscribe_after_the_token_expired_is_refused_until_a_fresh_token(
    server: LiveServer,
) -> None:
    exp_s = time.time() + 1.0
    async with connect(server.ws_url) as ws:
        await send(ws, {"op": "auth", "token": token(exp_s)})
        assert (await recv(ws))["type"] == "authenticated"
        await send(ws, {"op": "subscribe", "channels": [GOLD]})
        assert (await recv(ws))["type"] == "snapshot"
        await wall_clock_past(exp_s)
        # holding public channels only, the connection stays; a private channel is refused
        await send(ws, {"op": "subscribe", "channels": [PRIVATE]})
        error = await recv(ws)
        assert (error["type"], error["code"]) == ("error", "unauthorized")
        assert "expired" in error["message"]
        assert not server.hub.channels[PRIVATE].subscribers
        await send(ws, {"op": "auth", "token": token(time.time() + 60)})
        assert (await recv(ws))["type"] == "authenticated"
        await send(ws, {"op": "subscribe", "channels": [PRIVATE]})
        assert (await recv(ws))["type"] == "snapshot"
        assert server.hub.channels[PRIVATE].subscribers == server.hub.clients
    await server.until(lambda: hub_is_empty(server))


async def test_a_fresh_token_before_expiry_keeps_the_private_channels(server: LiveServer) -> None:
    exp_s = time.time() + 1.0
    async with connect(server.ws_url) as ws:
        await send(ws, {"op": "auth", "token": token(exp_s)})
        assert (await recv(ws))["type"] == "authenticated"
        await send(ws, {"op": "subscribe", "channels": [PRIVATE]})
        assert (await recv(ws))["type"] == "snapshot"
        await send(ws, {"op": "auth", "token": token(time.time() + 60)})
        assert (await recv(ws))["type"] == "authenticated"
        await wall_clock_past(exp_s + 0.2)  # the first token's timer would have fired by now
        await send(ws, {"op": "ping"})
        assert await recv(ws) == {"type": "pong"}
        await server.ticks(range(3, 4), symbol="XPD-USD")
        assert (await recv(ws))["seq"] == 3
        (client,) = server.hub.clients
        assert client.closing is None
    await server.until(lambda: hub_is_empty(server))
