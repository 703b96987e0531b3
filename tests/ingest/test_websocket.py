"""Websocket collectors end to end against fake vendor servers speaking each protocol.

Each test runs the real collector (built from a ``[[vendors]]`` table) against a local websocket
server on 127.0.0.1: subscribe and resubscribe, heartbeats both ways, vendor errors, malformed
messages, duplicates, disconnects and silence (the watchdog reconnects).
"""

from __future__ import annotations

import orjson

from tests.ingest import messages as m
from tests.ingest.fakes import SILENCE, SUBSCRIBED, FakeWebsocket, Script, eventually, now_ms
from tests.ingest.harness import collecting

FAST = {"backoff_min_ms": 10, "backoff_max_ms": 40, "ping_interval_ms": 1_000}


def ws_vendor(
    name: str, profile: str, url: str, symbols: dict[str, str], **kw: object
) -> dict[str, object]:
    return {"name": name, "kind": "websocket", "profile": profile, "url": url,
            "symbols": symbols, **FAST, **kw}  # fmt: skip


async def test_coinbase_ticker_through_disconnect_and_silence() -> None:
    t = now_ms()
    first: Script = [
        SUBSCRIBED,
        m.COINBASE_SUBSCRIPTIONS,
        m.coinbase_ticker("BTC-USD", 100.0, 100.2, t, 10),
        m.coinbase_heartbeat(t),
        b"{not json",
        m.COINBASE_ERROR,
        m.coinbase_ticker("BTC-USD", 100.0, 100.2, t, 10),  # re-sent: a duplicate
        m.coinbase_ticker("ETH-USD", 10.0, 10.2, t, 11),  # not configured
        m.coinbase_ticker("BTC-USD", 100.1, 100.3, t + 1, 12),
    ]  # then the server hangs up
    second: Script = [SUBSCRIBED, m.coinbase_ticker("BTC-USD", 100.2, 100.4, t + 2, 20), SILENCE]
    third: Script = [SUBSCRIBED, m.coinbase_ticker("BTC-USD", 100.3, 100.5, t + 3, 30), 5.0]
    async with FakeWebsocket([first, second, third]) as server:
        table = ws_vendor("cb", "coinbase", server.url, {"BTC-USD": "BTC-USD"}, stale_after_ms=300)
        async with collecting([table]) as h:
            await eventually(lambda: len(h.ticks) >= 4)
            feed = h.feed("cb")
            await eventually(lambda: feed.stats.reconnects >= 2)
    assert [x.bid for x in h.ticks] == [100.0, 100.1, 100.2, 100.3]
    assert {(x.symbol, x.vendor) for x in h.ticks} == {("BTC-USD", "cb")}
    assert h.ticks[0].ts_ms == t
    assert h.ticks[0].seq == 10
    subscribe = orjson.loads(server.received[0][0])
    assert subscribe == {"type": "subscribe", "product_ids": ["BTC-USD"],
                         "channels": ["ticker", "heartbeat"]}  # fmt: skip
    assert all(got and got[0] == server.received[0][0] for got in server.received[:3])
    assert h.reasons() == {"unparsable", "unknown symbol"}
    assert b"ETH-USD" in next(d.raw for d in h.letters if d.reason.startswith("unknown"))
    s = feed.stats
    assert (s.duplicates, s.heartbeats, s.rejects) == (1, 1, {"unparsable": 1, "unknown symbol": 1})
    assert server.connections >= 3  # the silent second connection was closed by the watchdog
    assert s.errors >= 2  # the vendor's error message and the silence


async def test_binance_book_ticker_raw_and_combined_streams() -> None:
    script: Script = [
        SUBSCRIBED,
        m.BINANCE_ACK,
        m.binance_book("BTCUSDT", 95_000.0, 95_000.5, 400),
        m.binance_combined("BTCUSDT", 95_000.1, 95_000.6, 401),
        m.binance_book("BTCUSDT", 95_000.1, 95_000.6, 401),  # same update id
        m.BINANCE_ERROR,
        b'{"s":"BTCUSDT","b":"95000","a":"94000","u":402}',  # crossed
        b'{"s":"BTCUSDT","b":"nan","a":"1","u":403}',
    ]
    async with FakeWebsocket([script, [SUBSCRIBED, 5.0]]) as server:
        table = ws_vendor("bn", "binance", server.url, {"BTCUSDT": "BTC-USDT"})
        async with collecting([table]) as h:
            await eventually(lambda: len(h.letters) >= 2 and server.connections >= 2)
            feed = h.feed("bn")
    assert [(x.symbol, x.bid, x.ask, x.price, x.seq) for x in h.ticks] == [
        ("BTC-USDT", 95_000.0, 95_000.5, 95_000.25, 400),
        ("BTC-USDT", 95_000.1, 95_000.6, 95_000.35, 401),
    ]
    assert orjson.loads(server.received[0][0]) == {
        "method": "SUBSCRIBE", "params": ["btcusdt@bookTicker"], "id": 1,
    }  # fmt: skip
    assert server.received[1][0] == server.received[0][0]  # resubscribed after the disconnect
    assert h.reasons() == {"crossed quote", "non-finite bid"}
    assert (feed.stats.duplicates, feed.stats.reconnects) == (1, 1)
    assert feed.stats.errors >= 1  # the vendor's error message


async def test_twelvedata_application_heartbeats_keep_a_quiet_feed_alive() -> None:
    t = now_ms()

    def answer(raw: bytes) -> bytes | None:
        return m.TWELVEDATA_HEARTBEAT if orjson.loads(raw) == {"action": "heartbeat"} else None

    script: Script = [
        SUBSCRIBED,
        m.TWELVEDATA_SUBSCRIBED,
        m.twelvedata_price("XAU/USD", 4050.0, t),
        m.twelvedata_price("XAU/USD", 4050.4, t + 1000),
        m.TWELVEDATA_ERROR,
        m.twelvedata_price("EUR/USD", 1.1, t),
        8.0,  # quiet apart from the heartbeats: no reconnect
    ]
    async with FakeWebsocket([script], answer=answer) as server:
        table = ws_vendor(
            "td", "twelvedata", server.url, {"XAU/USD": "XAU-USD"},
            heartbeat_interval_ms=40, stale_after_ms=400,
        )  # fmt: skip
        async with collecting([table]) as h:
            feed = h.feed("td")
            await eventually(lambda: feed.stats.heartbeats >= 15)  # well past stale_after_ms
    assert server.connections == 1
    assert feed.stats.reconnects == 0
    assert orjson.loads(server.received[0][0]) == {
        "action": "subscribe", "params": {"symbols": "XAU/USD"},
    }  # fmt: skip
    assert server.received[0].count(b'{"action":"heartbeat"}') >= 15
    assert [(x.symbol, x.bid, x.ask, x.price) for x in h.ticks] == [
        ("XAU-USD", 4049.85, 4050.15, 4050.0), ("XAU-USD", 4050.25, 4050.55, 4050.4),
    ]  # fmt: skip
    assert h.reasons() == {"unknown symbol"}
    assert feed.stats.last_error == "401: apikey is invalid"


async def test_generic_profile_over_websocket_reports_sequence_gaps() -> None:
    t = now_ms()

    def msg(seq: int, px: float) -> bytes:
        return orjson.dumps({"kind": "q", "d": {"sym": "AU", "px": px, "at": t, "n": seq}})

    script: Script = [SUBSCRIBED, msg(1, 10.0), msg(2, 10.1), msg(6, 10.2), b'{"kind":"hb"}',
              msg(6, 10.2), msg(7, 10.3), 5.0]  # fmt: skip
    async with FakeWebsocket([script]) as server:
        table = ws_vendor(
            "gen", "generic", server.url, {"AU": "XAU-USD"}, subscribe='{"op":"sub","ch":"AU"}',
            records="d", fields={"symbol": "sym", "price": "px", "ts": "at", "seq": "n"},
            heartbeat_field="kind", heartbeat_value="hb", gapless=True,
        )  # fmt: skip
        async with collecting([table]) as h:
            await eventually(lambda: len(h.ticks) >= 4)
            s = h.feed("gen").stats
    assert server.received[0] == [b'{"op":"sub","ch":"AU"}']
    assert [x.seq for x in h.ticks] == [1, 2, 6, 7]
    assert (s.gaps, s.missed, s.duplicates, s.heartbeats) == (1, 3, 1, 1)


async def test_a_refused_connection_is_retried_with_backoff() -> None:
    async with FakeWebsocket([[5.0]]) as server:
        url = server.url
    # nothing listens there any more: every attempt is refused and counted
    async with collecting([ws_vendor("gone", "coinbase", url, {"BTC-USD": "BTC-USD"})]) as h:
        feed = h.feed("gone")
        await eventually(lambda: feed.stats.reconnects >= 3)
        await eventually(lambda: any(not st.connected for st in h.statuses))
    assert "connection to" in str(feed.stats.last_error)
    assert not feed.stats.connected


async def test_one_absurd_sequence_number_neither_freezes_the_price_nor_keeps_the_feed_fresh() -> (
    None
):
    t = now_ms()
    tick = m.coinbase_ticker
    script: Script = [
        SUBSCRIBED,
        tick("BTC-USD", 100.0, 100.2, t, 10),
        tick("BTC-USD", 100.1, 100.3, t + 1, 9_000_000_000_000_000_000),  # absurd
        tick("BTC-USD", 100.2, 100.4, t + 2, 11),
        tick("BTC-USD", 100.3, 100.5, t + 3, 12),
        # then only re-sent numbers, for longer than the staleness limit
        *[step for _ in range(40) for step in (tick("BTC-USD", 100.3, 100.5, t + 3, 12), 0.05)],
        5.0,
    ]
    async with FakeWebsocket([script]) as server:
        table = ws_vendor("cb", "coinbase", server.url, {"BTC-USD": "BTC-USD"},
                          stale_after_ms=300, heartbeat_interval_ms=0)  # fmt: skip
        async with collecting([table]) as h:
            await eventually(lambda: len(h.ticks) == 3 and len(h.letters) == 1)
            feed = h.feed("cb")
            await eventually(lambda: feed.stats.duplicates >= 1)
            await eventually(lambda: feed.status(now_ms()).stale)
            assert feed.stats.duplicates < 40  # stale while re-sent numbers still arrive
    assert [x.bid for x in h.ticks] == [100.0, 100.2, 100.3]
    [letter] = h.letters
    assert letter.reason.startswith("seq jump")
    assert b"9000000000000000000" in letter.raw
