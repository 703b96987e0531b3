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

    async def screenshot(self, path: Path) -> None:
        shot = await self.call("Page.captureScreenshot", format="png")
        await asyncio.to_thread(_write, path, base64.b64decode(shot["data"]))


@contextlib.asynccontextmanager
async def open_page(url: str, *, width: int = 1440, height: int = 900) -> AsyncIterator[Page]:
    profile = Path(tempfile.mkdtemp(prefix="chromium-"))
    size = f"--window-size={width},{height}"
    proc = await asyncio.create_subprocess_exec(
        chromium_path(), *FLAGS, f"--user-data-dir={profile}", size, url,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        port = await asyncio.to_thread(_devtools_port, profile / "DevToolsActivePort")
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/json/list") as resp,
        ):
            targets = await resp.json()
        target = next(t for t in targets if t["type"] == "page")
        async with connect(target["webSocketDebuggerUrl"], max_size=None) as ws:
            page = Page(ws)
            await page.call("Runtime.enable")
            yield page
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


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
