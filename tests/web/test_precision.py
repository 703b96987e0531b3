"""Every price the API, the websocket feed, snapshots and charts print is rounded to its
symbol's precision.

The simulator's three vendors disagree, so the composite is a median of mids: without the
rounding on output its prices read 4049.5249999999996 and changes 0.09000000000014552.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from stream.contract import METAL_DECIMALS
from tests.conftest import embedded_service
from tests.web.test_api import METALS, wait_for_prices

PRICE_KEYS = {"bid", "ask", "price", "open", "high", "low", "close", "change"}


def places(value: float) -> int:
    """How many decimals ``value`` prints with (its shortest repr, as JSON has it)."""
    text = repr(value)
    assert "e" not in text, text
    return len(text.split(".")[1].rstrip("0")) if "." in text else 0


def price_numbers(body: Any) -> list[float]:
    """Every number under a price key, anywhere in a JSON body."""
    out: list[float] = []
    if isinstance(body, dict):
        for key, value in body.items():
            if key in PRICE_KEYS and isinstance(value, float | int):
                out.append(float(value))
            else:
                out += price_numbers(value)
    elif isinstance(body, list):
        for item in body:
            out += price_numbers(item)
    return out


async def fetch(http: aiohttp.ClientSession, url: str) -> bytes:
    async with http.get(url) as resp:
        assert resp.status == 200, (url, resp.status, await resp.text())
        return await resp.read()


async def test_json_csv_txt_and_charts_print_prices_to_the_symbols_precision(
    tmp_path: Path,
) -> None:
    async with embedded_service(tmp_path / "data") as service, aiohttp.ClientSession() as http:
        await wait_for_prices(service, METALS)
        symbols = orjson.loads(await fetch(http, service.url + "api/v1/symbols"))
        checked = 0
        for symbol, decimals in METAL_DECIMALS.items():
            base = service.url
            bodies = [
                [q for q in symbols if q["symbol"] == symbol],
                orjson.loads(await fetch(http, f"{base}api/v1/symbols/{symbol}/latest")),
                orjson.loads(await fetch(http, f"{base}api/v1/symbols/{symbol}/candles?res=1s")),
                orjson.loads(await fetch(http, f"{base}snapshots/{symbol}.json?range=1h")),
            ]
            for body in bodies:
                numbers = price_numbers(body)
                assert numbers, body
                assert max(places(n) for n in numbers) <= decimals, (symbol, body)
                checked += len(numbers)
            snapshot = bodies[-1]
            assert places(snapshot["change_pct"]) <= 2, snapshot

            table = (await fetch(http, f"{base}snapshots/{symbol}.csv?range=1h")).decode()
            rows = list(csv.DictReader(io.StringIO(table)))
            assert rows
            for row in rows:
                for key in ("open", "high", "low", "close"):
                    assert re.fullmatch(rf"\d+\.\d{{{decimals}}}", row[key]), (symbol, row)

            report = (await fetch(http, f"{base}snapshots/{symbol}.txt?range=1h")).decode()
            numbers_in_text = re.findall(r"[-+]?\d[\d,]*\.\d+(?!%)", report.replace("%)", " %)"))
            assert numbers_in_text
            for text in numbers_in_text:
                if text.startswith(("+", "-")) and text + "%" in report:
                    continue  # a percentage: two places
                assert len(text.split(".")[1]) == decimals, (symbol, text, report[:400])

            figure = orjson.loads(await fetch(http, f"{base}charts/{symbol}.json?type=candles"))
            trace = figure["data"][0]
            ohlc = [v for k in ("open", "high", "low", "close") for v in trace[k]]
            assert ohlc
            assert max(places(v) for v in ohlc) <= decimals, symbol
            async with http.ws_connect(base.replace("http", "ws") + "ws") as ws:
                channels = [f"ticks:{symbol}", f"candles:{symbol}:1s"]
                await ws.send_json({"op": "subscribe", "channels": channels})
                for _ in range(8):  # both snapshots and some updates
                    msg = await ws.receive_json(timeout=10)
                    numbers = price_numbers(msg.get("data"))
                    assert all(places(n) <= decimals for n in numbers), (symbol, msg)
                    checked += len(numbers)
            svg = (await fetch(http, f"{base}charts/{symbol}.svg")).decode()
            tag = re.search(r'lengthAdjust="spacingAndGlyphs">([\d,]+\.(\d+))<', svg)
            assert tag is not None
            assert len(tag.group(2)) == decimals, (symbol, tag.group(1))
    assert checked > 50
