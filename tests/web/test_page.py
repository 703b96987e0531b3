"""The live page in a real browser: it loads, connects, and the chart moves."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
from websockets.asyncio.client import connect

from tests.browser import Page, open_page
from tests.conftest import Service
from tests.tcp_proxy import tcp_proxy
from tests.web.test_api import METALS, wait_for_prices

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


async def wait_until(page: Page, expression: str, timeout_s: float = 20) -> object:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = await page.eval(expression)
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"never true in the page: {expression}")
        await asyncio.sleep(0.2)


async def test_live_page_connects_and_the_chart_updates(service: Service) -> None:
    await wait_for_prices(service, METALS)
    async with open_page(service.url + "#XAG-USD/1s/candles") as page:
        await wait_until(
            page, "document.querySelector('#status')?.textContent.toLowerCase().includes('live')"
        )
        updates = "Number(document.body.dataset.updates || 0)"
        first = int(str(await wait_until(page, f"{updates} > 0 && {updates}")))
        await wait_until(page, f"Number(document.body.dataset.updates) > {first + 5}")
        price = await page.eval("document.querySelector('#last-price')?.textContent")
        assert price
        assert any(ch.isdigit() for ch in price)
        traces = await page.eval("document.querySelector('#chart')?.data?.length || 0")
        assert traces >= 1
        # 1s candles: a new one each second, so the chart grows while we watch
        await wait_until(page, "document.querySelector('#chart').data[0].x.length >= 3")
        assert page.exceptions == []
        await page.screenshot(ARTIFACTS / "live-page.png")
    assert (ARTIFACTS / "live-page.png").stat().st_size > 10_000


async def server_seq_reaches(service: Service, channel: str, seq: int) -> None:
    """Read ``channel`` straight from the service (not through the proxy) until ``seq``."""
    async with connect(service.ws_url) as ws, asyncio.timeout(30):
        await ws.send(orjson.dumps({"op": "subscribe", "channels": [channel]}).decode())
        while orjson.loads(await ws.recv()).get("seq", 0) < seq:
            pass


async def test_the_page_resumes_with_since_after_its_connection_is_cut(service: Service) -> None:
    await wait_for_prices(service, METALS)
    status = "window.pricestream.status()"
    candles, ticks = "candles:XAG-USD:1s", "ticks:XAG-USD"
    async with (
        tcp_proxy(service.port) as proxy,
        open_page(proxy.url + "#XAG-USD/1s/candles") as page,
    ):
        await wait_until(page, f"{status}.state === 'live' && {status}.updates > 10")
        assert proxy.cut() >= 1  # the page's websocket (and any HTTP keep-alive) is reset
        await wait_until(page, f"['reconnecting', 'offline'].includes({status}.state)")
        left = await page.eval(f"{status}.resumeFrom")
        assert {candles, ticks} <= set(left)
        # Prices go on while the page is cut off (and its reconnects are refused).
        await server_seq_reaches(service, ticks, left[ticks] + 20)
        proxy.restore()

        await wait_until(page, f"{status}.lastRound !== null", timeout_s=40)
        after = await page.eval(status)
        resumes = {r["channel"]: r for r in after["resumes"]}
        assert set(resumes) == set(left)  # every channel shown asked for what it missed
        for channel, since in left.items():
            r = resumes[channel]
            assert r["since"] == since
            assert r["recovered"] is True, r
            assert r["replayed"] == r["missed"]
            assert r["contiguous"] is True  # each replayed seq followed the one before
        assert resumes[ticks]["missed"] >= 20
        assert resumes[candles]["missed"] > 0
        assert after["resyncs"] == 0  # no gap was ever seen, before or after the cut
        assert after["lastRound"]["replayed"] == sum(r["missed"] for r in resumes.values())
        assert after["opens"] == 2
        assert proxy.accepted >= 2

        # Live again past the replayed seqs, and the status bar says what happened.
        caught_up = after["channels"][ticks]["seq"]
        await wait_until(page, f"{status}.state === 'live' && "
                               f"{status}.channels[{ticks!r}].seq > {caught_up + 3}")  # fmt: skip
        shown = await page.eval("document.querySelector('#resume').textContent")
        assert shown.replace(",", "") == f"resumed +{after['lastRound']['replayed']}"
        assert page.exceptions == []
        await page.screenshot(ARTIFACTS / "live-page-resumed.png")
