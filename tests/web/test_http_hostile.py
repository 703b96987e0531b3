"""Hostile HTTP clients (issue 12) over raw sockets on 127.0.0.1: clients that drip a request
head byte by byte or connect and send nothing are closed, while everyone else is served; junk
chart URLs leave nothing behind in the parsed-URL cache.

Every wait has an outer timeout, so a connection the server never closes fails the test instead
of hanging it; nothing asserts how long anything took.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import uvloop
from aiohttp import web
from websockets.asyncio.client import connect

from render.spec import ChartSpec
from stream.bus.memory import MemoryBus
from stream.store.sqlite import SqliteStore
from tests.conftest import embedded_service
from tests.web.live_server import LiveServer
from tests.web.test_charts import render_server
from web.app import GuardedSite, ServerLimits, make_app, make_health_app, make_runner
from web.charts import PARSED, ParsedUrls

HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
#: a hang is a failure, not a stuck test run
OUTER_TIMEOUT_S = 30


@contextlib.asynccontextmanager
async def guarded(app: web.Application, limits: ServerLimits) -> AsyncIterator[int]:
    """Serve ``app`` as ``pricestream.roles`` does, on 127.0.0.1 and a free port."""
    runner = make_runner(app, limits=limits, shutdown_timeout_s=1)
    await runner.setup()
    try:
        site = GuardedSite(runner, "127.0.0.1", 0, limits=limits)
        await site.start()
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def live_app(tmp_path: Path, limits: ServerLimits) -> AsyncIterator[LiveServer]:
    """The web role (websockets, SSE) on a guarded site, with updates published by the test."""
    bus = MemoryBus(capacity=1_000)
    store = await SqliteStore.open(tmp_path / "live.db")
    try:
        app = make_app(store=store, bus=bus)
        async with guarded(app, limits) as port:
            yield LiveServer(f"http://127.0.0.1:{port}/", app, await bus.producer())
    finally:
        await store.close()
        await bus.close()


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as closed)."""
    received = b""
    with contextlib.suppress(ConnectionError):
        while chunk := await reader.read(65_536):
            received += chunk
    return received


async def drip(writer: asyncio.StreamWriter, head: bytes, *, every_s: float = 0.05) -> None:
    """Send ``head`` one byte at a time, then a header value that never ends, until it fails."""
    with contextlib.suppress(ConnectionError):
        for i in range(1_000_000):
            writer.write(head[i : i + 1] or b"a")
            await writer.drain()
            await asyncio.sleep(every_s)


async def read_answer(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One whole answer with a Content-Length: its head and its body."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head, await reader.readexactly(length)


async def dripping_client(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sending = asyncio.create_task(drip(writer, HEAD + b"X-Slow: "))
    try:
        return await read_until_closed(reader)
    finally:
        sending.cancel()
        writer.close()


async def silent_client(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        return await read_until_closed(reader)
    finally:
        writer.close()


async def get(port: int, path: str = "/healthz") -> int:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}{path}") as r:
        await r.read()
        return r.status


async def test_dripping_and_silent_clients_are_closed_while_others_are_served(
    tmp_path: Path,
) -> None:
    """The whole service: 25 clients drip a header, 25 send nothing, one asks normally."""
    server = {"host": "127.0.0.1", "port": 0, "header_timeout_s": 1}
    async with (
        embedded_service(tmp_path / "data", server=server) as service,
        asyncio.timeout(OUTER_TIMEOUT_S),
    ):
        drippers = [asyncio.create_task(dripping_client(service.port)) for _ in range(25)]
        silent = [asyncio.create_task(silent_client(service.port)) for _ in range(25)]
        await asyncio.sleep(0)  # connections opened
        assert [await get(service.port, p) for p in ("/healthz", "/api/v1/symbols")] == [200, 200]
        dripped = await asyncio.gather(*drippers)
        heard = await asyncio.gather(*silent)
        assert await get(service.port) == 200
    assert heard == [b""] * 25  # closed without a word: nothing was asked
    # each was closed: with a 408 when it was read before the client's next byte reset it
    assert all(d == b"" or d.startswith(b"HTTP/1.1 408 ") for d in dripped)


async def test_a_partial_head_gets_408_saying_why_then_the_connection_closes() -> None:
    app = make_health_app(roles=("stream",), ready=lambda: None)
    async with guarded(app, ServerLimits(header_timeout_s=0.3)) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HEAD + b"X-Half: of a head")
        async with asyncio.timeout(OUTER_TIMEOUT_S):
            answer = await read_until_closed(reader)
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b"Connection: close" in head
    assert orjson.loads(body) == {
        "error": {"status": 408, "message": "the request head did not arrive within 0.3 s"}
    }


async def test_an_idle_kept_alive_connection_serves_its_next_request_then_is_closed() -> None:
    """Idle between requests is the keep-alive time, not the header timeout: a connection
    idle for three header timeouts still serves; left idle past the keep-alive, it closes."""
    app = make_health_app(roles=("stream",), ready=lambda: None)
    limits = ServerLimits(header_timeout_s=0.2, keepalive_timeout_s=1.5)
    async with guarded(app, limits) as port, asyncio.timeout(OUTER_TIMEOUT_S):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(2):
            writer.write(HEAD + b"\r\n")
            head, _ = await read_answer(reader)
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            await asyncio.sleep(0.6)
        assert await read_until_closed(reader) == b""
        writer.close()


async def test_a_dripped_second_request_on_a_kept_alive_connection_is_closed() -> None:
    app = make_health_app(roles=("stream",), ready=lambda: None)
    async with (
        guarded(app, ServerLimits(header_timeout_s=0.3, keepalive_timeout_s=60)) as port,
        asyncio.timeout(OUTER_TIMEOUT_S),
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HEAD + b"\r\n")
        head, _ = await read_answer(reader)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        sending = asyncio.create_task(drip(writer, HEAD + b"X-Slow: "))
        try:
            rest = await read_until_closed(reader)
        finally:
            sending.cancel()
            writer.close()
    assert rest == b"" or rest.startswith(b"HTTP/1.1 408 ")


async def test_websockets_and_event_streams_outlive_the_header_timeout(tmp_path: Path) -> None:
    """A long request is no slow head: both get an update published well after the timeout."""
    limits = ServerLimits(header_timeout_s=0.2, keepalive_timeout_s=0.2)
    async with live_app(tmp_path, limits) as server, asyncio.timeout(OUTER_TIMEOUT_S):
        await server.ticks(range(1, 2))  # a channel has a price before anyone subscribes
        await server.seq_reached("ticks:XAU-USD", 1)
        url = server.url + "api/v1/stream?channels=ticks:XAU-USD"
        async with (
            connect(server.ws_url) as ws,
            aiohttp.ClientSession() as http,
            http.get(url) as stream,
        ):
            await ws.send(orjson.dumps({"op": "subscribe", "channels": ["ticks:XAU-USD"]}).decode())
            assert orjson.loads(await ws.recv())["type"] == "snapshot"
            assert stream.status == 200
            await asyncio.sleep(1.0)  # five header timeouts, five keep-alive timeouts
            await server.ticks(range(2, 3))
            while (message := orjson.loads(await ws.recv()))["type"] != "update":
                pass
            assert message["seq"] == 2
            event: dict[str, object] = {}
            while event.get("type") != "update":
                line = await stream.content.readline()
                assert line, "the event stream ended"
                if line.startswith(b"data: "):
                    event = orjson.loads(line[6:])
            assert event["seq"] == 2


async def test_connections_past_the_per_address_limit_get_503_and_the_rest_are_served() -> None:
    app = make_health_app(roles=("stream",), ready=lambda: None)
    limits = ServerLimits(max_connections_per_address=3, header_timeout_s=30)
    async with guarded(app, limits) as port, asyncio.timeout(OUTER_TIMEOUT_S):
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        refused = await read_until_closed(reader)
        writer.close()
        head, _, body = refused.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert b"Retry-After: 1" in head
        assert "at most 3 at once" in orjson.loads(body)["error"]["message"]
        # the three held connections are served, one after another
        for r, w in held:
            w.write(HEAD + b"Connection: close\r\n\r\n")
            assert (await read_until_closed(r)).startswith(b"HTTP/1.1 200 OK\r\n")
            w.close()
        assert await get(port) == 200  # closed connections no longer count


def test_on_uvloop_as_pricestream_run_a_partial_head_is_closed_and_others_are_served() -> None:
    """``pricestream run`` serves on uvloop, whose transports are not asyncio's classes."""

    async def scenario() -> tuple[bytes, int]:
        app = make_health_app(roles=("stream",), ready=lambda: None)
        async with guarded(app, ServerLimits(header_timeout_s=0.3)) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(HEAD)
            status = await get(port)
            async with asyncio.timeout(OUTER_TIMEOUT_S):
                answer = await read_until_closed(reader)
            writer.close()
            return answer, status

    answer, status = uvloop.run(scenario())
    assert status == 200
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")


# -- the parsed-URL cache: junk is never kept --------------------------------------------------


def spec(width_px: int) -> ChartSpec:
    return ChartSpec("XAU-USD", "1d", "5m", "png", width_px=width_px)


def key(query: str) -> tuple[str, str, str, str]:
    return ("parse_chart", "XAU-USD", "png", query)


def test_the_parsed_url_cache_is_bounded_in_entries_and_bytes_and_drops_the_least_used() -> None:
    by_count = ParsedUrls(max_entries=2, max_bytes=1_000_000)
    for w in (600, 700, 800):
        by_count.put(key(f"w={w}"), spec(w))
        by_count.get(key("w=600"))  # 600 stays in use
    assert (len(by_count), by_count.get(key("w=700")), by_count.get(key("w=600"))) == (
        2, None, spec(600)
    )  # fmt: skip
    one = ParsedUrls.ENTRY_BYTES + len("parse_chartXAU-USDpngw=600")
    by_size = ParsedUrls(max_entries=100, max_bytes=2 * one)
    for w in (600, 700, 800):
        by_size.put(key(f"w={w}"), spec(w))
    assert (len(by_size), by_size.bytes) == (2, 2 * one)
    assert by_size.get(key("w=600")) is None
    by_size.put(key("w=" + "0" * 300 + "600"), spec(600))  # too long to keep
    by_size.put(key("w=800"), spec(800))  # already there
    assert (len(by_size), by_size.bytes) == (2, 2 * one)


async def test_junk_chart_requests_leave_the_parsed_url_cache_as_it_was(tmp_path: Path) -> None:
    """Unknown symbols, bad values, unknown or repeated parameters and overlong queries are
    answered (404, 400 or the chart) and parsed each time; only clean URLs are kept."""
    pad = "x" * 2_000
    junk = [
        *(f"/charts/XPT-USD.png?range=1d&n={i}" for i in range(100)),  # no prices: 404
        *(f"/charts/ABC-DEF.png?range=1d&n={i}{pad}" for i in range(100)),
        *(f"/snapshots/XPT-USD.csv?n={i}" for i in range(100)),
        *(f"/charts/XAU-USD.png?w={i}" for i in range(2_001, 2_101)),  # bad value: 400
        *(f"/charts/XAU-USD.png?range=1d&n={i}{pad}" for i in range(100)),  # junk name: 200
        *(f"/charts/XAU-USD.png?range=1d&w=600&w={i}" for i in range(100)),  # repeated
        *(f"/charts/XAU-USD.png?w={'0' * (300 + i)}600" for i in range(100)),  # overlong
    ]
    async with render_server(tmp_path) as (server, _), aiohttp.ClientSession() as http:
        parsed = server.app[PARSED]

        async def status(path: str) -> int:
            async with http.get(server.make_url(path)) as resp:
                await resp.read()
                return resp.status

        assert await status("/charts/XAU-USD.png?range=1d&w=640") == 200
        assert len(parsed) == 1
        before = parsed.bytes
        statuses: dict[int, int] = {}
        for start in range(0, len(junk), 50):
            for s in await asyncio.gather(*(status(p) for p in junk[start : start + 50])):
                statuses[s] = statuses.get(s, 0) + 1
        assert statuses == {404: 300, 400: 100, 200: 300}
        assert (len(parsed), parsed.bytes) == (1, before)
        # the cache still works: a clean URL is kept, one already kept is not added twice
        assert await status("/snapshots/XAU-USD.csv?range=1w") == 200
        assert await status("/charts/XAU-USD.png?range=1d&w=640") == 200
        assert len(parsed) == 2
