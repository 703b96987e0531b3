"""Resume, conflation, max_hz and slow clients, with real websocket clients on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.web.live_server import LiveServer, candle, drain, live_server, quiet, recv, send
from web.live import LiveConfig
from web.metrics import LIVE

CH = "ticks:XAU-USD"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[LiveServer]:
    config = LiveConfig(history_messages=100, send_buffer_messages=50, send_buffer_bytes=400_000)
    async with live_server(tmp_path, config) as s:
        await s.ticks(range(1, 11))
        await s.seq_reached(CH, 10)
        yield s


async def test_resume_after_a_dropped_connection_delivers_exactly_the_missed_seqs(
    server: LiveServer,
) -> None:
    async with connect(server.ws_url) as ws:
        await send(ws, {"op": "subscribe", "channels": [CH]})
        snap = await recv(ws)
        assert (snap["type"], snap["seq"]) == ("snapshot", 10)
        await server.ticks(range(11, 21))
        seen = [(await recv(ws))["seq"] for _ in range(10)]
        assert seen == list(range(11, 21))
    await server.ticks(range(21, 61))  # while the client is away
    await server.seq_reached(CH, 60)
    async with connect(server.ws_url) as ws:
        await send(ws, {"op": "subscribe", "channels": [CH], "since": {CH: 20}})
        head = await recv(ws)
        assert head == {"type": "subscribed", "channel": CH, "seq": 20, "recovered": True,
                        "missed": 40}  # fmt: skip
        missed = [await recv(ws) for _ in range(40)]
        assert [m["seq"] for m in missed] == list(range(21, 61))
        assert all(m["type"] == "update" and "conflated" not in m for m in missed)
        assert missed[0]["data"]["price"] == pytest.approx(4_000.21)
        await server.ticks(range(61, 63))
        assert [(await recv(ws))["seq"] for _ in range(2)] == [61, 62]
        assert await quiet(ws) == []


async def test_the_ticks_of_one_record_arrive_in_order_to_plain_and_throttled_clients(
    server: LiveServer,
) -> None:
    await server.ticks(range(1, 2), symbol="XAG-USD")
    await server.seq_reached("ticks:XAG-USD", 1)
    async with (
        connect(server.ws_url) as plain,
        connect(server.ws_url) as throttled,
        connect(server.ws_url) as other,
    ):
        await send(plain, {"op": "subscribe", "channels": [CH]})
        await send(throttled, {"op": "subscribe", "channels": [CH], "max_hz": 1})
        await send(other, {"op": "subscribe", "channels": ["ticks:XAG-USD"]})
        assert (await recv(plain))["seq"] == 10
        assert (await recv(throttled))["seq"] == 10
        assert (await recv(other))["seq"] == 1
        await server.ticks_in_one_record(range(11, 16))
        await server.ticks_in_one_record(range(2, 5), symbol="XAG-USD")
        got = [await recv(plain) for _ in range(5)]
        assert [(m["type"], m["seq"]) for m in got] == [("update", s) for s in range(11, 16)]
        assert [m["data"]["price"] for m in got] == pytest.approx(
            [4_000 + s / 100 for s in range(11, 16)]
        )
        assert [(await recv(other))["seq"] for _ in range(3)] == [2, 3, 4]
        newest = (await quiet(throttled, wait_s=1.5))[-1]  # at most one a second: the newest
        assert (newest["seq"], newest.get("conflated")) == (15, True)
        await server.ticks(range(16, 17))  # and a lone tick after the run follows on
        assert (await recv(plain))["seq"] == 16
        assert await quiet(plain) == []
        assert server.hub.delivered >= 5 + 3 + 1


async def test_resume_past_the_history_gets_a_fresh_snapshot_marked_not_recovered(
    server: LiveServer,
) -> None:
    await server.ticks(range(11, 211))  # the history holds the last 100
    await server.seq_reached(CH, 210)
    async with connect(server.ws_url) as ws:
        await send(ws, {"op": "subscribe", "channels": [CH], "since": {CH: 50}})
        snap = await recv(ws)
        assert snap["type"] == "snapshot"
        assert snap["recovered"] is False
        assert snap["seq"] == 210
        assert snap["data"]["price"] == pytest.approx(4_002.10)
        await server.ticks(range(211, 212))
        assert (await recv(ws))["seq"] == 211


async def test_resume_from_the_newest_seq_gets_nothing_but_what_follows(
    server: LiveServer,
) -> None:
    async with connect(server.ws_url) as ws:
        await send(ws, {"op": "subscribe", "channels": [CH], "since": {CH: 10}})
        assert (await recv(ws))["missed"] == 0
        await server.ticks(range(11, 13))
        assert [(await recv(ws))["seq"] for _ in range(2)] == [11, 12]


async def test_history_older_than_its_age_is_not_replayed(tmp_path: Path) -> None:
    async with live_server(tmp_path, LiveConfig(history_age_ms=0)) as s:
        await s.ticks(range(1, 11))
        await s.seq_reached(CH, 10)
        async with connect(s.ws_url) as ws:
            await send(ws, {"op": "subscribe", "channels": [CH], "since": {CH: 5}})
            snap = await recv(ws)
            assert (snap["type"], snap["recovered"], snap["seq"]) == ("snapshot", False, 10)


async def test_a_client_that_stops_reading_stays_bounded_and_does_not_slow_a_fast_one(
    server: LiveServer,
) -> None:
    total, pad = 4_000, 4_000  # about 16 MB of updates: more than the socket buffers hold
    slow = await connect(server.ws_url, max_queue=1)  # reads 1 message, then the socket fills
    await send(slow, {"op": "subscribe", "channels": [CH]})
    await server.until(lambda: len(server.hub.channels[CH].subscribers) == 1)
    (slow_side,) = server.hub.channels[CH].subscribers
    async with connect(server.ws_url) as fast:
        await send(fast, {"op": "subscribe", "channels": [CH]})
        assert (await recv(fast))["type"] == "snapshot"
        (fast_client,) = server.hub.channels[CH].subscribers - {slow_side}
        got: list[int] = []
        for start in range(11, 11 + total, 40):  # publish in batches the fast client keeps up with
            await server.ticks(range(start, start + 40), pad=pad)
            while len(got) < start + 40 - 11:
                msg = await recv(fast)
                assert "conflated" not in msg
                got.append(msg["seq"])
        assert got == list(range(11, 11 + total))  # every update, none conflated
        assert fast_client.box.conflated == 0
        limit = server.hub.config.send_buffer_bytes
        assert 0 < slow_side.box.peak_bytes <= limit  # server memory for it stayed bounded
        assert slow_side.box.conflated > total // 2  # most of its updates were replaced, not queued
        assert len(slow_side.box.queue) <= server.hub.config.send_buffer_messages + 1
        assert server.app[LIVE].conflated == slow_side.box.conflated  # as /metrics reports it
        assert slow_side.closing is None
    # The slow client catches up with the newest value, marked as conflated.
    last = None
    while last is None or last.get("seq") != 10 + total:
        last = await recv(slow)
    assert last["conflated"] is True
    await slow.close()


async def test_a_client_past_the_byte_limit_is_closed_with_4008(tmp_path: Path) -> None:
    config = LiveConfig(send_buffer_bytes=20_000, stall_timeout_ms=60_000)
    async with live_server(tmp_path, config) as s:
        await s.ticks(range(1, 2))  # the symbol is known once it has a price
        await s.candles([(1, candle(0, 1.0))])
        await s.seq_reached("candles:XAU-USD:1s", 1)
        ws = await connect(s.ws_url, max_queue=1)
        await send(ws, {"op": "subscribe", "channels": ["candles:XAU-USD:1s"]})
        await s.until(lambda: len(s.hub.clients) == 1 and s.hub.clients.copy().pop().channels)
        (client,) = s.hub.clients
        # every candle is its own bucket: nothing to collapse, so the outbox grows to the limit
        for batch in range(20):
            await s.candles(
                [(2 + batch * 500 + i, candle(1 + batch * 500 + i, 2.0)) for i in range(500)]
            )
            await s.seq_reached("candles:XAU-USD:1s", 1 + (batch + 1) * 500)
            if client.closing is not None:
                break
        assert client.closing is not None
        assert "too slow" in client.closing
        assert client.box.peak_bytes <= config.send_buffer_bytes + 500
        assert client.box.bytes == 0  # freed at once
        assert s.app[LIVE].slow_closed == 1
        assert s.app[LIVE].dropped > 0  # the updates that were waiting, never sent
        await s.until(lambda: not s.hub.clients)
        with pytest.raises(ConnectionClosed):
            await drain(ws)
        assert ws.close_code in (4008, 1006)  # 4008 when the close frame got through
        await ws.close()


async def test_a_socket_that_accepts_nothing_is_closed_after_the_stall_timeout(
    tmp_path: Path,
) -> None:
    # no conflation and a generous byte limit: only the stall can close this client
    config = LiveConfig(stall_timeout_ms=300, send_buffer_messages=100_000,
                        send_buffer_bytes=256 * 1024 * 1024)  # fmt: skip
    async with live_server(tmp_path, config) as s:
        await s.ticks(range(1, 2))
        await s.seq_reached(CH, 1)
        ws = await connect(s.ws_url, max_queue=1)
        await send(ws, {"op": "subscribe", "channels": [CH]})
        await s.until(lambda: len(s.hub.clients) == 1 and s.hub.clients.copy().pop().channels)
        (client,) = s.hub.clients
        seq = 2
        for _ in range(100):  # up to 100 x 100 x 16 KB: far more than the socket buffers hold
            if client.closing is not None:
                break
            await s.ticks(range(seq, seq + 100), pad=16_000)
            seq += 100
            await s.seq_reached(CH, seq - 1)
        assert client.closing is not None
        assert "nothing read" in client.closing
        await s.until(lambda: not s.hub.clients)
        ws.transport.abort()  # a close handshake would first read the megabytes in flight


async def test_max_hz_sends_only_the_newest_value_per_interval(server: LiveServer) -> None:
    async with connect(server.ws_url) as ws:
        await send(ws, {"op": "subscribe", "channels": [CH], "max_hz": 2})
        assert (await recv(ws))["seq"] == 10
        await server.ticks(range(11, 211))  # one burst: the hub takes it in one poll
        first = await recv(ws)
        assert (first["seq"], first["conflated"]) == (210, True)
        assert first["data"]["price"] == pytest.approx(4_002.10)
        await server.ticks(range(211, 411))
        second = await recv(ws)
        assert second["seq"] == 410
        assert await quiet(ws, wait_s=0.8) == []


async def test_candle_updates_of_one_bucket_collapse_into_the_newest(server: LiveServer) -> None:
    ch = "candles:XAU-USD:1s"
    await server.candles([(1, candle(0, 1.0))])
    await server.seq_reached(ch, 1)
    async with connect(server.ws_url) as ws:
        await send(ws, {"op": "subscribe", "channels": [ch], "max_hz": 1})
        assert (await recv(ws))["seq"] == 1
        updates = [(s, candle(0, float(s))) for s in range(2, 52)]
        updates += [(s, candle(1, float(s))) for s in range(52, 102)]
        await server.candles(updates)
        got = [await recv(ws), await recv(ws)]
        assert [(m["seq"], m["data"]["close"]) for m in got] == [(51, 51.0), (101, 101.0)]
        assert got[0]["conflated"] is True
        assert got[1]["conflated"] is True  # 52..100 were replaced by 101
        assert await quiet(ws) == []


async def test_ping_op_gets_a_pong(server: LiveServer) -> None:
    async with connect(server.ws_url) as ws:
        await send(ws, {"op": "ping"})
        assert await recv(ws) == {"type": "pong"}


async def test_a_message_over_the_size_limit_closes_with_1009(tmp_path: Path) -> None:
    config = LiveConfig(max_message_bytes=1_024)
    async with live_server(tmp_path, config) as s, connect(s.ws_url) as ws:
        await send(ws, {"op": "subscribe", "channels": ["ticks:XAU-USD"] * 100})
        with pytest.raises(ConnectionClosed):
            await recv(ws)
        assert ws.close_code == 1009


async def test_too_many_channels_is_an_error_and_keeps_the_ones_allowed(tmp_path: Path) -> None:
    async with live_server(tmp_path, LiveConfig(max_channels=2)) as s:
        for symbol in ("XAU-USD", "XAG-USD", "XPT-USD"):
            await s.ticks(range(1, 2), symbol=symbol)
            await s.seq_reached(f"ticks:{symbol}", 1)
        async with connect(s.ws_url) as ws:
            three = ["ticks:XAU-USD", "ticks:XAG-USD", "ticks:XPT-USD"]
            await send(ws, {"op": "subscribe", "channels": three})
            got = [await recv(ws) for _ in range(3)]
            assert [m["type"] for m in got] == ["snapshot", "snapshot", "error"]
            assert got[2]["code"] == "too_many_channels"
            assert "at most 2" in got[2]["message"]
