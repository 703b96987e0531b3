"""/charts and /snapshots over real HTTP, against a real SQLite store and real render workers."""

from __future__ import annotations

import asyncio
import io
import math
import os
import re
import signal
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import numpy as np
import orjson
import pandas as pd
import plotly.io
import pytest
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict
from PIL import Image

from render.service import RenderConfig
from stream.bus.memory import MemoryBus
from stream.contract import Candle, SymbolState, Tick
from stream.contract.resolutions import MINUTE_MS
from stream.store.sqlite import SqliteStore
from tests.conftest import Service
from web.app import make_app
from web.keys import RENDERER

NOW_MS = 1_795_244_930_000
SYMBOL = "XAU-USD"


def candles_for(n: int, *, end_ms: int = NOW_MS, res: str = "1m") -> list[Candle]:
    out = []
    start = end_ms - end_ms % MINUTE_MS - (n - 1) * MINUTE_MS
    price = 4_000.0
    for i in range(n):
        t = start + i * MINUTE_MS
        close = price + (i % 7 - 3) * 0.8
        out.append(
            Candle(SYMBOL, res, t, t + MINUTE_MS, price, max(price, close) + 0.5,
                   min(price, close) - 0.5, close, 10, t, t + 59_000, i < n - 1)
        )  # fmt: skip
        price = close
    return out


def state_at(ts_ms: int, price: float = 4_001.0) -> SymbolState:
    tick = Tick(SYMBOL, "sim-alpha", price - 0.2, price + 0.2, price, ts_ms, ts_ms)
    return SymbolState(SYMBOL, tick, ts_ms, -1, {}, [])


@asynccontextmanager
async def render_server(
    tmp_path: Path, config: RenderConfig | None = None, *, candles: int = 120
) -> AsyncIterator[tuple[TestServer, SqliteStore]]:
    store = await SqliteStore.open(tmp_path / "db.sqlite")
    await store.write(candles_for(candles), [state_at(NOW_MS)])
    bus = MemoryBus(capacity=1_024)
    config = config or RenderConfig(chart_workers=1, text_workers=1, cache_dir=tmp_path / "cache")
    server = TestServer(make_app(store=store, bus=bus, render=config), host="127.0.0.1")
    await server.start_server()
    try:
        yield server, store
    finally:
        await server.close()
        await bus.close()
        await store.close()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[TestServer]:
    async with render_server(tmp_path) as (srv, _):
        yield srv


async def fetch(
    srv: TestServer, path: str, headers: dict[str, str] | None = None
) -> tuple[int, CIMultiDict[str], bytes]:
    async with aiohttp.ClientSession() as http, http.get(srv.make_url(path), headers=headers) as r:
        return r.status, CIMultiDict(r.headers), await r.read()


@pytest.mark.parametrize("kind", ["area", "candles"])
@pytest.mark.parametrize("theme", ["light", "dark"])
@pytest.mark.parametrize(("w", "h"), [(600, 300), (200, 100), (1_280, 720)])
async def test_png_decodes_to_the_requested_size(
    server: TestServer, kind: str, theme: str, w: int, h: int
) -> None:
    status, headers, body = await fetch(
        server, f"/charts/{SYMBOL}.png?range=1d&res=1m&w={w}&h={h}&type={kind}&theme={theme}"
    )
    assert status == 200, body
    assert headers["Content-Type"] == "image/png"
    image = Image.open(io.BytesIO(body))
    image.load()
    assert image.size == (w, h)
    colours = np.unique(np.asarray(image.convert("RGB")).reshape(-1, 3), axis=0)
    assert len(colours) > 10  # drawn, not a blank canvas


@pytest.mark.parametrize("kind", ["area", "candles"])
async def test_svg_is_well_formed_at_the_requested_size(server: TestServer, kind: str) -> None:
    status, headers, body = await fetch(
        server, f"/charts/{SYMBOL}.svg?w=800&h=400&res=1m&type={kind}"
    )
    assert status == 200, body
    assert headers["Content-Type"] == "image/svg+xml"
    root = ET.fromstring(body)
    assert (root.get("width"), root.get("height")) == ("800", "400")
    texts = "".join(root.itertext())
    assert SYMBOL in texts
    assert "4,0" in texts


@pytest.mark.parametrize("kind", ["area", "candles"])
async def test_json_is_a_plotly_figure(server: TestServer, kind: str) -> None:
    status, headers, body = await fetch(server, f"/charts/{SYMBOL}.json?res=1m&type={kind}")
    assert status == 200, body
    assert headers["Content-Type"] == "application/json"
    figure = plotly.io.from_json(body.decode())  # validates every property
    trace = figure.data[0]
    assert trace.type == ("candlestick" if kind == "candles" else "scatter")
    assert figure.layout.xaxis.type == "date"
    assert len(trace.x) > 10


async def test_csv_snapshot_parses_with_pandas(server: TestServer) -> None:
    status, headers, body = await fetch(server, f"/snapshots/{SYMBOL}.csv?range=1d&res=1m")
    assert status == 200, body
    assert headers["Content-Type"].startswith("text/csv")
    frame = pd.read_csv(io.BytesIO(body))
    assert list(frame.columns) == ["start_ms", "time_utc", "open", "high", "low", "close"]
    assert len(frame) == 120
    assert (frame["high"] >= frame[["open", "close"]].max(axis=1)).all()


async def test_json_and_txt_snapshots_carry_the_latest_quote_and_the_change(
    server: TestServer,
) -> None:
    status, _, body = await fetch(server, f"/snapshots/{SYMBOL}.json?range=1d&res=1m")
    assert status == 200
    snap = orjson.loads(body)
    assert snap["latest"]["price"] == 4_001.0
    candles = candles_for(120)
    assert snap["change"] == pytest.approx(candles[-1].close - candles[0].open)
    assert snap["high"] == max(c.high for c in candles)
    status, headers, text = await fetch(server, f"/snapshots/{SYMBOL}.txt?range=1d&res=1m")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    assert b"bid 4000.80  ask 4001.20" in text  # gold to the cent (its precision)
    assert b"change" in text


async def test_etag_and_if_none_match_give_304(server: TestServer) -> None:
    path = f"/charts/{SYMBOL}.png?range=1w"
    status, headers, _ = await fetch(server, path)
    assert status == 200
    assert headers["Cache-Control"] == "public, max-age=30"
    status, headers2, body = await fetch(server, path, {"If-None-Match": headers["ETag"]})
    assert (status, body) == (304, b"")
    assert headers2["ETag"] == headers["ETag"]
    status, _, _ = await fetch(server, path, {"If-None-Match": '"something-else"'})
    assert status == 200


async def test_a_new_candle_makes_a_new_version_and_etag(tmp_path: Path) -> None:
    async with render_server(tmp_path) as (srv, store):
        path = f"/charts/{SYMBOL}.png?range=1h"  # trusted for 1 s
        _, first, _ = await fetch(srv, path)
        later = NOW_MS + MINUTE_MS
        await store.write(candles_for(121, end_ms=later)[-1:], [state_at(later, 4_020.0)])
        for _ in range(60):  # bounded: the old version is trusted for at most 1 s
            _, headers, _ = await fetch(srv, path)
            if headers["ETag"] != first["ETag"]:
                break
            await asyncio.sleep(0.1)
        assert headers["ETag"] != first["ETag"]


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("/charts/XAU-USD.gif", "format must be one of png, svg, json"),
        ("/charts/XAU-USD.png?range=2h", "range must be one of 1h, 1d, 1w, 1m, 1y, 5y"),
        ("/charts/XAU-USD.png?w=5000", "w must be an integer from 200 to 2000"),
        ("/charts/XAU-USD.png?h=abc", "h must be an integer from 100 to 1200"),
        ("/charts/XAU-USD.png?type=bars", "type must be one of area, candles"),
        ("/charts/XAU-USD.png?theme=blue", "theme must be one of light, dark"),
        ("/charts/XAU-USD.png?range=1h&res=1d", "res for range 1h must be one of 1s, 1m"),
        ("/charts/xau.png", "is not of the form XAU-USD"),
        ("/snapshots/XAU-USD.png", "format must be one of json, csv, txt"),
    ],
)
async def test_bad_parameters_get_400_naming_what_is_allowed(
    server: TestServer, path: str, fragment: str
) -> None:
    status, headers, body = await fetch(server, path)
    assert status == 400
    assert headers["Content-Type"].startswith("application/json")
    assert fragment in body.decode()


async def test_a_symbol_without_prices_is_404(server: TestServer) -> None:
    status, _, body = await fetch(server, "/charts/XPT-USD.png")
    assert status == 404
    assert b"no prices for XPT-USD" in body


async def test_identical_concurrent_requests_render_once(server: TestServer) -> None:
    renderer = server.app[RENDERER]
    results = await asyncio.gather(
        *(fetch(server, f"/charts/{SYMBOL}.png?range=1d&w=640") for _ in range(20))
    )
    assert {status for status, _, _ in results} == {200}
    assert len({body for _, _, body in results}) == 1
    assert renderer.stats.misses == 1
    assert renderer.charts.stats.rendered == 1


def _pid(server: TestServer, pool: str = "charts") -> int:
    renderer = server.app[RENDERER]
    (pid,) = getattr(renderer, pool).pids()
    return int(pid)


async def _wait(check: Callable[[], bool], what: str) -> None:
    for _ in range(200):  # bounded: 10 s
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_full_queue_answers_503_with_retry_after(tmp_path: Path) -> None:
    config = RenderConfig(chart_workers=1, text_workers=1, chart_queue=1)
    async with render_server(tmp_path, config) as (srv, _):
        pid = _pid(srv)
        os.kill(pid, signal.SIGSTOP)  # the worker holds the first request
        try:
            first = asyncio.create_task(fetch(srv, f"/charts/{SYMBOL}.png?w=601"))
            await _wait(lambda: srv.app[RENDERER].charts.stats.batches == 1, "dispatch")
            second = asyncio.create_task(fetch(srv, f"/charts/{SYMBOL}.png?w=602"))
            await _wait(lambda: srv.app[RENDERER].charts.queued == 1, "queue")
            status, headers, body = await fetch(srv, f"/charts/{SYMBOL}.png?w=603")
            assert status == 503
            assert headers["Retry-After"] == "1"
            assert b"busy" in body
            # Snapshots have their own pool: a flood of charts does not starve them.
            status, _, _ = await fetch(srv, f"/snapshots/{SYMBOL}.csv")
            assert status == 200
        finally:
            os.kill(pid, signal.SIGCONT)
        assert (await first)[0] == 200
        assert (await second)[0] == 200


async def test_a_killed_worker_fails_its_request_cleanly_and_is_replaced(tmp_path: Path) -> None:
    async with render_server(tmp_path) as (srv, _):
        pid = _pid(srv)
        os.kill(pid, signal.SIGSTOP)
        pending = asyncio.create_task(fetch(srv, f"/charts/{SYMBOL}.png?w=700"))
        await _wait(lambda: srv.app[RENDERER].charts.stats.batches == 1, "dispatch")
        os.kill(pid, signal.SIGKILL)
        status, headers, body = await pending
        assert status == 503
        assert b"died" in body
        assert headers["Retry-After"] == "1"
        await _wait(lambda: srv.app[RENDERER].charts.pids() not in ([], [pid]), "replacement")
        status, _, body = await fetch(srv, f"/charts/{SYMBOL}.png?w=700")
        assert status == 200
        assert Image.open(io.BytesIO(body)).size == (700, 300)
        assert srv.app[RENDERER].charts.stats.restarts == 1


async def test_a_render_over_its_timeout_gets_504_and_a_new_worker(tmp_path: Path) -> None:
    config = RenderConfig(chart_workers=1, text_workers=1, timeout_ms=300)
    async with render_server(tmp_path, config) as (srv, _):
        pid = _pid(srv)
        os.kill(pid, signal.SIGSTOP)  # stands for a render that never ends
        status, _, body = await fetch(srv, f"/charts/{SYMBOL}.svg")
        assert status == 504
        assert b"longer than 300 ms" in body
        await _wait(lambda: srv.app[RENDERER].charts.pids() not in ([], [pid]), "replacement")
        status, _, _ = await fetch(srv, f"/charts/{SYMBOL}.svg")
        assert status == 200


async def test_a_render_that_raises_gets_500_naming_the_error_and_the_worker_stays(
    tmp_path: Path,
) -> None:
    async with render_server(tmp_path) as (srv, store):
        start = NOW_MS - NOW_MS % 300_000  # corrupt data: a close of infinity
        bad = Candle(SYMBOL, "5m", start, start + 300_000, 4_000.0, 4_001.0, 3_999.0, math.inf,
                     3, start, start + 1_000, False)  # fmt: skip
        await store.write([bad], [])
        pid = _pid(srv)
        status, _, body = await fetch(srv, f"/charts/{SYMBOL}.png?res=5m")
        assert status == 500
        message = orjson.loads(body)["error"]["message"]
        assert re.fullmatch(r"\w+Error: cannot convert float \w+ to integer", message), message
        status, _, body = await fetch(srv, f"/charts/{SYMBOL}.png?res=1m")
        assert status == 200
        assert _pid(srv) == pid
        assert srv.app[RENDERER].charts.stats.failed == 1


async def test_the_cache_directory_is_shared_between_nodes(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    config = RenderConfig(
        chart_workers=1, text_workers=1, cache_dir=shared, disk_formats=("svg", "png")
    )
    path = f"/charts/{SYMBOL}.svg?range=1w&res=1m"
    async with render_server(tmp_path / "a", config) as (srv, _):
        _, headers, body = await fetch(srv, path)
    name = headers["ETag"].strip('"') + ".svg"
    assert (shared / name).read_bytes() == body
    assert not [p for p in shared.iterdir() if p.name.startswith(".tmp")]
    # A 1h chart is fresh for one second: not worth a file.
    async with render_server(tmp_path / "c", config) as (srv, _):
        _, headers1h, _ = await fetch(srv, f"/charts/{SYMBOL}.svg?range=1h")
    assert not (shared / (headers1h["ETag"].strip('"') + ".svg")).exists()
    # Another node with the same data finds the file instead of rendering its own.
    (shared / name).write_bytes(b"<svg>from the other node</svg>")
    async with render_server(tmp_path / "b", config) as (srv, _):
        status, headers2, body2 = await fetch(srv, path)
    assert (status, headers2["ETag"], body2) == (
        200,
        headers["ETag"],
        b"<svg>from the other node</svg>",
    )


async def test_an_unreadable_cache_entry_is_rendered_instead_and_leaves_no_temporary_file(
    tmp_path: Path,
) -> None:
    shared = tmp_path / "shared"
    config = RenderConfig(chart_workers=1, text_workers=1, cache_dir=shared)
    path = f"/charts/{SYMBOL}.png?range=1w&res=1m"
    async with render_server(tmp_path / "a", config) as (srv, _):
        _, headers, body = await fetch(srv, path)
    entry = shared / (headers["ETag"].strip('"') + ".png")
    entry.unlink()
    entry.mkdir()  # a broken shared directory: the name is there but cannot be read or replaced
    async with render_server(tmp_path / "b", config) as (srv, _):
        status, headers2, body2 = await fetch(srv, path)
    assert (status, headers2["ETag"], body2) == (200, headers["ETag"], body)
    assert [p.name for p in shared.iterdir()] == [entry.name]


async def test_only_the_configured_formats_go_to_the_cache_directory(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    config = RenderConfig(chart_workers=1, text_workers=1, cache_dir=shared)  # png, snapshots
    async with render_server(tmp_path / "a", config) as (srv, _):
        names = {}
        for path in (f"/charts/{SYMBOL}.{fmt}?range=1w&res=1m" for fmt in ("png", "svg", "json")):
            _, headers, _ = await fetch(srv, path)
            names[path.split("?")[0][-4:].lstrip(".")] = headers["ETag"].strip('"')
        _, headers, _ = await fetch(srv, f"/snapshots/{SYMBOL}.csv?range=1w&res=1m")
    files = {p.name for p in shared.iterdir()}
    assert files == {f"{names['png']}.png", headers["ETag"].strip('"') + ".csv"}


async def test_configured_charts_are_kept_warm(tmp_path: Path) -> None:
    config = RenderConfig(
        chart_workers=1,
        text_workers=1,
        pregenerate=(f"{SYMBOL}.png?range=1d&theme=dark", f"snapshots/{SYMBOL}.csv"),
        pregenerate_interval_ms=50,
    )
    async with render_server(tmp_path, config) as (srv, _):
        renderer = srv.app[RENDERER]
        await _wait(lambda: renderer.stats.pregenerated >= 2, "pre-generation")
        misses = renderer.stats.misses
        status, _, _ = await fetch(srv, f"/charts/{SYMBOL}.png?theme=dark&range=1d")
        assert status == 200
        status, _, _ = await fetch(srv, f"/snapshots/{SYMBOL}.csv")
        assert status == 200
        assert renderer.stats.misses == misses  # both came from the cache


async def test_the_embedded_service_serves_charts_of_live_prices(service: Service) -> None:
    url = service.url + f"charts/{SYMBOL}.png?range=1h&res=1s&type=candles"
    async with aiohttp.ClientSession() as http:
        for _ in range(100):  # bounded: until the simulator's first prices are stored
            async with http.get(url) as resp:
                if resp.status == 200:
                    body = await resp.read()
                    break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"no chart: {resp.status}")
    assert Image.open(io.BytesIO(body)).size == (600, 300)
