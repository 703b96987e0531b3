"""The live page in a real browser: it loads, connects, and the chart moves."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.browser import Page, open_page
from tests.conftest import Service
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
