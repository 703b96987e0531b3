"""Part 2 of ``bench/pipeline.py``, latency: tick -> websocket client, beside a bare broadcast.

The real embedded service (``run_embedded``, port 0, simulator off), fed by a paced
``ingest.collector.Publisher`` that stamps ``recv_ms`` at publish, with websocket clients (the
``websockets`` library) in a separate process. Latency is the client's receive time minus the
tick's ``recv_ms``. Beside it: a bare ``websockets`` server that ``broadcast``s the same messages
at the same rate to as many clients, measured the same way. Run it with
``python bench/pipeline.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import statistics
import time
from array import array
from dataclasses import dataclass, field
from importlib.metadata import version
from multiprocessing.connection import Connection
from pathlib import Path

import orjson

from bench.harness import (
    Sink,
    TickSource,
    Timer,
    answer,
    bare_broadcast,
    embedded,
    fmt,
    measured_window,
    pace,
    percentile,
    run_child,
    say,
    table,
    verdict,
    warm_up,
)

P99_TARGET_MS = 20.0


@dataclass(frozen=True, slots=True)
class LatencyOptions:
    clients: int
    rate: float  # ticks/s
    seconds: float  # measured, per server
    warmup: float  # seconds, unmeasured, first
    subscribe: str  # "one" metal's channel per client, or "all" four
    compression: bool  # clients offer permessage-deflate


class LoopLag:
    """How late a 5 ms sleep wakes up on this event loop: a gauge of how busy the loop is."""

    PERIOD_S = 0.005

    def __init__(self) -> None:
        self.lags_ms: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(self.PERIOD_S)
            self.lags_ms.append((time.perf_counter() - t0 - self.PERIOD_S) * 1000)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def p99(self) -> float:
        return percentile(sorted(self.lags_ms), 0.99) if self.lags_ms else float("nan")


def subscriptions(clients: int, symbols: list[str], how: str) -> list[list[str]]:
    channels = [f"ticks:{s}" for s in symbols]
    if how == "all":
        return [channels for _ in range(clients)]
    return [[channels[i % len(channels)]] for i in range(clients)]


# The client process: it only connects, subscribes, timestamps and counts.


def client_entry(conn: Connection, url: str, subs: list[list[str]], compression: bool) -> None:
    run_child(conn, _clients(conn, url, subs, compression))


async def _clients(conn: Connection, url: str, subs: list[list[str]], compression: bool) -> None:
    from websockets.asyncio.client import ClientConnection, connect

    arrivals = array("q")  # time.time_ns() when the frame was handed to us
    stamps = array("q")  # the tick's recv_ms
    gaps = 0

    async def open_one(channels: list[str]) -> ClientConnection:
        ws = await connect(
            url,
            compression="deflate" if compression else None,
            proxy=None,
            ping_interval=None,
            open_timeout=30,
        )
        await ws.send(orjson.dumps({"op": "subscribe", "channels": channels}).decode())
        pending = set(channels)
        while pending:
            msg = orjson.loads(await ws.recv())
            if msg.get("type") == "snapshot":
                pending.discard(msg["channel"])
            elif msg.get("type") == "error":
                raise RuntimeError(f"subscribe refused: {msg}")
        return ws

    async def read(ws: ClientConnection) -> None:
        nonlocal gaps
        last: dict[str, int] = {}
        async for raw in ws:
            t = time.time_ns()
            msg = orjson.loads(raw)
            if msg.get("type") != "update":
                continue
            channel, seq = msg["channel"], msg["seq"]
            prev = last.get(channel)
            if prev is not None and seq > prev + 1:
                gaps += seq - prev - 1
            last[channel] = seq
            arrivals.append(t)
            stamps.append(msg["data"]["recv_ms"])

    conns: list[ClientConnection] = []
    for i in range(0, len(subs), 25):
        conns += await asyncio.gather(*(open_one(s) for s in subs[i : i + 25]))
    response = conns[0].response if conns else None
    ext = response.headers.get("Sec-WebSocket-Extensions", "") if response else ""
    readers = [asyncio.create_task(read(ws)) for ws in conns]
    loop = asyncio.get_running_loop()
    conn.send(("ready", len(conns), ext or "none"))
    cpu0 = time.process_time()
    command = await loop.run_in_executor(None, conn.recv)
    cpu = time.process_time() - cpu0
    _, start_ms, end_ms, wall_s = command
    await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    lat = sorted(
        a / 1e6 - s for a, s in zip(arrivals, stamps, strict=True) if start_ms <= s < end_ms
    )
    summary: dict[str, float] = {"count": len(lat), "gaps": gaps, "cpu": cpu / wall_s}
    if lat:
        summary |= {
            "p50": percentile(lat, 0.50),
            "p90": percentile(lat, 0.90),
            "p99": percentile(lat, 0.99),
            "p999": percentile(lat, 0.999),
            "max": lat[-1],
            "mean": statistics.fmean(lat),
            "over20": sum(1 for x in lat if x >= P99_TARGET_MS) / len(lat),
        }
    conn.send(("result", summary))


@dataclass(slots=True)
class LatencyResult:
    server: str
    clients: int
    extensions: str
    published: int
    expected: int
    summary: dict[str, float]
    loop_lag_p99_ms: float
    server_cpu: float
    notes: list[str] = field(default_factory=list)


async def measure_latency(
    server: str, url: str, *, opts: LatencyOptions, source: TickSource, sink: Sink
) -> LatencyResult:
    """Start the client process on ``url``, publish paced ticks through ``sink``, collect."""
    subs = subscriptions(opts.clients, source.symbols(), opts.subscribe)
    per_symbol: dict[str, int] = {}
    for channels in subs:
        for channel in channels:
            symbol = channel.split(":", 1)[1]
            per_symbol[symbol] = per_symbol.get(symbol, 0) + 1
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(
        target=client_entry, args=(child, url, subs, opts.compression), name="ws-clients"
    )
    proc.start()
    clients = "the client process"
    try:
        _, connected, ext = await asyncio.to_thread(answer, parent, timeout_s=60, what=clients)
        say(f"  {connected} clients subscribed (permessage extensions: {ext})")
        lag = LoopLag()
        lag.start()
        timer = Timer()
        seconds = opts.warmup + opts.seconds
        published = await pace(rate=opts.rate, seconds=seconds, source=source, sink=sink)
        await asyncio.sleep(0.5)  # let the last ticks arrive
        server_cpu = timer.cpu_share()
        await lag.stop()
        # The measured window: recv_ms from the first tick after the warm-up on, both sides.
        start_ms, end_ms, measured = measured_window(
            published, warmup_s=opts.warmup, rate=opts.rate
        )
        expected = sum(n * per_symbol.get(symbol, 0) for symbol, n in measured.items())
        parent.send(("stop", start_ms, end_ms, timer.stop()[0]))
        _, summary = await asyncio.to_thread(answer, parent, timeout_s=120, what=clients)
        assert isinstance(summary, dict)
    finally:
        await asyncio.get_running_loop().run_in_executor(None, proc.join, 30)
        if proc.is_alive():
            proc.kill()
    return LatencyResult(
        server,
        int(str(connected)),
        str(ext),
        sum(measured.values()),
        expected,
        summary,
        lag.p99(),
        server_cpu,
    )


async def latency_embedded(opts: LatencyOptions, tmp: Path) -> LatencyResult:
    say("part 2a: the embedded service (run_embedded, simulator off)")
    async with embedded(tmp / "embedded", start_s=30) as (running, send):
        source = TickSource()
        await warm_up(source, send)
        url = f"ws://127.0.0.1:{running.port}/ws"
        result = await measure_latency(
            "embedded Pricestream (run_embedded)", url, opts=opts, source=source, sink=send
        )
        assert running.worker is not None
        stats = running.worker.stats
        mean_write = stats.store_write_ms_total / max(stats.store_writes, 1)
        result.notes.append(
            f"worker: {stats.ticks_in:,} ticks in {stats.batches:,} batches, "
            f"{stats.store_writes} store writes of {mean_write:.1f} ms mean"
        )
    return result


async def latency_bare(opts: LatencyOptions, *, deflate: bool) -> LatencyResult:
    say(f"part 2b: bare websockets server, websockets.broadcast, deflate {deflate}")
    async with bare_broadcast(compression="deflate" if deflate else None) as (port, sink):
        return await measure_latency(
            "bare websockets.broadcast", f"ws://127.0.0.1:{port}/", opts=opts,
            source=TickSource(), sink=sink,
        )  # fmt: skip


async def part_latency(opts: LatencyOptions, tmp: Path) -> list[LatencyResult]:
    """The service, then the bare baseline: the results in the order of the report."""
    embedded_result = await latency_embedded(opts, tmp)
    # The baseline compresses exactly when the service does: the same frames on the wire.
    deflate = "deflate" in embedded_result.extensions
    return [await latency_bare(opts, deflate=deflate), embedded_result]


HEAD = ("server", "deflate", "received / expected", "gaps", "p50 ms", "p90 ms", "p99 ms",
        "p99.9 ms", "max ms", ">= 20 ms", "server loop lag p99 ms", "server CPU",
        "client CPU")  # fmt: skip


def report_lines(opts: LatencyOptions, lat: list[LatencyResult]) -> list[str]:
    """Part 2's section of the report, as markdown lines."""

    def cells(r: LatencyResult) -> list[object]:
        s = r.summary
        return [
            r.server, "yes" if "deflate" in r.extensions else "no",
            f"{int(s['count']):,} / {r.expected:,}", int(s["gaps"]), fmt(s.get("p50")),
            fmt(s.get("p90")), f"**{fmt(s.get('p99'))}**", fmt(s.get("p999")),
            fmt(s.get("max")), f"{s.get('over20', 0.0):.2%}", f"{r.loop_lag_p99_ms:.2f}",
            f"{r.server_cpu:.2f}", f"{s['cpu']:.2f}",
        ]  # fmt: skip

    subscriptions = (
        "each client one metal's `ticks:SYMBOL` channel, spread evenly over the four"
        if opts.subscribe == "one"
        else "every client all four `ticks:SYMBOL` channels"
    )
    lines = [
        f"### 2. Latency: tick -> websocket client at {opts.rate:,.0f} ticks/s, "
        f"{opts.clients} clients",
        "",
        f"Latency = client receive time (`time.time_ns()`) minus the tick's `recv_ms` "
        f"(integer ms, stamped at publish, so about +0.5 ms of truncation is included). "
        f"{opts.seconds:g} s measured after {opts.warmup:g} s of warm-up; clients in one "
        f"separate process (uvloop, `websockets` {version('websockets')}); subscriptions: "
        f"{subscriptions}. Clients {'offer' if opts.compression else 'do not offer'} "
        "permessage-deflate, as browsers do; `deflate` says whether the server took it. "
        "CPU columns are each process's CPU time over the wall time (1.0 = one core).",
        "",
        *table(HEAD, [cells(r) for r in lat], align="llrrrrrrrrrrr"),
        "",
    ]
    for r in lat:
        lines += [f"- {r.server}: {note}" for note in r.notes]
    emb = next((r for r in lat if r.server.startswith("embedded")), None)
    if emb is not None and "p99" in emb.summary:
        ok = emb.summary["p99"] < P99_TARGET_MS
        lines += [
            "",
            f"Target p99 < {P99_TARGET_MS:g} ms: {verdict(ok)} ({emb.summary['p99']:.2f} ms).",
        ]
    return [*lines, ""]
