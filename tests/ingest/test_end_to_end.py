"""Every vendor profile at once through the whole embedded service, and replay from the CLI.

Fake vendors on 127.0.0.1 stream prices; the service, configured with ``[[vendors]]`` tables,
collects them, makes composite prices, keeps candles, and shows every feed in
``GET /api/v1/vendors``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from tests.conftest import embedded_service
from tests.ingest import messages as m
from tests.ingest.fakes import (
    SUBSCRIBED,
    FakePoll,
    FakeStream,
    FakeWebsocket,
    Script,
    http_server,
    now_ms,
)

STEPS = 150  # 20 ms apart: three seconds of prices
GAP_S = 0.02


async def get(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.json()


async def wait_json(url: str, ok: Any, *, timeout_s: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        status, body = await get(url)
        if status == 200 and ok(body):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} never answered as expected: {status} {body}")
        await asyncio.sleep(0.1)


def stream(make: Any, *, head: list[bytes] | None = None, subscribed: bool = True) -> Script:
    """A script: the head, then a price every GAP_S (bad message after the 10th), to the end.

    With ``subscribed`` it starts once the client has sent its subscription.
    """
    t = now_ms()
    script: Script = [SUBSCRIBED] if subscribed else []
    script += head or []
    for i in range(STEPS):
        script += [make(i, t + i * 20), GAP_S]
        if i == 10:
            script.append(b"{oops")
    return script


def toml_table(name: str, kind: str, profile: str, url: str, symbols: dict[str, str],
               **extra: object) -> str:  # fmt: skip
    lines = ["[[vendors]]", f'name = "{name}"', f'kind = "{kind}"', f'profile = "{profile}"',
             f'url = "{url}"', f"symbols = {_inline(symbols)}"]  # fmt: skip
    lines += [
        f"{k} = {_inline(v) if isinstance(v, dict) else json.dumps(v)}" for k, v in extra.items()
    ]
    return "\n".join(lines) + "\n\n"


def _inline(d: dict[str, str]) -> str:
    return "{ " + ", ".join(f'"{k}" = "{v}"' for k, v in d.items()) + " }"


async def test_every_profile_reaches_the_candles_and_the_vendors_api(tmp_path: Path) -> None:
    t = now_ms()
    coinbase = FakeWebsocket(
        [stream(lambda i, ts: m.coinbase_ticker("BTC-USD", 95_000 + i, 95_001 + i, ts, i + 1),
                head=[m.COINBASE_SUBSCRIPTIONS])]
    )  # fmt: skip
    binance = FakeWebsocket(
        [stream(lambda i, ts: m.binance_book("BTCUSDT", 95_000 + i, 95_002 + i, i + 1),
                head=[m.BINANCE_ACK])]
    )  # fmt: skip
    twelve = FakeWebsocket(
        [stream(lambda i, ts: m.twelvedata_price("XAU/USD", 4050 + i / 100, ts),
                head=[m.TWELVEDATA_SUBSCRIBED])]
    )  # fmt: skip
    generic = FakeWebsocket(
        [
            stream(
                lambda i, ts: orjson.dumps({"s": "PT", "p": 1550 + i / 10, "t": ts}),
                subscribed=False,
            )
        ]
    )
    oanda = FakeStream(
        [[*stream(lambda i, ts: m.oanda_price("XAU_USD", 4050.1, 4050.5 + i / 100, ts),
                  subscribed=False), m.oanda_heartbeat(t)]]
    )  # fmt: skip
    gold = FakePoll(lambda path: m.gold_api_price("XAU", 4050.3, now_ms()))

    def moving_rates(path: str) -> bytes:
        rates.version += 1  # a new ETag each time: the price moves on every poll
        return m.metals_api_latest({"XAG": 1 / (50.5 + rates.version / 100)}, now_ms())

    rates = FakePoll(moving_rates)
    async with (
        coinbase, binance, twelve, generic,
        http_server(oanda.app()) as oanda_url,
        http_server(gold.app()) as gold_url,
        http_server(rates.app()) as rates_url,
    ):  # fmt: skip
        config = tmp_path / "vendors.toml"
        config.write_text(
            toml_table("coinbase", "websocket", "coinbase", coinbase.url, {"BTC-USD": "BTC-USD"})
            + toml_table("binance", "websocket", "binance", binance.url,
                         {"BTCUSDT": "BTC-USDT"})
            + toml_table("twelvedata", "websocket", "twelvedata", twelve.url,
                         {"XAU/USD": "XAU-USD"})
            + toml_table("mine", "websocket", "generic", generic.url, {"PT": "XPT-USD"},
                         fields={"symbol": "s", "price": "p", "ts": "t"})
            + toml_table("oanda", "http_stream", "oanda",
                         f"{oanda_url}/v3/accounts/1/pricing/stream", {"XAU_USD": "XAU-USD"})
            + toml_table("gold", "http_poll", "gold_api", gold_url, {"XAU": "XAU-USD"},
                         interval_ms=100)
            + toml_table("rates", "http_poll", "metals_api", rates_url, {"XAG": "XAG-USD"},
                         interval_ms=100)
        )  # fmt: skip
        async with embedded_service(tmp_path / "data", config=config) as service:
            api = service.url + "api/v1/"
            symbols = ["BTC-USD", "BTC-USDT", "XAG-USD", "XAU-USD", "XPT-USD"]
            for symbol in symbols:
                body = await wait_json(
                    f"{api}symbols/{symbol}/candles?res=1s",
                    lambda b: sum(c["ticks"] for c in b["candles"]) >= 3,
                )
                assert all(c["low"] <= c["close"] <= c["high"] for c in body["candles"])
            _, latest = await get(f"{api}symbols/XAU-USD/latest")
            assert latest["vendor"] == "composite"
            assert 4050.0 <= latest["price"] <= 4052.0
            names = ["binance", "coinbase", "gold", "mine", "oanda", "rates", "twelvedata"]
            vendors = await wait_json(
                f"{api}vendors",
                lambda b: (
                    [v["name"] for v in b] == names
                    and all(v["published"] and v["connected"] for v in b)
                ),
            )
    by_name = {v["name"]: v for v in vendors}
    for name in ("coinbase", "binance", "twelvedata", "mine", "oanda"):
        assert set(by_name[name]["rejects"]) == {"unparsable"}, by_name[name]
    for v in vendors:
        assert v["reporting"]
        assert v["last_message_age_ms"] is not None
        assert v["last_message_age_ms"] < 60_000
    assert by_name["oanda"]["kind"] == "http_stream"
    assert by_name["gold"]["profile"] == "gold_api"


async def test_the_vendors_api_lists_the_simulator_by_default(tmp_path: Path) -> None:
    async with embedded_service(tmp_path / "data") as service:
        [sim] = await wait_json(
            service.url + "api/v1/vendors", lambda b: len(b) == 1 and b[0]["published"] > 0
        )
    assert (sim["name"], sim["kind"], sim["connected"], sim["stale"]) == (
        "simulator", "simulator", True, False,
    )  # fmt: skip


def test_replay_from_the_command_line_fills_the_candles(tmp_path: Path) -> None:
    t0 = now_ms() - 3_600_000  # an hour ago
    lines = [
        orjson.dumps({"symbol": "XAU-USD", "ts_ms": t0 + i * 500, "price": 4000 + i % 7})
        for i in range(2_000)
    ]
    path = tmp_path / "ticks.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pricestream", "run", "--port", "0", "--data-dir",
         str(tmp_path / "data"), "--replay", str(path), "--speed", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PRICESTREAM_LOG_LEVEL": "warning"},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "open http://127.0.0.1:" in line, line
        url = line.split("open ", 1)[1].split()[0]
        candles = asyncio.run(
            wait_json(
                f"{url}api/v1/symbols/XAU-USD/candles?res=1m&limit=5000",
                lambda b: sum(c["ticks"] for c in b["candles"]) == 2_000,
            )
        )
    finally:
        proc.terminate()
        proc.wait(20)
    assert len(candles["candles"]) in (17, 18)  # 1,000 s of ticks in one-minute candles
    assert candles["candles"][0]["start_ms"] <= t0
