"""The live page in a real browser: it loads, connects, and the chart moves."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

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
        # plotly.js (3 MB) may still be loading on a busy machine while updates count up
        await wait_until(page, "(document.querySelector('#chart')?.data?.length || 0) >= 1")
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


# What the chart draws, read from plotly's SVG: the time labels under the price pane, and how
# much of the price pane's width the drawn candles cover (the page renders a screen either side
# of the view, clipped, so only candles whose middle is inside the plot count); and what else
# the first screen shows.
CHART_DRAWN = r"""(() => {
  const gd = document.querySelector('#chart');
  const plot = gd && gd.querySelector('.draglayer .xy .nsewdrag');
  if (!plot) return null;
  const p = plot.getBoundingClientRect();
  let left = Infinity, right = -Infinity, candles = 0;
  for (const box of gd.querySelectorAll('.subplot.xy .trace.boxes path.box')) {
    const r = box.getBoundingClientRect();
    const mid = r.left + r.width / 2;
    if (!r.height || mid < p.left || mid > p.right) continue;
    candles++;
    left = Math.min(left, r.left);
    right = Math.max(right, r.right);
  }
  const text = (sel) => [...gd.querySelectorAll(sel)].map((t) => t.textContent).filter(Boolean);
  return {
    plotWidth: p.width,
    candles,
    span: candles ? (right - left) / p.width : 0,
    timeLabels: text('.xaxislayer-above .xtick text'),
    countLabels: text('.yaxislayer-above .y2tick text'),
    watermark: text('.annotation-text').filter((t) => t.includes(' · ')),
    badge: document.querySelector('#sim-badge:not([hidden])')?.textContent.trim() || null,
    status: document.body.dataset.status,
    received: document.querySelector('#ticks-received').textContent,
    loaded: gd.dataset.candles,
    overlay: document.querySelector('#chart-overlay').dataset.state + ': ' +
      document.querySelector('#chart-overlay-text').textContent,
    overflowX: document.documentElement.scrollWidth - innerWidth,
    // what the first screen shows whole, without scrolling
    onScreen: ['#headline-price', '.chart-wrap', '#statusbar', '#panel'].filter((sel) => {
      const r = document.querySelector(sel).getBoundingClientRect();
      return r.height && r.top >= 0 && r.left >= 0 &&
        r.bottom <= innerHeight && r.right <= innerWidth;
    }),
  };
})()"""
FIRST_SCREEN_S = 10


@contextlib.asynccontextmanager
async def pricestream_run(data_dir: Path, log: Path) -> AsyncIterator[str]:
    """``pricestream run`` as a user starts it, as a process; yields the URL it prints."""
    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pricestream", "run", "--port", "0", "--data-dir", str(data_dir),
            stdout=asyncio.subprocess.PIPE, stderr=err,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            line = (await asyncio.wait_for(proc.stdout.readline(), 15)).decode()
            match = re.search(r"open (http://127\.0\.0\.1:\d+/)", line)
            if match is None:
                told = await asyncio.to_thread(log.read_text)
                raise AssertionError(f"pricestream run printed no URL: {line!r}\n{told[-2000:]}")
            yield match.group(1)
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGINT)
                try:
                    await asyncio.wait_for(proc.wait(), 20)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


async def first_screen(page: Page, url: str, name: str, *, deadline: float) -> dict[str, Any]:
    """Load the page, wait (until ``deadline``) for a full, live chart, and screenshot it."""
    await page.goto(url)
    # candles across most of the plot, a time axis, live, the badge fetched, ticks counted
    ready = (f"(d => d && d.span >= 0.7 && d.timeLabels.length >= 3 && d.status === 'live' && "
             f"d.badge !== null && d.received !== '0')({CHART_DRAWN})")  # fmt: skip
    try:
        await wait_until(page, ready, timeout_s=deadline - asyncio.get_running_loop().time())
    except AssertionError:
        raise AssertionError(
            f"{name}: no full, live chart within {FIRST_SCREEN_S} s of starting pricestream run "
            f"on a fresh data dir; the page drew {await page.eval(CHART_DRAWN)}"
        ) from None
    await page.screenshot(ARTIFACTS / f"live-page-{name}.png")
    drawn = await page.eval(CHART_DRAWN)
    assert page.exceptions == []
    assert isinstance(drawn, dict)
    return drawn


async def test_a_fresh_start_shows_a_full_chart_at_desktop_and_phone_size_within_10_s(
    tmp_path: Path,
) -> None:
    """The first screen a new user sees: ``pricestream run`` on a fresh data dir, then the page.

    The browser is open before the service starts, as a user's is. The screenshots go to
    artifacts/live-page-desktop.png and live-page-phone.png; docs/ holds copies of them.
    """
    async with (
        open_page(width=1440, height=900) as desktop_page,
        open_page(width=390, height=844, mobile=True) as phone_page,
    ):
        deadline = asyncio.get_running_loop().time() + FIRST_SCREEN_S
        async with pricestream_run(tmp_path / "data", tmp_path / "run.log") as url:
            desktop, phone = await asyncio.gather(
                first_screen(desktop_page, url, "desktop", deadline=deadline),
                first_screen(phone_page, url, "phone", deadline=deadline),
            )
    for name, drawn in (("desktop", desktop), ("phone", phone)):
        assert len(drawn["timeLabels"]) >= 3, (name, drawn)
        assert drawn["span"] >= 0.7, (name, drawn)
        assert len(drawn["countLabels"]) >= 2, (name, drawn)  # the tick pane has an axis
        assert drawn["watermark"] == ["XAU/USD · 1m"], (name, drawn)  # a minute, as on its button
        assert drawn["badge"] == "Simulated data", (name, drawn)
        assert drawn["overflowX"] == 0, (name, drawn)  # nothing cut off at the sides
    assert desktop["onScreen"] == ["#headline-price", ".chart-wrap", "#statusbar", "#panel"]
    # a phone: the price, the chart and the status bar on the first screen, the panel below it
    assert phone["onScreen"] == ["#headline-price", ".chart-wrap", "#statusbar"], phone
    assert (ARTIFACTS / "live-page-desktop.png").stat().st_size > 50_000
