"""Fake vendor servers on 127.0.0.1 that speak the vendors' real protocols, for collector tests.

- ``FakeWebsocket``: a websocket server; connection ``i`` plays ``scripts[i]`` (the last one
  again for later connections) and records what the client sent.
- ``FakeStream``: an HTTP server whose ``GET`` answers one long newline-delimited JSON body,
  played from a script per connection (OANDA v20 pricing stream style).
- ``FakePoll``: an HTTP server for polling with ``ETag``/``If-None-Match`` or
  ``Last-Modified``/``If-Modified-Since`` (304), an optional run of 429s with ``Retry-After``, an
  optional stall, and a log of every request.

A script is a list of steps: ``bytes`` to send (a message or a line), a ``float`` of seconds to
wait, ``SUBSCRIBED`` to wait for the client's first message, ``SILENCE`` to go quiet until the
client gives up and disconnects. After its last step the server closes the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Self

import orjson
from aiohttp import web
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

SUBSCRIBED = "subscribed"
SILENCE = "silence"
Step = bytes | float | str
Script = list[Step]

#: Longest a test waits for anything.
WAIT_S = 10.0


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def eventually(check: Callable[[], bool], *, timeout_s: float = WAIT_S) -> None:
    """Wait until ``check()`` holds, polling; fail with a clear message after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.01)


class FakeWebsocket:
    def __init__(
        self, scripts: list[Script], *, answer: Callable[[bytes], bytes | None] | None = None
    ) -> None:
        self.scripts = scripts
        self.answer = answer
        self.received: list[list[bytes]] = []
        self._server: Server | None = None

    @property
    def connections(self) -> int:
        return len(self.received)

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/"

    async def __aenter__(self) -> Self:
        self._server = await serve(self._handle, "127.0.0.1", 0, compression=None)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, ws: ServerConnection) -> None:
        index = len(self.received)
        got: list[bytes] = []
        self.received.append(got)
        first = asyncio.Event()
        reader = asyncio.create_task(self._read(ws, got, first))
        script = self.scripts[min(index, len(self.scripts) - 1)]
        try:
            for step in script:
                if step == SUBSCRIBED:
                    await asyncio.wait_for(first.wait(), WAIT_S)
                elif step == SILENCE:
                    await asyncio.wait_for(ws.wait_closed(), WAIT_S)
                elif isinstance(step, float):  # a pause that ends early when the client leaves
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(ws.wait_closed(), step)
                elif isinstance(step, bytes):
                    await ws.send(step.decode("utf-8", "replace"))
        except ConnectionClosed:
            pass
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            await ws.close()

    async def _read(self, ws: ServerConnection, got: list[bytes], first: asyncio.Event) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                raw = message.encode() if isinstance(message, str) else message
                got.append(raw)
                first.set()
                if self.answer is not None and (reply := self.answer(raw)) is not None:
                    await ws.send(reply.decode())


@contextlib.asynccontextmanager
async def http_server(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1 and a free port; yields the base URL."""
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


class FakeStream:
    """``GET`` anything: connection ``i`` streams ``scripts[i]`` as newline-delimited JSON."""

    def __init__(self, scripts: list[Script], *, status: list[int] | None = None) -> None:
        self.scripts = scripts
        self.status = status or []  # statuses of the first connections (then 200)
        self.requests: list[web.Request] = []
        self.times: list[float] = []  # monotonic time of each request

    @property
    def connections(self) -> int:
        return len(self.requests)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        index = len(self.requests)
        self.requests.append(request)
        self.times.append(time.monotonic())
        if index < len(self.status) and self.status[index] != 200:
            code = self.status[index]
            headers = {"Retry-After": "1"} if code == 429 else {}
            body = orjson.dumps({"errorMessage": f"status {code}"})
            return web.Response(status=code, body=body, headers=headers)
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await response.prepare(request)
        script = self.scripts[min(index, len(self.scripts) - 1)]
        with contextlib.suppress(ConnectionError):
            for step in script:
                if step == SILENCE:
                    await asyncio.sleep(WAIT_S)  # the client's read timeout ends it first
                elif isinstance(step, float):
                    await asyncio.sleep(step)
                elif isinstance(step, bytes):
                    await response.write(step + b"\n")
        return response


@dataclass
class FakePoll:
    """A polled vendor: ``body(path)`` makes the answer; ``version`` changes it (new ETag)."""

    body: Callable[[str], bytes]
    throttle: int = 0  # answer this many requests with 429 first
    retry_after: str = "1"
    version: int = 1
    etags: bool = True  # False: Last-Modified / If-Modified-Since instead of ETags
    stall_s: float = 0.0  # the first request waits this long before answering
    log: list[tuple[float, str, int]] = field(default_factory=list)  # (monotonic, path, status)
    seen_headers: list[dict[str, str]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        return app

    def statuses(self) -> list[int]:
        return [status for _, _, status in self.log]

    async def _handle(self, request: web.Request) -> web.Response:
        self.seen_headers.append(dict(request.headers))
        if self.stall_s:
            stall, self.stall_s = self.stall_s, 0.0
            await asyncio.sleep(stall)
        if self.throttle > 0:
            self.throttle -= 1
            self.log.append((time.monotonic(), request.path_qs, 429))
            body = orjson.dumps({"error": "too many requests"})
            return web.Response(status=429, body=body, headers={"Retry-After": self.retry_after})
        if self.etags:
            name, value, asked = "ETag", f'"v{self.version}"', "If-None-Match"
        else:
            name, asked = "Last-Modified", "If-Modified-Since"
            value = email.utils.formatdate(1_795_000_000 + self.version, usegmt=True)
        if request.headers.get(asked) == value:
            self.log.append((time.monotonic(), request.path_qs, 304))
            return web.Response(status=304, headers={name: value})
        self.log.append((time.monotonic(), request.path_qs, 200))
        return web.Response(
            body=self.body(request.path_qs), content_type="application/json", headers={name: value}
        )
