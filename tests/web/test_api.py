"""The HTTP API over real sockets against the whole embedded service."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from tests.conftest import Service

METALS = ["XAG-USD", "XAU-USD", "XPD-USD", "XPT-USD"]


async def get(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.json()


async def wait_for_prices(service: Service, symbols: list[str], timeout_s: float = 10) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        status, body = await get(service.url + "api/v1/symbols")
        assert status == 200
        if sorted(q["symbol"] for q in body) == symbols:
            return body
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"symbols never appeared: {body}")
        await asyncio.sleep(0.1)


async def closed_candles(service: Service, symbol: str, *, count: int = 2) -> list[Any]:
    """A symbol's 1s candles once ``count`` of them have closed (300 ms, the grace, after their
    end) and a newer one is open; at most 10 s."""
    url = service.url + f"api/v1/symbols/{symbol}/candles?res=1s&limit=1000"
    for _ in range(100):
        _, body = await get(url)
        candles = body["candles"]
        if sum(c["closed"] for c in candles) >= count and not candles[-1]["closed"]:
            return list(candles)
        await asyncio.sleep(0.1)
    raise AssertionError(f"fewer than {count} closed 1s candles of {symbol} within 10 s")


async def test_symbols_lists_the_four_simulated_metals_with_prices(service: Service) -> None:
    body = await wait_for_prices(service, METALS)
    for quote in body:
        assert quote["bid"] <= quote["price"] <= quote["ask"]
        assert quote["ts_ms"] > 1_700_000_000_000


async def test_latest_quote_of_a_symbol(service: Service) -> None:
    await wait_for_prices(service, METALS)
    status, body = await get(service.url + "api/v1/symbols/XAU-USD/latest")
    assert status == 200
    assert set(body) >= {"symbol", "bid", "ask", "price", "ts_ms"}
    assert body["symbol"] == "XAU-USD"
    assert 1_000 < body["price"] < 10_000


async def test_latest_of_an_unknown_symbol_is_404_with_a_message(service: Service) -> None:
    status, body = await get(service.url + "api/v1/symbols/XXX-USD/latest")
    assert status == 404
    assert "XXX-USD" in body["error"]["message"]


async def test_candles_are_oldest_first_and_consistent(service: Service) -> None:
    await wait_for_prices(service, METALS)
    await closed_candles(service, "XAG-USD")
    status, body = await get(service.url + "api/v1/symbols/XAG-USD/candles?res=1s&limit=100")
    assert status == 200
    assert body["symbol"] == "XAG-USD"
    assert body["res"] == "1s"
    candles = body["candles"]
    assert len(candles) >= 2
    starts = [c["start_ms"] for c in candles]
    assert starts == sorted(starts)
    assert len(set(starts)) == len(starts)
    assert all(s % 1_000 == 0 for s in starts)
    for c in candles:
        assert set(c) == {"start_ms", "open", "high", "low", "close", "ticks", "closed"}
        assert c["low"] <= min(c["open"], c["close"]) <= max(c["open"], c["close"]) <= c["high"]
        assert c["ticks"] >= 1
    assert candles[0]["closed"]
    assert not candles[-1]["closed"]


async def test_candle_limit_returns_the_newest(service: Service) -> None:
    await wait_for_prices(service, METALS)
    await closed_candles(service, "XAU-USD")
    _, every = await get(service.url + "api/v1/symbols/XAU-USD/candles?res=1s&limit=1000")
    _, two = await get(service.url + "api/v1/symbols/XAU-USD/candles?res=1s&limit=2")
    assert len(two["candles"]) == 2
    assert two["candles"][0]["start_ms"] in [c["start_ms"] for c in every["candles"][-3:]]


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("res=2m", "res must be one of"),
        ("limit=0", "limit must be between 1 and 5000"),
        ("limit=abc", "limit must be an integer"),
        ("start_ms=x", "start_ms must be an integer"),
        ("start_ms=10&end_ms=5", "must be before end_ms"),
    ],
)
async def test_bad_candle_parameters_get_400_saying_what_is_wrong(
    service: Service, query: str, fragment: str
) -> None:
    await wait_for_prices(service, METALS)
    status, body = await get(service.url + f"api/v1/symbols/XAU-USD/candles?{query}")
    assert status == 400
    assert fragment in body["error"]["message"]


async def test_a_malformed_symbol_is_400(service: Service) -> None:
    status, body = await get(service.url + "api/v1/symbols/gold/latest")
    assert status == 400
    assert "XAU-USD" in body["error"]["message"]


async def test_unknown_path_is_a_json_404(service: Service) -> None:
    status, body = await get(service.url + "api/v1/nothing")
    assert status == 404
    assert body["error"]["status"] == 404


async def test_health_and_readiness(service: Service) -> None:
    assert (await get(service.url + "healthz"))[0] == 200
    status, body = await get(service.url + "readyz")
    assert status == 200
    assert body["status"] == "ready"


async def test_page_and_plotly_are_served_locally_with_a_strict_csp(service: Service) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(service.url) as resp:
            assert resp.status == 200
            html = await resp.text()
            csp = resp.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp
        assert "/static/plotly.min.js" in html
        assert "/static/app.js" in html
        async with http.get(service.url + "static/plotly.min.js") as resp:
            assert resp.status == 200
            assert len(await resp.read()) > 1_000_000
        async with http.get(service.url + "static/../pyproject.toml") as resp:
            assert resp.status == 404
