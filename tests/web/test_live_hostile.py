"""The /ws endpoint against hostile or careless clients (issue 12, "weak points"): tokens that
expire mid-connection, unmasked frames, floods of channels and messages. Each test ends with the
hub as it found it: no client, no subscriber.

Raw clients (tests/web/raw_ws.py) send what a websocket library would not.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest
import uvloop
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import embedded_service
from tests.web.live_server import LiveServer, drain, live_server, recv, send
from tests.web.raw_ws import CLOSE, PING, TEXT, RawWebSocket, client_frame
from tests.web.test_sse import events
from web.auth import AuthConfig, sign_hs256
from web.live import (
    CLOSE_PROTOCOL_ERROR,
    CLOSE_TOKEN_EXPIRED,
    FrameMasks,
    LiveConfig,
    MessageRate,
    WsClient,
)
from web.sse import SseClient

SECRET = "s" * 32
GOLD, PRIVATE = "ticks:XAU-USD", "ticks:XPD-USD"


def token(exp_s: float, *, sub: str = "desk-7") -> str:
    return sign_hs256({"sub": sub, "exp": exp_s}, SECRET.encode())


def port_of(server: LiveServer) -> int:
    return int(server.url.rsplit(":", 1)[1].strip("/"))


async def frames_until_end(peer: RawWebSocket) -> list[tuple[int, bytes]]:
    """Every frame the server sends until it ends the TCP connection (at most 10 s)."""
    frames = []
    async with asyncio.timeout(10):
        while (got := await peer.frame()) is not None:
            frames.append(got)
    return frames


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


async def test_an_event_stream_holding_a_private_channel_ends_with_4001_when_its_token_expires(
    server: LiveServer,
) -> None:
    exp_s = time.time() + 1.5
    headers = {"Authorization": f"Bearer {token(exp_s)}"}
    url = server.url + f"api/v1/stream?channels={GOLD},{PRIVATE}"
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        assert resp.status == 200
        assert [e.data["channel"] for e in await events(resp, 2)] == [GOLD, PRIVATE]
        (closed,) = await events(resp, 1, timeout_s=10)
        assert time.time() > exp_s  # not before the token expired
        assert (closed.data["type"], closed.data["code"]) == ("closed", CLOSE_TOKEN_EXPIRED)
        assert closed.data["reason"] == f"token expired; it held {PRIVATE}"
        assert await asyncio.wait_for(resp.content.read(), 5) == b""  # and the stream ended
    await server.until(lambda: hub_is_empty(server))
    # the reconnect of a browser, with the same token: refused
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        assert resp.status == 401


async def test_an_event_stream_of_public_channels_outlives_its_token(server: LiveServer) -> None:
    exp_s = time.time() + 1.0
    headers = {"Authorization": f"Bearer {token(exp_s)}"}
    url = server.url + f"api/v1/stream?channels={GOLD}"
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        assert [e.data["type"] for e in await events(resp, 1)] == ["snapshot"]
        await wall_clock_past(exp_s + 0.3)  # the expiry timer has fired by now
        await server.ticks(range(3, 4))
        (update,) = await events(resp, 1)
        assert (update.data["type"], update.data["seq"]) == ("update", 3)
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


# -- unmasked frames ---------------------------------------------------------------------------

SUBSCRIBE_GOLD = orjson.dumps({"op": "subscribe", "channels": [GOLD]})


def _frame(payload_bytes: int, *, masked: bool = True) -> bytes:
    """A text frame with a payload of that many bytes, in the shortest length form."""
    n, bit = payload_bytes, 0x80 if masked else 0
    if n < 126:
        head = bytes((0x81, bit | n))
    elif n < 65_536:
        head = bytes((0x81, bit | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x81, bit | 127)) + n.to_bytes(8, "big")
    return head + (b"\x01\x02\x03\x04" if masked else b"") + b"x" * n


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1_000, 1_000_000])
@pytest.mark.parametrize(
    ("frames", "good"),
    [
        ([_frame(5)], None),
        ([_frame(125), _frame(126), _frame(65_535), _frame(65_536)], None),
        ([_frame(0, masked=False)], 0),
        ([_frame(5), _frame(5, masked=False), _frame(5)], len(_frame(5))),
        ([_frame(300), _frame(70_000), _frame(300, masked=False)], 300 + 8 + 70_000 + 14),
        ([_frame(70_000, masked=False)], 0),
    ],
)
def test_frame_masks_finds_the_first_unmasked_frame_however_the_bytes_are_split(
    frames: list[bytes], good: int | None, chunk: int
) -> None:
    stream = b"".join(frames)
    check, passed = FrameMasks(), 0
    for start in range(0, len(stream), chunk):
        piece = stream[start : start + chunk]
        taken = check.feed(piece)
        passed += taken
        if taken < len(piece):
            break
    if good is None:
        assert passed == len(stream)
        assert not check.unmasked
    else:  # the bad frame's first byte may have gone on in an earlier read, never its second
        assert good <= passed <= good + 1
        assert check.unmasked
        assert check.feed(b"more") == 0


async def test_an_unmasked_frame_gets_close_1002_and_the_connection_leaves_the_hub(
    server: LiveServer,
) -> None:
    peer = await RawWebSocket.open(port_of(server))
    try:
        peer.send(TEXT, SUBSCRIBE_GOLD)
        opcode, snapshot = await asyncio.wait_for(_next_data(peer), 5)
        assert (opcode, orjson.loads(snapshot)["type"]) == (TEXT, "snapshot")
        assert server.hub.channels[GOLD].subscribers == server.hub.clients
        peer.send_json({"op": "ping"}, masked=False)
        frames = await frames_until_end(peer)
    finally:
        peer.close()
    assert frames, "the connection ended without a close frame"
    opcode, payload = frames[-1]
    assert opcode == CLOSE
    assert int.from_bytes(payload[:2], "big") == CLOSE_PROTOCOL_ERROR
    assert b"masked" in payload[2:]
    assert not any(b'"pong"' in p for op, p in frames if op == TEXT)  # the frame was not read
    await server.until(lambda: hub_is_empty(server))


async def test_an_unmasked_frame_sent_with_the_upgrade_request_is_refused_too(
    server: LiveServer,
) -> None:
    early = client_frame(TEXT, SUBSCRIBE_GOLD, masked=False)
    peer = await RawWebSocket.open(port_of(server), early=early)
    try:
        frames = await frames_until_end(peer)
    finally:
        peer.close()
    assert [(op, int.from_bytes(p[:2], "big")) for op, p in frames] == [
        (CLOSE, CLOSE_PROTOCOL_ERROR)
    ]  # and no snapshot: the subscribe was not answered
    await server.until(lambda: hub_is_empty(server))


async def test_masked_frames_sent_with_the_upgrade_request_are_answered(
    server: LiveServer,
) -> None:
    peer = await RawWebSocket.open(port_of(server), early=client_frame(TEXT, SUBSCRIBE_GOLD))
    try:
        opcode, snapshot = await asyncio.wait_for(_next_data(peer), 5)
        assert (opcode, orjson.loads(snapshot)["channel"]) == (TEXT, GOLD)
    finally:
        peer.close()
    await server.until(lambda: hub_is_empty(server))


async def _next_data(peer: RawWebSocket) -> tuple[int, bytes]:
    """The next frame that is not a ping."""
    while (got := await peer.frame()) is not None:
        if got[0] != PING:
            return got
    raise AssertionError("the server ended the connection")


# -- limits on what one connection may ask ---------------------------------------------------


async def test_a_message_naming_more_channels_than_allowed_is_refused_whole(
    server: LiveServer,
) -> None:
    per_message = server.hub.config.max_channels_per_message
    async with connect(server.ws_url) as ws:
        # 3,300 channels in one 59 KB frame: each would cost a store lookup and an answer
        many = [f"ticks:X{i:04d}-USD" for i in range(3_300)]
        await send(ws, {"op": "subscribe", "channels": many})
        await send(ws, {"op": "subscribe", "channels": [GOLD] * (per_message + 1)})
        await send(ws, {"op": "ping"})
        got = [await recv(ws) for _ in range(3)]
        assert [(m["type"], m.get("code")) for m in got] == [
            ("error", "too_many_channels_in_message"),
            ("error", "too_many_channels_in_message"),
            ("pong", None),
        ]
        assert f"at most {per_message} channels in one message" in got[0]["message"]
        assert "max_channels_per_message" in got[0]["message"]
        assert "got 3300" in got[0]["message"]
        assert not server.hub.channels[GOLD].subscribers
        # as many as allowed is one message's worth: the same channel named 100 times
        await send(ws, {"op": "subscribe", "channels": [GOLD] * per_message})
        assert (await recv(ws))["type"] == "snapshot"
        await send(ws, {"op": "ping"})
        assert await recv(ws) == {"type": "pong"}
        assert server.hub.channels[GOLD].subscribers == server.hub.clients
    await server.until(lambda: hub_is_empty(server))


async def test_a_connection_past_its_channels_is_refused_naming_the_limit(tmp_path: Path) -> None:
    async with live_server(tmp_path, LiveConfig(max_channels=1)) as s:
        for symbol in ("XAU-USD", "XAG-USD"):
            await s.ticks(range(1, 2), symbol=symbol)
            await s.seq_reached(f"ticks:{symbol}", 1)
        async with connect(s.ws_url) as ws:
            await send(ws, {"op": "subscribe", "channels": [GOLD]})
            assert (await recv(ws))["type"] == "snapshot"
            await send(ws, {"op": "subscribe", "channels": ["ticks:XAG-USD"]})
            error = await recv(ws)
            assert (error["type"], error["code"]) == ("error", "too_many_channels")
            assert "at most 1 channels per connection (max_channels)" in error["message"]
            assert not s.hub.channels["ticks:XAG-USD"].subscribers
        await s.until(lambda: hub_is_empty(s))


@pytest.mark.parametrize(
    ("arrivals_s", "verdicts"),
    [
        ([0, 0, 0], ["ok", "ok", "ok"]),  # the burst
        ([0, 0, 0, 0], ["ok", "ok", "ok", "refused"]),
        ([0] * 7, ["ok"] * 3 + ["refused"] * 3 + ["close"]),  # a burst's worth below zero: over
        ([0, 0, 0, 0, 1.0], ["ok", "ok", "ok", "refused", "refused"]),  # -1 + 1 earned: not yet
        ([0, 0, 0, 0, 2.0], ["ok", "ok", "ok", "refused", "ok"]),  # paid back, and one more
        ([0, 0, 0, 100.0, 100.0, 100.0, 100.0], ["ok"] * 6 + ["refused"]),  # refills to 3 only
        ([i * 1.0 for i in range(20)], ["ok"] * 20),  # at the rate, for ever
    ],
)
def test_message_rate_refuses_past_the_burst_and_closes_a_burst_further(
    arrivals_s: list[float], verdicts: list[str]
) -> None:
    rate = MessageRate(per_s=1.0, burst=3)
    assert [rate.take(t) for t in arrivals_s] == verdicts


async def test_messages_past_the_rate_get_one_error_then_a_sender_that_goes_on_gets_1008(
    tmp_path: Path,
) -> None:
    # a token every 2 s: the few milliseconds the test takes earn none
    config = LiveConfig(max_messages_per_s=0.5, message_burst=3)
    async with live_server(tmp_path, config) as s:
        await s.ticks(range(1, 2))
        await s.seq_reached(GOLD, 1)
        async with connect(s.ws_url) as ws:
            await send(ws, {"op": "subscribe", "channels": [GOLD]})  # 1 of the burst of 3
            assert (await recv(ws))["type"] == "snapshot"
            assert s.hub.channels[GOLD].subscribers == s.hub.clients
            for _ in range(2 + 3):  # the rest of the burst, then 3 refused: as deep as allowed
                await send(ws, {"op": "ping"})
            got = [await recv(ws) for _ in range(3)]
            assert [(m["type"], m.get("code")) for m in got] == [
                ("pong", None),
                ("pong", None),
                ("error", "rate_limited"),  # one error for the run, not one per message
            ]
            assert "at most 0.5 messages a second (max_messages_per_s)" in got[2]["message"]
            assert "3 at once (message_burst)" in got[2]["message"]
            await send(ws, {"op": "ping"})  # one more while refused: over
            with pytest.raises(ConnectionClosed):
                async with asyncio.timeout(10):
                    await drain(ws)
            assert ws.close_code == 1008
            assert "max_messages_per_s" in (ws.close_reason or "")
        await s.until(lambda: hub_is_empty(s))


async def test_a_sender_that_backs_off_when_refused_is_let_in_again(tmp_path: Path) -> None:
    config = LiveConfig(max_messages_per_s=10, message_burst=2)
    async with live_server(tmp_path, config) as s:
        async with connect(s.ws_url) as ws:
            for _ in range(3):
                await send(ws, {"op": "ping"})
            got = [await recv(ws) for _ in range(3)]
            assert [m["type"] for m in got] == ["pong", "pong", "error"]
            # The refused ping cost a token too: the bucket is at -1 and lets a message in at
            # +1. Waiting is what is under test here, so the wait is for time, not an event.
            await asyncio.sleep(2 / config.max_messages_per_s + 0.1)
            await send(ws, {"op": "ping"})
            assert await recv(ws) == {"type": "pong"}
            assert len(s.hub.clients) == 1
        await s.until(lambda: hub_is_empty(s))


# -- a client that never reads -----------------------------------------------------------------


#: Only the byte limit can close a client: no conflation, no stall limit.
BYTES_ONLY = LiveConfig(send_buffer_messages=1_000_000, send_buffer_bytes=65_536,
                        stall_timeout_ms=600_000)  # fmt: skip
PAD = 1_000  # updates of about 1.2 KB


async def flood_until_closed(s: LiveServer, client: WsClient | SseClient, *, pad: int) -> None:
    """Check that ``client``'s socket has the bounded kernel send buffer, then publish padded
    GOLD ticks until the server closes the client for its bytes waiting (at most 24 MB)."""
    transport = client.request.transport
    assert transport is not None
    kernel_bytes = transport.get_extra_info("socket").getsockopt(
        socket.SOL_SOCKET, socket.SO_SNDBUF
    )
    assert kernel_bytes <= 2 * s.hub.config.socket_send_buffer_bytes  # Linux doubles it
    seq = 2
    for _ in range(400):  # up to 400 x 50 x 1.2 KB: 24 MB, far past any buffer
        if client.closing is not None:
            break
        await s.ticks(range(seq, seq + 50), pad=pad)
        seq += 50
        await s.seq_reached(GOLD, seq - 1)
    assert client.closing is not None
    assert client.closing.startswith("too slow: more than 65536 bytes waiting")


async def test_a_client_that_never_reads_is_closed_with_4008_after_a_bounded_amount_of_data(
    tmp_path: Path,
) -> None:
    config, pad = BYTES_ONLY, PAD
    async with live_server(tmp_path, config) as s:
        await s.ticks(range(1, 2))
        await s.seq_reached(GOLD, 1)
        peer = await RawWebSocket.open(port_of(s))
        try:
            peer.send(TEXT, SUBSCRIBE_GOLD)
            transport = peer.writer.transport
            assert isinstance(transport, asyncio.Transport)
            transport.pause_reading()  # from here on it reads nothing: the kernel holds it all
            await s.until(lambda: any(GOLD in c.channels for c in s.hub.clients))
            (client,) = s.hub.clients
            assert isinstance(client, WsClient)
            await flood_until_closed(s, client, pad=pad)
            # What the socket took before the close: the kernel's buffers (the server's send
            # buffer, bounded, and the peer's receive buffer) and asyncio's transport buffer.
            # Unbounded, loopback's send buffer alone grows to megabytes before anything waits
            # (3,401 of these updates, about 4 MB, before this bound).
            assert client.sent * pad < 1_000_000, f"{client.sent} updates went to the socket"
            # The peer reads at last: what the socket held, then (unless the server gave up on
            # it first) the close frame.
            transport.resume_reading()
            frames = await frames_until_end(peer)
        finally:
            peer.close()
        received = sum(len(p) for op, p in frames if op == TEXT)
        assert received < 1_000_000
        closes = [int.from_bytes(p[:2], "big") for op, p in frames if op == CLOSE]
        assert closes in ([], [4008])  # [] when it was aborted before the peer read it
        await s.until(lambda: hub_is_empty(s))
        assert s.hub.counters.slow_closed == 1


async def test_an_event_stream_that_never_reads_is_dropped_after_a_bounded_amount_of_data(
    tmp_path: Path,
) -> None:
    config, pad = BYTES_ONLY, PAD
    async with live_server(tmp_path, config) as s:
        await s.ticks(range(1, 2))
        await s.seq_reached(GOLD, 1)
        _, writer = await asyncio.open_connection("127.0.0.1", port_of(s))
        try:
            writer.write(f"GET /api/v1/stream?channels={GOLD} HTTP/1.1\r\n"
                         "Host: 127.0.0.1\r\n\r\n".encode())  # fmt: skip
            transport = writer.transport
            assert isinstance(transport, asyncio.Transport)
            transport.pause_reading()  # from here on it reads nothing: the kernel holds it all
            await s.until(lambda: any(GOLD in c.channels for c in s.hub.clients))
            (client,) = s.hub.clients
            assert isinstance(client, SseClient)
            await s.until(lambda: client.sent > 0)  # the stream has started: the bound is set
            await flood_until_closed(s, client, pad=pad)
            assert client.sent * pad < 1_000_000, f"{client.sent} updates went to the socket"
        finally:
            writer.close()
        await s.until(lambda: hub_is_empty(s))
        assert s.hub.counters.slow_closed == 1


def test_on_uvloop_as_pricestream_run_an_unmasked_frame_gets_close_1002(tmp_path: Path) -> None:
    """``pricestream run`` serves on uvloop, whose transports are not asyncio's own classes:
    the check must be under those connections too."""

    async def scenario() -> list[tuple[int, bytes]]:
        async with embedded_service(tmp_path / "data") as service:
            port = int(service.url.rsplit(":", 1)[1].strip("/"))
            peer = await RawWebSocket.open(port)
            try:
                peer.send_json({"op": "ping"}, masked=False)
                return await frames_until_end(peer)
            finally:
                peer.close()

    frames = uvloop.run(scenario())
    assert frames, "the connection ended without a close frame"
    opcode, payload = frames[-1]
    assert opcode == CLOSE
    assert int.from_bytes(payload[:2], "big") == CLOSE_PROTOCOL_ERROR
