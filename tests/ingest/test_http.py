"""HTTP collectors end to end: polling (ETag, 304, 429 + Retry-After, errors) and NDJSON streams."""

from __future__ import annotations

import email.utils
from urllib.parse import parse_qs, urlsplit

import orjson

from ingest.http import retry_after_ms
from tests.ingest import messages as m
from tests.ingest.fakes import (
    SILENCE,
    FakePoll,
    FakeStream,
    Script,
    eventually,
    http_server,
    now_ms,
)
from tests.ingest.harness import collecting

FAST = {"backoff_min_ms": 10, "backoff_max_ms": 40}


def poll_vendor(
    name: str, profile: str, url: str, symbols: dict[str, str], **kw: object
) -> dict[str, object]:
    return {"name": name, "kind": "http_poll", "profile": profile, "url": url,
            "symbols": symbols, "interval_ms": 20, **FAST, **kw}  # fmt: skip


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    now = 1_795_000_000_000
    date = email.utils.formatdate((now + 30_000) / 1000, usegmt=True)
    assert retry_after_ms("7", now) == 7_000
    assert retry_after_ms(date, now) == 30_000
    assert retry_after_ms("soon", now) is None
    assert retry_after_ms(None, now) is None


async def test_gold_api_polling_honours_429_and_uses_conditional_requests() -> None:
    t = now_ms()
    prices = {"XAU": 4050.5, "XAG": 50.25}

    def body(path: str) -> bytes:
        metal = path.rsplit("/", 1)[-1]
        if metal == "XPT":
            return b'{"error":"Symbol not found"}'
        if vendor.version == 3:
            return b"<html>maintenance</html>"
        return m.gold_api_price(metal, prices[metal], t + vendor.version)

    vendor = FakePoll(body, throttle=1, retry_after="1")
    async with http_server(vendor.app()) as url:
        table = poll_vendor("gold", "gold_api", url, {"XAU": "XAU-USD", "XAG": "XAG-USD"})
        async with collecting([table]) as h:
            await eventually(lambda: vendor.statuses().count(304) >= 4)
            prices["XAU"] = 4051.0
            vendor.version = 2  # a new ETag: the next request gets the new price
            await eventually(lambda: len(h.ticks) >= 4)
            vendor.version = 3  # the vendor answers garbage
            await eventually(lambda: "unparsable" in h.reasons())
            feed = h.feed("gold")
    first, second = vendor.log[0], vendor.log[1]
    assert (first[2], second[2]) == (429, 200)
    assert second[0] - first[0] >= 1.0  # Retry-After: 1 was honoured
    assert [(x.symbol, x.price, x.bid, x.ask) for x in h.ticks] == [
        ("XAU-USD", 4050.5, 4050.5, 4050.5), ("XAG-USD", 50.25, 50.25, 50.25),
        ("XAU-USD", 4051.0, 4051.0, 4051.0), ("XAG-USD", 50.25, 50.25, 50.25),
    ]  # fmt: skip
    assert {path for _, path, _ in vendor.log} == {"/price/XAU", "/price/XAG"}
    assert feed.stats.errors >= 1  # the 429
    assert feed.stats.connected


async def test_metals_api_rates_become_inverse_prices_and_errors_are_counted() -> None:
    t = now_ms()

    def body(path: str) -> bytes:
        if vendor.version == 2:
            return m.METALS_API_ERROR
        return m.metals_api_latest({"XAU": 1 / 4000, "XAG": 1 / 50}, t)

    vendor = FakePoll(body)
    async with http_server(vendor.app()) as url:
        table = poll_vendor(
            "rates", "metals_api", f"{url}/api/latest?access_key=k&base=USD",
            {"XAU": "XAU-USD", "XAG": "XAG-USD"},
        )  # fmt: skip
        async with collecting([table]) as h:
            await eventually(lambda: len(h.ticks) >= 2)
            vendor.version = 2
            feed = h.feed("rates")
            await eventually(lambda: feed.stats.errors >= 1)
    assert sorted((x.symbol, round(x.price, 6)) for x in h.ticks) == [
        ("XAG-USD", 50.0), ("XAU-USD", 4000.0)
    ]  # fmt: skip
    query = parse_qs(urlsplit(vendor.log[0][1]).query)
    assert query == {"access_key": ["k"], "base": ["USD"], "symbols": ["XAU,XAG"]}
    assert "valid API Access Key" in str(feed.stats.last_error)


async def test_generic_profile_polls_a_list_of_records() -> None:
    t = now_ms()
    records = [{"sym": "AU", "bid": 4050.0, "ask": 4050.6, "at": t / 1000},
               {"sym": "PT", "bid": 1550.0, "ask": 1551.0, "at": t / 1000}]  # fmt: skip
    vendor = FakePoll(lambda path: orjson.dumps({"quotes": records}))
    async with http_server(vendor.app()) as url:
        table = poll_vendor(
            "gen", "generic", f"{url}/q", {"AU": "XAU-USD", "PT": "XPT-USD"}, records="quotes",
            fields={"symbol": "sym", "bid": "bid", "ask": "ask", "ts": "at"}, ts_unit="s",
        )  # fmt: skip
        async with collecting([table]) as h:
            await eventually(lambda: len(h.ticks) >= 2 and 304 in vendor.statuses())
    assert [(x.symbol, x.price, x.ts_ms) for x in h.ticks] == [
        ("XAU-USD", 4050.3, t), ("XPT-USD", 1550.5, t)
    ]  # fmt: skip


async def test_a_server_error_backs_off_and_recovers() -> None:
    t = now_ms()
    vendor = FakePoll(lambda path: m.gold_api_price("XAU", 4050.0, t), throttle=3, retry_after="")
    async with (
        http_server(vendor.app()) as url,
        collecting([poll_vendor("g", "gold_api", url, {"XAU": "XAU-USD"})]) as h,
    ):
        await eventually(lambda: len(h.ticks) == 1)
    assert vendor.statuses()[:4] == [429, 429, 429, 200]


async def test_oanda_stream_reconnects_after_the_end_silence_and_a_429() -> None:
    t = now_ms()
    scripts: list[Script] = [
        [m.oanda_price("XAU_USD", 4050.1, 4050.5, t), m.oanda_heartbeat(t), b"garbage",
         m.oanda_price("XAG_USD", 50.1, 50.2, t), m.OANDA_ERROR],  # then the body ends
        [m.oanda_price("XAU_USD", 4050.2, 4050.6, t + 1), SILENCE],  # read times out
        [],  # answered 429 (below)
        [m.oanda_price("XAU_USD", 4050.3, 4050.7, t + 2), m.oanda_heartbeat(t), SILENCE],
    ]  # fmt: skip
    vendor = FakeStream(scripts, status=[200, 200, 429, 200])
    async with http_server(vendor.app()) as url:
        table = {
            "name": "oanda", "kind": "http_stream", "profile": "oanda",
            "url": f"{url}/v3/accounts/101-001-1-001/pricing/stream",
            "symbols": {"XAU_USD": "XAU-USD", "XAG_USD": "XAG-USD"},
            "headers": {"Authorization": "Bearer secret"}, "stale_after_ms": 300, **FAST,
        }  # fmt: skip
        async with collecting([table]) as h:
            await eventually(lambda: len(h.ticks) >= 4)
            feed = h.feed("oanda")
    assert [(x.symbol, x.bid) for x in h.ticks] == [
        ("XAU-USD", 4050.1), ("XAG-USD", 50.1), ("XAU-USD", 4050.2), ("XAU-USD", 4050.3)
    ]  # fmt: skip
    assert h.ticks[0].ts_ms == t
    first = vendor.requests[0]
    assert first.path == "/v3/accounts/101-001-1-001/pricing/stream"
    assert first.query["instruments"] == "XAU_USD,XAG_USD"
    assert first.headers["Authorization"] == "Bearer secret"
    assert feed.stats.heartbeats >= 2
    assert feed.stats.rejects == {"unparsable": 1}
    assert feed.stats.reconnects >= 3
    assert vendor.times[3] - vendor.times[2] >= 1.0  # the 429's Retry-After: 1 was honoured


async def test_a_stream_line_without_end_is_dead_lettered_not_buffered_forever() -> None:
    t = now_ms()
    huge = b'{"type":"PRICE","pad":"' + b"x" * (1 << 20)  # no newline for over a MiB
    scripts: list[Script] = [[huge, m.oanda_price("XAU_USD", 4050.1, 4050.5, t), 5.0]]
    vendor = FakeStream(scripts)
    async with http_server(vendor.app()) as url:
        table = {"name": "o", "kind": "http_stream", "profile": "oanda", "url": url,
                 "symbols": {"XAU_USD": "XAU-USD"}, **FAST}  # fmt: skip
        async with collecting([table]) as h:
            await eventually(lambda: len(h.ticks) == 1 and len(h.letters) >= 1)
    assert h.reasons() == {"unparsable"}
    assert sum(len(d.raw) for d in h.letters) >= 1 << 20  # the bytes are kept, not dropped


async def test_polling_with_last_modified_and_a_request_that_times_out() -> None:
    t = now_ms()
    vendor = FakePoll(lambda path: m.gold_api_price("XAU", 4050.0, t), etags=False, stall_s=2.0)
    async with http_server(vendor.app()) as url:
        table = poll_vendor("g", "gold_api", url, {"XAU": "XAU-USD"}, timeout_ms=200)
        async with collecting([table]) as h:
            await eventually(lambda: len(h.ticks) == 1 and vendor.statuses().count(304) >= 2)
            feed = h.feed("g")
    assert feed.stats.errors == 1
    assert "TimeoutError" in str(feed.stats.last_error)
    assert "If-Modified-Since" not in vendor.seen_headers[0]
    stamp = email.utils.formatdate(1_795_000_001, usegmt=True)  # FakePoll's Last-Modified
    assert vendor.seen_headers[-1]["If-Modified-Since"] == stamp
