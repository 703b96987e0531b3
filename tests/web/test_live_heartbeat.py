"""Websocket heartbeats: the server pings, and drops a connection whose peer does not pong.

Raw clients (tests/web/raw_ws.py) play the peers, since a library client pongs by itself.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from tests.web.live_server import live_server
from tests.web.raw_ws import CLOSE, PING, TEXT, RawWebSocket
from web.live import LiveConfig, WsClient

CH = "ticks:XAU-USD"


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].strip("/"))


async def test_a_client_that_never_answers_pings_is_dropped_and_one_that_does_stays(
    tmp_path: Path,
) -> None:
    config = LiveConfig(heartbeat_ms=400)  # a ping every 0.4 s, its pong due within 0.2 s
    async with live_server(tmp_path, config) as s:
        port = port_of(s.url)
        silent = await RawWebSocket.open(port)  # reads everything, answers nothing
        polite = await RawWebSocket.open(port)
        texts: asyncio.Queue[bytes] = asyncio.Queue()
        answering = asyncio.create_task(polite.answer_pings(texts))
        await s.until(lambda: len(s.hub.clients) == 2)

        seen: list[int] = []
        async with asyncio.timeout(10):  # generous: the drop is due 0.6 s after the handshake
            while (got := await silent.frame()) is not None:
                seen.append(got[0])
        assert seen  # pinged at least once,
        assert set(seen) == {PING}  # then cut without a close frame (clients report 1006)
        await s.until(lambda: len(s.hub.clients) == 1)

        # The one that pongs lives on through several more pings than the silent one got.
        await s.until(lambda: polite.pings >= len(seen) + 3)
        assert not answering.done()
        assert len(s.hub.clients) == 1
        polite.send_json({"op": "ping"})
        assert orjson.loads(await asyncio.wait_for(texts.get(), 5)) == {"type": "pong"}
        polite.close()
        silent.close()
        await asyncio.gather(answering, return_exceptions=True)


async def test_a_client_that_reads_nothing_is_dropped_and_its_buffered_updates_freed(
    tmp_path: Path,
) -> None:
    # Only the heartbeat can close this client: no conflation, no byte limit, no stall limit.
    config = LiveConfig(heartbeat_ms=2_000, stall_timeout_ms=600_000, send_buffer_messages=100_000,
                        send_buffer_bytes=256 * 1024 * 1024)  # fmt: skip
    async with live_server(tmp_path, config) as s:
        await s.ticks(range(1, 2))
        await s.seq_reached(CH, 1)
        peer = await RawWebSocket.open(port_of(s.url))
        peer.send_json({"op": "subscribe", "channels": [CH]})  # and never reads again
        await s.until(lambda: len(s.hub.clients) == 1 and CH in next(iter(s.hub.clients)).channels)
        (client,) = s.hub.clients
        assert isinstance(client, WsClient)
        transport = client.request.transport
        assert transport is not None
        seq = 2
        # Until the server holds more for it than the peer's side can still take in (its
        # receive buffer, which the kernel grows, and its reader's): then some is never sent.
        for _ in range(200):
            if transport.get_write_buffer_size() + client.box.bytes > 2_000_000:
                break
            await s.ticks(range(seq, seq + 50), pad=16_000)
            seq += 50
            await s.seq_reached(CH, seq - 1)
        assert transport.get_write_buffer_size() > 0
        assert client.box.bytes > 0
        assert s.hub.clients == {client}, "dropped before its buffer filled: raise heartbeat_ms"

        await s.until(lambda: not s.hub.clients)  # no pong: dropped
        # Let go at once of what waited for a peer that reads nothing, rather than keep it (and
        # the socket) until TCP gives up.
        await s.until(lambda: transport.get_write_buffer_size() == 0)
        assert transport.is_closing()
        frames = await asyncio.wait_for(_count_until_end(peer), 30)
        assert frames[CLOSE] == 0
        assert frames[TEXT] < seq - 1  # some updates were never delivered: they were dropped
        peer.close()


async def _count_until_end(peer: RawWebSocket) -> dict[int, int]:
    counts = {TEXT: 0, PING: 0, CLOSE: 0}
    while (got := await peer.frame()) is not None:
        counts[got[0]] = counts.get(got[0], 0) + 1
    return counts
