"""Benchmark of the render role over real HTTP, with matplotlib measured in the same run.

The server is the render-only app (``web.app.make_render_app``: the same handlers, pools and
caches as the all-in-one service) on uvloop in its own process, with a real SQLite store filled
with synthetic candles for ``--symbols`` symbols at every range's default resolution. The load
generator is wrk (a C client: one thread, ``--connections`` keep-alive connections) with
``bench/wrk.lua``, which walks a list of paths in order; a Python client took as much CPU per
request as the server and so capped what could be measured on two cores.

Phases, each bounded in time (and the cold ones by their distinct paths):

1. cold PNG: every request a distinct chart (symbol x range x type x theme x width about 600x300),
   so each one is rendered: none is in the memory cache (nor in the shared directory, which
   is off unless ``--shared-dir``).
   Should a phase outrun its distinct paths, the repeats are reported as cache hits.
2. cold SVG: the same with ``.svg``.
3. cold snapshots: distinct JSON/CSV/TXT snapshots (symbol x range x resolution x format).
4. cache hits: ``--hot`` charts already rendered, requested again and again for ``--hit-s``.
5. baseline: a matplotlib server (the same aiohttp route and the same data, rendering in a pool
   of as many processes) serving the same cold PNG and SVG charts.

The machine is shared: other engineers use its two cores at the same time. Progress goes to
stderr; the results (a markdown table) go to stdout. Run ``python bench/render.py --help``.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import cProfile
import io
import math
import multiprocessing
import os
import pstats
import resource
import shutil
import subprocess
import tempfile
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection

import numpy as np
import uvloop
from aiohttp import web

from bench.harness import command_line, header, machine, make_parser, say, table
from render.charts import render_chart
from render.reduce import MIN_CANDLE_PX, C, Floats, H, L, O, T, merge_candles, minmax_downsample
from render.service import RenderConfig, Renderer
from render.spec import (
    DEFAULT_RES,
    RANGES_MS,
    ChartSpec,
    SpecError,
    allowed_resolutions,
    parse_chart,
    parse_path,
)
from render.theme import THEMES, hex_colour
from stream.contract import Candle, SymbolState, Tick
from stream.contract.resolutions import RESOLUTIONS
from stream.store.sqlite import SqliteStore
from web.api import json_errors
from web.app import make_render_app
from web.keys import RENDERER

NOW_MS = 1_795_244_930_000
RANGES = list(RANGES_MS)


def symbols(n: int) -> list[str]:
    return [f"M{i:03d}-USD" for i in range(n)]


def series(symbol: str, res: str, n: int) -> list[Candle]:
    """A deterministic random walk of ``n`` candles ending at ``NOW_MS``, with a gap."""
    step = RESOLUTIONS[res]
    rng = np.random.default_rng(zlib.crc32(f"{symbol}/{res}".encode()))
    close = 2_000 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    start = NOW_MS - NOW_MS % step - (n - 1) * step
    out = []
    prev = close[0]
    for i in range(n):
        if n // 2 <= i < n // 2 + n // 20:  # a feed outage
            continue
        c = float(close[i])
        hi = max(prev, c) * (1 + abs(rng.normal(0, 0.0007)))
        lo = min(prev, c) * (1 - abs(rng.normal(0, 0.0007)))
        t = start + i * step
        out.append(
            Candle(symbol, res, t, t + step, prev, hi, lo, c, 10, t, t + step - 1, i < n - 1)
        )
        prev = c
    return out


async def fill_store(path: Path, names: list[str]) -> int:
    store = await SqliteStore.open(path)
    count = 0
    try:
        for name in names:
            candles: list[Candle] = []
            for res in sorted(set(DEFAULT_RES.values())):
                span = max(RANGES_MS[r] for r, d in DEFAULT_RES.items() if d == res)
                candles += series(name, res, span // RESOLUTIONS[res])
            price = candles[-1].close
            tick = Tick(name, "bench", price - 0.2, price + 0.2, price, NOW_MS, NOW_MS)
            await store.write(candles, [SymbolState(name, tick, NOW_MS, -1, {}, [])])
            count += len(candles)
    finally:
        await store.close()
    return count


# ---------------------------------------------------------------------------------------------
# The servers


def serve_pricestream(db: Path, cache_dir: Path | None, workers: int, conn: Connection) -> None:
    async def main() -> None:
        store = await SqliteStore.open(db)
        config = RenderConfig(
            chart_workers=workers, text_workers=1, cache_dir=cache_dir, chart_queue=2_048
        )
        app = make_render_app(store=store, render=config)

        def pids() -> list[int]:
            return app[RENDERER].charts.pids() + app[RENDERER].text.pids()

        await _serve(app, conn, pids)
        await store.close()

    uvloop.run(main())


_MPL_FIG: object = None


def mpl_render(spec: ChartSpec, rows: Floats, as_of_ms: int) -> bytes:
    """The same chart with matplotlib (figure reused per process, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    global _MPL_FIG
    th = THEMES[spec.theme]
    dpi = 100
    if _MPL_FIG is None:
        _MPL_FIG = plt.figure(dpi=dpi)
    fig = _MPL_FIG
    fig.clear()  # type: ignore[attr-defined]
    fig.set_size_inches(spec.width_px / dpi, spec.height_px / dpi)  # type: ignore[attr-defined]
    bg, fg = hex_colour(th.bg), hex_colour(th.text)
    fig.set_facecolor(bg)  # type: ignore[attr-defined]
    ax = fig.add_subplot(1, 1, 1)  # type: ignore[attr-defined]
    ax.set_facecolor(bg)
    # The same data reduction as ours, so that matplotlib draws as many shapes as we do, and
    # collections rather than one artist per candle: a fair, tuned baseline.
    span_ms = float(RANGES_MS[spec.range])
    k = max(1, math.ceil(MIN_CANDLE_PX * span_ms / RESOLUTIONS[spec.res] / spec.width_px))
    if spec.kind == "candles":
        rows = merge_candles(rows, k)
    else:
        t, c = minmax_downsample(rows[:, T], rows[:, C], spec.width_px)
        rows = np.column_stack([t, c, c, c, c])
    x = rows[:, T] / 86_400_000.0  # matplotlib's date numbers: days since the epoch
    if spec.kind == "candles":
        body_pt = max(1.0, 0.72 * 72 * spec.width_px / dpi * k * RESOLUTIONS[spec.res] / span_ms)
        up = rows[:, C] >= rows[:, O]
        for mask, colour in ((up, th.up), (~up, th.down)):
            col = hex_colour(colour)
            ax.vlines(x[mask], rows[mask, L], rows[mask, H], color=col, linewidth=0.8)
            ax.vlines(x[mask], rows[mask, O], rows[mask, C], color=col, linewidth=body_pt)
    else:
        ax.plot(x, rows[:, C], color=hex_colour(th.line), linewidth=1.4)
        ax.fill_between(x, rows[:, C], rows[:, C].min(), color=hex_colour(th.fill_top))
    ax.axhline(rows[-1, C], color=hex_colour(th.marker), linestyle=":", linewidth=1)
    ax.set_title(f"{spec.symbol}  {spec.range} | {spec.res}  {rows[-1, C]:,.2f}", color=fg,
                 fontsize=10, loc="left")  # fmt: skip
    locator = mdates.AutoDateLocator()  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    ax.yaxis.tick_right()
    ax.tick_params(colors=fg, labelsize=8)
    ax.grid(color=hex_colour(th.grid), linewidth=0.8)
    for spine in ax.spines.values():
        spine.set_color(hex_colour(th.axis))
    fig.subplots_adjust(left=0.02, right=0.88, top=0.9, bottom=0.1)  # type: ignore[attr-defined]
    out = io.BytesIO()
    fig.savefig(out, format=spec.fmt, facecolor=bg)  # type: ignore[attr-defined]
    return out.getvalue()


def serve_matplotlib(db: Path, workers: int, conn: Connection) -> None:
    async def main() -> None:
        store = await SqliteStore.open(db)
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"))
        data: dict[tuple[str, str], Floats] = {}

        async def chart(request: web.Request) -> web.Response:
            try:
                spec = parse_chart(
                    request.match_info["symbol"], request.match_info["fmt"], request.query
                )
            except SpecError as exc:
                raise web.HTTPBadRequest(text=str(exc)) from exc
            rows = data.get((spec.symbol, spec.range))
            if rows is None:
                candles = await store.candles(
                    spec.symbol, spec.res, start_ms=NOW_MS - RANGES_MS[spec.range],
                    end_ms=NOW_MS + 1, limit=10_000,
                )  # fmt: skip
                rows = np.array([(c.start_ms, c.open, c.high, c.low, c.close) for c in candles])
                data[(spec.symbol, spec.range)] = rows
            loop = asyncio.get_running_loop()
            body = await loop.run_in_executor(pool, mpl_render, spec, rows, NOW_MS)
            ctype = "image/png" if spec.fmt == "png" else "image/svg+xml"
            return web.Response(body=body, content_type=ctype)

        app = web.Application(middlewares=[json_errors])
        app.router.add_get("/charts/{symbol}.{fmt}", chart)
        # warm the workers (imports) before the clock starts
        warm = ChartSpec("M000-USD", "1d", "5m", "png")
        warm_rows = np.array([[NOW_MS - 60_000, 1, 2, 0.5, 1.5], [NOW_MS, 1.5, 2, 1, 1.2]])
        await asyncio.gather(
            *(asyncio.get_running_loop().run_in_executor(pool, mpl_render, warm, warm_rows,
                                                         NOW_MS) for _ in range(workers * 2))
        )  # fmt: skip
        await _serve(app, conn, lambda: list(pool._processes))
        pool.shutdown()
        await store.close()

    uvloop.run(main())


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (its render workers are not our children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _serve(app: web.Application, conn: Connection, pids: Callable[[], list[int]]) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
    conn.send(port)
    loop = asyncio.get_running_loop()
    while True:  # each phase: reset, then report the CPU the server used during it
        command = await loop.run_in_executor(None, conn.recv)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        workers = sum(cpu_s(pid) for pid in pids())
        conn.send((usage.ru_utime + usage.ru_stime, workers))
        if command == "stop":
            break
    await runner.cleanup()


# ---------------------------------------------------------------------------------------------
# The load generator


@dataclass
class Load:
    ok: int = 0
    refused: int = 0  # answers that are not 2xx or 3xx (503 when the queue is full)
    broken: int = 0  # connect, read and write errors and timeouts
    seconds: float = 0.0
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    client_cpu_s: float = 0.0
    web_cpu_s: float = 0.0
    worker_cpu_s: float = 0.0
    bytes: int = 0
    wrapped: int = 0  # requests past the end of the distinct paths (so: cache hits)

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


WRK_SCRIPT = Path(__file__).with_name("wrk.lua")


def need_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("bench/render.py drives the server with wrk: install it (apt-get install wrk)")
    return wrk


def run_load(port: int, paths: list[str], *, connections: int, duration_s: float,
             repeat: bool = False) -> Load:  # fmt: skip
    """``paths`` requested in order by wrk (one thread, ``connections`` keep-alive
    connections) for ``duration_s``; a C client, so the server gets the cores, not the client."""
    with tempfile.NamedTemporaryFile("w", prefix="bench-paths-", suffix=".txt") as f:
        f.write("\n".join(paths) + "\n")
        f.flush()
        env = {**os.environ, "PATHS": f.name, "REPEAT": "1" if repeat else "0"}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run(
            [need_wrk(), "-t1", f"-c{connections}", f"-d{max(1, round(duration_s))}s",
             "--timeout", "10s", "-s", str(WRK_SCRIPT), f"http://127.0.0.1:{port}"],
            env=env, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = Load()
    load.client_cpu_s = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    for line in out.splitlines():
        word, *values = line.split()
        if word == "summary":
            requests, duration_us, load.bytes, p50_us, p99_us, load.wrapped, bad, broken = map(
                int, values
            )
            load.ok, load.refused, load.broken = requests - bad, bad, broken
            load.seconds = duration_us / 1e6
            load.p50_ms, load.p99_ms = p50_us / 1000, p99_us / 1000
    if not load.seconds:
        raise RuntimeError(f"wrk printed no summary: {out[-500:]!r}")
    return load


# ---------------------------------------------------------------------------------------------


def chart_paths(names: list[str], fmt: str, count: int, *, salt: int = 0) -> list[str]:
    """``count`` distinct charts about 600x300, mixing symbols, ranges, types and themes."""
    out = []
    for i in range(count):
        name = names[i % len(names)]
        rng = RANGES[(i // len(names)) % len(RANGES)]
        rest = i // (len(names) * len(RANGES))
        kind = ("area", "candles")[rest % 2]
        theme = ("light", "dark")[(rest // 2) % 2]
        w = 500 + (rest // 4 + salt) % 300
        out.append(f"/charts/{name}.{fmt}?range={rng}&type={kind}&theme={theme}&w={w}&h=300")
    return out


def snapshot_paths(names: list[str]) -> list[str]:
    """Distinct snapshots: every format, symbol, range and resolution the store holds for the
    whole range (at most 3,000 candles, as a text price file would be)."""
    spans = {
        res: max(RANGES_MS[r] for r, d in DEFAULT_RES.items() if d == res)
        for res in set(DEFAULT_RES.values())
    }
    pairs = [
        (rng, res)
        for rng, span in RANGES_MS.items()
        for res in allowed_resolutions(rng)
        if spans.get(res, 0) >= span and span // RESOLUTIONS[res] <= 3_000
    ]
    return [
        f"/snapshots/{name}.{fmt}?range={rng}&res={res}"
        for fmt in ("json", "csv", "txt")
        for name in names
        for rng, res in pairs
    ]


Server = tuple[multiprocessing.process.BaseProcess, Connection, int]


def start(target: Callable[..., None], *args: object) -> Server:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=target, args=(*args, child))
    proc.start()
    port = parent.recv()
    return proc, parent, port


def server_cpu(conn: Connection) -> tuple[float, float]:
    """CPU seconds of the web process and of its render workers so far."""
    conn.send("cpu")
    cpu: tuple[float, float] = conn.recv()
    return cpu


def stop(proc: multiprocessing.process.BaseProcess, conn: Connection) -> None:
    conn.send("stop")
    conn.recv()
    proc.join(30)


HEAD = ("what", "ok", "s", "per second", "p50 ms", "p99 ms", "refused/failed",
        "CPU ms per request: web / workers / client", "note")  # fmt: skip


def row(name: str, load: Load, note: str = "") -> list[object]:
    cpu = ""
    if load.ok:
        per = [x / load.ok * 1000 for x in (load.web_cpu_s, load.worker_cpu_s, load.client_cpu_s)]
        cpu = " / ".join(f"{x:.2f}" for x in per)
    if load.wrapped:
        note = f"{note}; {load.wrapped:,} repeated (cache hits)".lstrip("; ")
    return [
        name, f"{load.ok:,}", f"{load.seconds:.1f}", f"**{load.rate:,.0f}**", f"{load.p50_ms:.1f}",
        f"{load.p99_ms:.1f}", load.refused + load.broken, cpu, note,
    ]  # fmt: skip


def phase(
    conn: Connection, port: int, paths: list[str], *, connections: int, duration_s: float,
    repeat: bool = False,
) -> Load:  # fmt: skip
    """One load phase, with the server's CPU (web process, workers) spent during it."""
    web0, workers0 = server_cpu(conn)
    load = run_load(port, paths, connections=connections, duration_s=duration_s, repeat=repeat)
    web1, workers1 = server_cpu(conn)
    load.web_cpu_s, load.worker_cpu_s = web1 - web0, workers1 - workers0
    return load


def per_chart_ms(repeat: int) -> list[str]:
    """Median ms to draw one 600x300 chart of a day of 5m candles in this process: ours and
    matplotlib's, for the library choice (no HTTP, no pool)."""
    rows = np.array(
        [(c.start_ms, c.open, c.high, c.low, c.close) for c in series("M000-USD", "5m", 288)]
    )
    out: list[list[str]] = []
    for name, fn, fmt in (
        ("ours: PNG (numpy + palette + ISA-L deflate)", render_chart, "png"),
        ("ours: SVG (numpy + %-formatted integers)", render_chart, "svg"),
        ("ours: plotly figure JSON (dict + orjson)", render_chart, "json"),
        ("matplotlib PNG (Agg, figure reused)", mpl_render, "png"),
        ("matplotlib SVG", mpl_render, "svg"),
    ):
        cells = []
        for kind in ("area", "candles"):
            spec = ChartSpec("M000-USD", "1d", "5m", fmt, 600, 300, kind, "light")
            fn(spec, rows, NOW_MS)
            n = repeat if fn is render_chart else max(3, repeat // 50)
            times = []
            for _ in range(n):
                t0 = time.perf_counter()
                fn(spec, rows, NOW_MS)
                times.append(time.perf_counter() - t0)
            cells.append(f"{sorted(times)[len(times) // 2] * 1000:.3f} ms")
        out.append([name, *cells])
    return table(["one 600x300 chart, one process", "area", "candles"], out, align="lll")


async def renderer_only(db: Path, names: list[str], count: int, workers: int) -> list[list[object]]:
    """The web process's share of a cold chart, without HTTP: ``count`` distinct charts of each
    format through the service's ``Renderer`` and its worker pool, 64 at a time, after one chart
    of every symbol and range has put the data sets in the renderer's cache."""
    store = await SqliteStore.open(db)
    config = RenderConfig(chart_workers=workers, text_workers=1, chart_queue=4_096)
    renderer = Renderer(store, config=config)
    await renderer.start()
    rows: list[list[object]] = []
    try:
        warm = chart_paths(names, "png", len(names) * len(RANGES), salt=999)
        await asyncio.gather(*(renderer.render(parse_path(p[1:])) for p in warm))
        for fmt in ("png", "svg"):
            say(f"{count:,} cold {fmt} charts through Renderer.render ...")
            specs = [parse_path(p[1:]) for p in chart_paths(names, fmt, count)]
            cpu_s, wall_s = time.process_time(), time.perf_counter()
            for i in range(0, len(specs), 64):
                await asyncio.gather(*(renderer.render(spec) for spec in specs[i : i + 64]))
            cpu_s, wall_s = time.process_time() - cpu_s, time.perf_counter() - wall_s
            # The Python calls it takes do not depend on the machine's noise: a second set of
            # distinct charts under cProfile counts them.
            again = [parse_path(p[1:]) for p in chart_paths(names, fmt, count, salt=150)]
            profile = cProfile.Profile()
            profile.enable()
            for i in range(0, len(again), 64):
                await asyncio.gather(*(renderer.render(spec) for spec in again[i : i + 64]))
            profile.disable()
            calls = pstats.Stats(profile).total_calls  # type: ignore[attr-defined]
            rows.append([f"cold {fmt.upper()}, distinct charts ~600x300", f"{count:,}",
                         f"{count / wall_s:,.0f}", f"{cpu_s / count * 1e6:.1f}",
                         f"{calls / count:.0f}"])  # fmt: skip
    finally:
        await renderer.close()
        await store.close()
    return rows


def main_renderer_only(opts: argparse.Namespace, names: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-render-") as tmp:
        db = Path(tmp) / "bench.db"
        say(f"store: {asyncio.run(fill_store(db, names))} candles of {len(names)} symbols")
        rows = uvloop.run(renderer_only(db, names, opts.renderer_only, opts.workers))
    facts = machine(libraries=("numpy",), load_at="end")
    more = [f"{opts.workers} render workers; no HTTP: the web process's CPU per chart"]
    lines = header("Renderer without HTTP", command=command_line(__file__), facts=facts, more=more)
    head = ["measurement", "charts", "charts/s", "CPU µs per chart in the web process",
            "Python calls per chart in the web process"]  # fmt: skip
    print("\n".join([*lines, *table(head, rows, align="lrrrr")]), flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = make_parser(
        __file__,
        __doc__,
        examples=[
            ("", "about 50 s"),
            ("--shared-dir", "with a shared cache directory"),
            ("--symbols 8 --cold-s 1 --baseline-s 1 --hit-s 1", "a short run"),
            ("--renderer-only 4000", "the web process's share of a chart, no HTTP"),
        ],
    )
    parser.add_argument("--symbols", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="render processes per pool")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--cold", type=int, default=100_000, help="distinct charts per format (more than used)"
    )
    parser.add_argument("--cold-s", type=float, default=5.0, help="seconds of each cold phase")
    parser.add_argument("--baseline-s", type=float, default=8.0, help="s per matplotlib phase")
    parser.add_argument("--hot", type=int, default=200, help="distinct charts in the hit phase")
    parser.add_argument("--hit-s", type=float, default=8.0)
    parser.add_argument(
        "--shared-dir",
        action="store_true",
        help="with a shared cache directory (PNG and snapshots of 1w and longer), as render nodes "
        "sharing one would run; off by default, as in the service",
    )
    parser.add_argument(
        "--renderer-only",
        type=int,
        metavar="COUNT",
        help="only time COUNT cold charts per format through Renderer.render in this process "
        "(no HTTP, no wrk, no matplotlib): the web process's CPU per chart",
    )
    opts = parser.parse_args(argv)
    if opts.renderer_only:
        main_renderer_only(opts, symbols(opts.symbols))
        return
    need_wrk()
    conns = opts.connections

    names = symbols(opts.symbols)
    results: dict[str, Load] = {}
    base: dict[str, Load] = {}
    with tempfile.TemporaryDirectory(prefix="bench-render-") as tmp:
        db = Path(tmp) / "bench.db"
        n = asyncio.run(fill_store(db, names))
        say(f"store: {n} candles of {len(names)} symbols")
        cache_dir = Path(tmp) / "cache" if opts.shared_dir else None
        proc, conn, port = start(serve_pricestream, db, cache_dir, opts.workers)
        try:
            say(f"pricestream render role on port {port}: warming up")
            warm = chart_paths(names, "png", 64, salt=999)
            run_load(port, warm, connections=8, duration_s=3, repeat=True)
            for fmt in ("png", "svg"):
                say(f"cold {fmt} for {opts.cold_s:.0f} s ...")
                paths = chart_paths(names, fmt, opts.cold)
                results[fmt] = phase(conn, port, paths, connections=conns, duration_s=opts.cold_s)
            say("cold snapshots ...")
            paths = snapshot_paths(names)
            results["snap"] = phase(conn, port, paths, connections=conns, duration_s=1)
            hot = chart_paths(names, "png", opts.hot, salt=500)
            run_load(port, hot, connections=8, duration_s=2, repeat=True)
            say(f"cache hits for {opts.hit_s:.0f} s ...")
            results["hit"] = phase(
                conn, port, hot, connections=conns, duration_s=opts.hit_s, repeat=True
            )
        finally:
            stop(proc, conn)
        proc, conn, port = start(serve_matplotlib, db, opts.workers)
        try:
            for fmt in ("png", "svg"):
                say(f"matplotlib cold {fmt} for {opts.baseline_s:.0f} s ...")
                paths = chart_paths(names, fmt, opts.cold)
                base[fmt] = phase(conn, port, paths, connections=conns,
                                  duration_s=opts.baseline_s)  # fmt: skip
        finally:
            stop(proc, conn)

    cache = "on (PNG and snapshots of 1w and longer)" if opts.shared_dir else "off"
    run = f"{opts.workers} render workers, {conns} connections, shared cache directory {cache}"
    facts = machine(libraries=("aiohttp", "numpy", "matplotlib"), load_at="end")
    lines = header("Render role over HTTP", command=command_line(__file__), facts=facts, more=[run])
    rows = []
    for fmt in ("png", "svg"):
        ratio = results[fmt].rate / max(base[fmt].rate, 1e-9)
        rows.append(row(f"cold {fmt.upper()}, distinct charts ~600x300", results[fmt],
                        f"{ratio:.0f}x matplotlib"))  # fmt: skip
    rows.append(row("cold snapshots, distinct (JSON, CSV, TXT)", results["snap"]))
    rows.append(row(f"cache hits ({opts.hot} PNG charts, repeated)", results["hit"]))
    rows += [row(f"baseline: matplotlib {f.upper()}, the same charts", base[f]) for f in base]
    lines += [*table(HEAD, rows, align="lllllllll"), "", *per_chart_ms(500)]
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
