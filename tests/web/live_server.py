"""A real web app on 127.0.0.1 fed by the test: updates are published straight to its bus.

The embedded service's simulator sets its own pace; these tests need exact sequence numbers,
bursts of thousands of updates and large messages, so they publish ``Update`` messages on the
in-process bus the app's hub reads, with a real SQLite store behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from websockets.asyncio.client import ClientConnection

from stream.bus.memory import MemoryBus, MemoryProducer
from stream.contract import UPDATES, Candle, Tick, Update, encode_update
from stream.store.sqlite import SqliteStore
from web.app import make_app
from web.auth import AuthConfig
from web.keys import HUB
from web.live import Hub, LiveConfig

T0_MS = 1_795_000_000_000


def tick(seq: int, *, symbol: str = "XAU-USD", pad: int = 0) -> Tick:
    """A tick whose price encodes ``seq``; ``pad`` makes its message that many bytes larger."""
    price = 4_000 + seq / 100
    vendor = "v" + "x" * pad
    return Tick(symbol, vendor, price - 0.1, price + 0.1, price, T0_MS + seq, T0_MS + seq + 1)


def candle(start_s: int, close: float, *, symbol: str = "XAU-USD") -> Candle:
    start_ms = T0_MS + start_s * 1_000
    return Candle(symbol, "1s", start_ms, start_ms + 1_000, close, close, close, close, 1,
                  start_ms, start_ms, False)  # fmt: skip


@dataclass
class LiveServer:
    url: str
    app: web.Application
    producer: MemoryProducer

    @property
    def ws_url(self) -> str:
        return self.url.replace("http", "ws", 1) + "ws"

    @property
    def hub(self) -> Hub:
        return self.app[HUB]

    async def ticks(self, seqs: range, *, symbol: str = "XAU-USD", pad: int = 0) -> None:
        """Publish one update per seq in one batch (the hub takes it in one poll)."""
        items = [
            (
                symbol.encode(),
                encode_update(Update(symbol, [(s, tick(s, symbol=symbol, pad=pad))], [])),
            )
            for s in seqs
        ]
        await self.producer.send_many(UPDATES, items)

    async def ticks_in_one_record(self, seqs: range, *, symbol: str = "XAU-USD") -> None:
        """Publish one update carrying a tick per seq, as a stream worker does with a batch."""
        ticks = [(s, tick(s, symbol=symbol)) for s in seqs]
        await self.producer.send_many(
            UPDATES, [(symbol.encode(), encode_update(Update(symbol, ticks, [])))]
        )

    async def candles(self, updates: list[tuple[int, Candle]]) -> None:
        items = [
            (c.symbol.encode(), encode_update(Update(c.symbol, [], [(s, c)]))) for s, c in updates
        ]
        await self.producer.send_many(UPDATES, items)

    async def until(self, check: Any, *, timeout_s: float = 10) -> None:
        """Wait until ``check()`` is true (polling), or fail."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not check():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"condition not met within {timeout_s} s")
            await asyncio.sleep(0.01)

    async def seq_reached(self, channel: str, seq: int) -> None:
        await self.until(
            lambda: channel in self.hub.channels and self.hub.channels[channel].seq >= seq
        )


@contextlib.asynccontextmanager
async def live_server(
    data_dir: Path, config: LiveConfig, *, auth: AuthConfig | None = None
) -> AsyncIterator[LiveServer]:
    bus = MemoryBus(capacity=100_000)
    store = await SqliteStore.open(data_dir / "live.db")  # tmp_path exists
    app = make_app(store=store, bus=bus, live=config, auth=auth)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=2)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        producer = await bus.producer()
        yield LiveServer(f"http://127.0.0.1:{port}/", app, producer)
    finally:
        await runner.cleanup()
        await store.close()
        await bus.close()


async def recv(ws: ClientConnection, timeout_s: float = 5) -> Any:
    return orjson.loads(await asyncio.wait_for(ws.recv(), timeout_s))


async def send(ws: ClientConnection, message: object) -> None:
    await ws.send(orjson.dumps(message).decode())


async def quiet(ws: ClientConnection, *, wait_s: float = 0.3) -> list[Any]:
    """Everything that arrives until nothing has for ``wait_s``."""
    out = []
    while True:
        try:
            out.append(orjson.loads(await asyncio.wait_for(ws.recv(), wait_s)))
        except TimeoutError:
            return out


async def drain(ws: ClientConnection) -> None:
    """Read until the connection closes (``ConnectionClosed``) or stays silent for 10 s."""
    for _ in range(1_000_000):
        await recv(ws, timeout_s=10)
