"""Drive Debian's headless Chromium over the DevTools protocol (a real browser, no driver)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from websockets.asyncio.client import ClientConnection, connect

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--hide-scrollbars",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
]


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise RuntimeError(
            "the browser test needs Debian's chromium: run scripts/test-deps "
            "(or apt-get install chromium)"
        )
    return path


class Page:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self.exceptions: list[str] = []  # uncaught page exceptions seen since Runtime.enable

    async def call(self, method: str, **params: Any) -> Any:
        call_id = next(self._ids)
        await self.ws.send(
            orjson.dumps({"id": call_id, "method": method, "params": params}).decode()
        )
        while True:
            msg = orjson.loads(await asyncio.wait_for(self.ws.recv(), 30))
            if msg.get("method") == "Runtime.exceptionThrown":
                details = msg["params"]["exceptionDetails"]
                self.exceptions.append(
                    str(details.get("exception", {}).get("description", details))
                )
            if msg.get("id") == call_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    async def eval(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def goto(self, url: str) -> None:
        await self.call("Page.navigate", url=url)

    async def screenshot(self, path: Path) -> None:
        shot = await self.call("Page.captureScreenshot", format="png")
        await asyncio.to_thread(_write, path, base64.b64decode(shot["data"]))


class Browser:
    """One headless Chromium; each ``new_page`` is a tab with its own viewport."""

    def __init__(self, port: int, http: aiohttp.ClientSession, tabs: contextlib.AsyncExitStack):
        self.port = port
        self._http = http
        self._tabs = tabs

    async def new_page(
        self, url: str = "about:blank", *, width: int = 1440, height: int = 900,
        mobile: bool = False,
    ) -> Page:  # fmt: skip
        """Open ``url`` in a new tab with a ``width`` x ``height`` viewport.

        ``mobile`` emulates a phone (touch, coarse pointer, the viewport meta tag), the way
        DevTools' device mode does, so a 390 x 844 page is laid out as on a phone.
        """
        async with self._http.put(f"http://127.0.0.1:{self.port}/json/new?about:blank") as resp:
            target = await resp.json()
        ws = await self._tabs.enter_async_context(
            connect(target["webSocketDebuggerUrl"], max_size=None)
        )
        page = Page(ws)
        await page.call("Runtime.enable")
        await page.call(
            "Emulation.setDeviceMetricsOverride",
            width=width, height=height, deviceScaleFactor=1, mobile=mobile,
        )  # fmt: skip
        if mobile:
            await page.call("Emulation.setTouchEmulationEnabled", enabled=True, maxTouchPoints=5)
        await page.goto(url)
        return page

    async def front(self, page: Page) -> None:
        """Show ``page``: only the front tab is visible (others get no animation frames)."""
        await page.call("Page.bringToFront")


@contextlib.asynccontextmanager
async def open_browser() -> AsyncIterator[Browser]:
    """Start a fresh headless Chromium (its own profile); stop it on exit."""
    profile = Path(tempfile.mkdtemp(prefix="chromium-"))
    proc = await asyncio.create_subprocess_exec(
        chromium_path(), *FLAGS, f"--user-data-dir={profile}", "about:blank",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        port = await asyncio.to_thread(_devtools_port, profile / "DevToolsActivePort")
        async with aiohttp.ClientSession() as http, contextlib.AsyncExitStack() as tabs:
            yield Browser(port, http, tabs)
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


@contextlib.asynccontextmanager
async def open_page(
    url: str = "about:blank", *, width: int = 1440, height: int = 900, mobile: bool = False
) -> AsyncIterator[Page]:
    """Open ``url`` in a fresh headless Chromium (see ``Browser.new_page``)."""
    async with open_browser() as browser:
        yield await browser.new_page(url, width=width, height=height, mobile=mobile)


def _devtools_port(port_file: Path, timeout_s: float = 15) -> int:
    """Chromium writes the port it picked into its profile directory."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if port_file.exists() and (text := port_file.read_text().strip()):
            return int(text.split()[0])
        time.sleep(0.05)
    raise RuntimeError(f"chromium did not open its DevTools port within {timeout_s:.0f} s")


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
