"""Benchmark of vendor ingestion: messages/s per profile and per collector, on one core.

Part 1, parsers: N messages of each profile (documented shapes, ``tests/ingest/messages.py``),
built beforehand, run through (a) the profile's pure ``parse`` and (b) a whole ``Feed.take``
(parse, symbol map, the gate's checks and duplicate/gap state, ``Tick`` built). Baseline in the
same run: bare ``orjson.loads`` over the same bytes. Best of ``--repeat`` rounds, one core.

Part 2, collectors: the real collectors (built by ``ingest.service.build`` from ``[[vendors]]``
tables, composite off) read N messages from a fake vendor in a child process, so the collector's
process has a core to itself, and publish onto an in-process bus. Wall rate and CPU rate (messages
per CPU second of this process) are reported. Baselines in the same run, same server, same bytes:
a bare ``websockets`` client loop (``recv`` only), a bare aiohttp line loop over the NDJSON body, a
bare aiohttp GET loop against the polled endpoint, and a bare ``orjson.loads`` loop over the
replay file's lines.

Everything runs on uvloop. Progress goes to stderr, results as markdown to stdout. The machine
is shared (other engineers run builds and tests on it): read each result beside its baseline.
``python bench/ingest.py --help``.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncio
import contextlib
import logging
import multiprocessing
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from multiprocessing.connection import Connection

import aiohttp
import orjson
import uvloop
import websockets
from aiohttp import web
from websockets.asyncio.server import ServerConnection, serve

from bench.harness import (
    NullProducer,
    Timer,
    apply_quick,
    command_line,
    header,
    machine,
    make_parser,
    say,
    table,
)
from ingest.config import CompositeConfig, parse_vendors
from ingest.service import build
from ingest.vendors import PROFILES
from ingest.vendors.generic import FieldMap, make_profile
from stream.bus.memory import MemoryBus
from tests.ingest import messages as m

T0 = 1_795_000_000_000
NO_TIME_BOUNDS = {"max_age_ms": 0, "max_future_ms": 86_400_000, "spike_bp": 0.0}
GENERIC = FieldMap(fields={"symbol": "s", "bid": "b", "ask": "a", "ts": "t", "seq": "n"})


def corpus(profile: str, n: int) -> list[bytes]:
    """``n`` price messages of ``profile``, each a new quote (no duplicates)."""
    out = []
    for i in range(n):
        px, ts = 4000.0 + (i % 997) / 100, T0 + i
        if profile == "coinbase":
            out.append(m.coinbase_ticker("BTC-USD", px, px + 0.5, ts, i + 1))
        elif profile == "binance":
            out.append(m.binance_book("BTCUSDT", px, px + 0.5, i + 1))
        elif profile == "oanda":
            out.append(m.oanda_price("XAU_USD", px, px + 0.5, ts))
        elif profile == "twelvedata":
            out.append(m.twelvedata_price("XAU/USD", px, T0 + i * 1000))
        elif profile == "gold_api":
            out.append(m.gold_api_price("XAU", px, ts))
        elif profile == "metals_api":
            out.append(m.metals_api_latest({"XAU": 1 / px}, T0 + i * 1000))
        else:
            out.append(orjson.dumps({"s": "AU", "b": px, "a": px + 0.5, "t": ts, "n": i + 1}))
    return out


SYMBOLS = {
    "coinbase": {"BTC-USD": "BTC-USD"}, "binance": {"BTCUSDT": "BTC-USDT"},
    "oanda": {"XAU_USD": "XAU-USD"}, "twelvedata": {"XAU/USD": "XAU-USD"},
    "gold_api": {"XAU": "XAU-USD"}, "metals_api": {"XAU": "XAU-USD"}, "generic": {"AU": "XAU-USD"},
}  # fmt: skip


def best_rate(fn: Callable[[], None], n: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return n / best


def part1(n: int, repeat: int) -> list[tuple[str, float, float, float]]:
    """(profile, orjson.loads/s, parse/s, Feed.take/s) per profile."""
    rows = []
    for name in (*PROFILES, "generic"):
        msgs = corpus(name, n)
        parse = make_profile(GENERIC).parse if name == "generic" else PROFILES[name].parse

        def bare(msgs: list[bytes] = msgs) -> None:
            loads = orjson.loads
            for raw in msgs:
                loads(raw)

        def parsed(msgs: list[bytes] = msgs, parse: Callable[[bytes], object] = parse) -> None:
            for raw in msgs:
                parse(raw)

        def feed_take(msgs: list[bytes] = msgs, name: str = name) -> None:
            table = {"name": name, "kind": "websocket" if name != "oanda" else "http_stream",
                     "profile": name, "url": "ws://x" if name != "oanda" else "http://x",
                     "symbols": SYMBOLS[name], **NO_TIME_BOUNDS}  # fmt: skip
            if name in ("gold_api", "metals_api"):
                table.update(kind="http_poll", url="http://x")
            if name == "generic":
                table.update(fields=dict(GENERIC.fields))
            ingest = build(parse_vendors([table]), CompositeConfig(enabled=False), NullProducer())
            take = ingest.feeds[0].take
            for raw in msgs:
                take(raw, T0)

        rows.append((name, best_rate(bare, n, repeat), best_rate(parsed, n, repeat),
                     best_rate(feed_take, n, repeat)))  # fmt: skip
        say(f"  {name}: parse {rows[-1][2]:,.0f}/s, Feed.take {rows[-1][3]:,.0f}/s")
    return rows


# --- part 2: the vendor server, in a child process -------------------------------------------


def serve_vendor(conn: Connection, n: int) -> None:
    uvloop.run(_serve(conn, n))


async def _serve(conn: Connection, n: int) -> None:
    ws_msgs = {name: corpus(name, n) for name in ("coinbase", "binance", "twelvedata")}
    oanda_body = b"\n".join(corpus("oanda", n)) + b"\n"
    gold = m.gold_api_price("XAU", 4050.0, T0)

    async def ws_handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        msgs = ws_msgs[ws.request.path.strip("/")]
        for i in range(0, len(msgs), 500):
            for raw in msgs[i : i + 500]:
                await ws.send(raw.decode())
        with contextlib.suppress(websockets.ConnectionClosed):
            await ws.wait_closed()

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):  # the client stops reading first
            for i in range(0, len(oanda_body), 1 << 16):
                await response.write(oanda_body[i : i + (1 << 16)])
            await asyncio.sleep(30)
        return response

    async def poll(request: web.Request) -> web.Response:
        return web.Response(body=gold, content_type="application/json")

    ws_server = await serve(ws_handler, "127.0.0.1", 0, compression=None, max_queue=None)
    app = web.Application()
    app.router.add_get("/stream", stream)
    app.router.add_get("/price/{metal}", poll)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    conn.send((ws_server.sockets[0].getsockname()[1], runner.addresses[0][1]))
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # until told to stop
    ws_server.close()
    await runner.cleanup()


async def timed(
    coro: Callable[[], Awaitable[object]], count: Callable[[], int], n: int
) -> tuple[float, float]:
    """Run ``coro`` until ``count() >= n``; (messages per wall second, per CPU second)."""
    timer = Timer()
    task = asyncio.ensure_future(coro())
    try:
        while count() < n:
            if task.done():
                task.result()
                raise RuntimeError("the collector stopped early")
            await asyncio.sleep(0.005)
    finally:
        wall, cpu = timer.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    return count() / wall, count() / max(cpu, 1e-9)


async def part2(ws_port: int, http_port: int, n: int, polls: int, tmp: Path) -> list[list[str]]:
    rows: list[list[str]] = []

    def row(what: str, base: tuple[float, float], got: tuple[float, float], unit: str) -> None:
        rows.append([what, f"{base[0]:,.0f} / {base[1]:,.0f}", f"{got[0]:,.0f} / {got[1]:,.0f}",
                     f"{got[0] / base[0]:.0%}", unit])  # fmt: skip
        say(f"  {what}: {got[0]:,.0f}/s (baseline {base[0]:,.0f}/s)")

    async def run_collector(table: Mapping[str, object], target: int) -> tuple[float, float]:
        ingest = build(parse_vendors([{**table, **NO_TIME_BOUNDS}]), CompositeConfig(False),
                       await MemoryBus(capacity=1 << 20).producer())  # fmt: skip
        feed = ingest.feeds[0]
        # The whole role, so the publisher drains what the collector queues (it would wait once
        # its buffer is full).
        return await timed(ingest.run, lambda: feed.stats.messages, target)

    for name in ("coinbase", "binance", "twelvedata"):
        symbols = SYMBOLS[name]
        url = f"ws://127.0.0.1:{ws_port}/{name}"
        got = [0]

        async def bare(url: str = url, got: list[int] = got) -> None:
            async with websockets.connect(url, compression=None, max_queue=None) as ws:
                while True:
                    await ws.recv(decode=False)
                    got[0] += 1

        def received(got: list[int] = got) -> int:
            return got[0]

        base = await timed(bare, received, n)
        table = {"name": name, "kind": "websocket", "profile": name, "url": url,
                 "symbols": symbols, "heartbeat_interval_ms": 3_600_000}  # fmt: skip
        row(f"websocket, {name}", base, await run_collector(table, n), "messages/s")

    url = f"http://127.0.0.1:{http_port}/stream"
    lines = [0]

    async def bare_stream() -> None:
        async with aiohttp.ClientSession() as s, s.get(url) as resp:
            async for _ in resp.content:
                lines[0] += 1

    base = await timed(bare_stream, lambda: lines[0], n)
    table = {"name": "oanda", "kind": "http_stream", "profile": "oanda", "url": url,
             "symbols": {"XAU_USD": "XAU-USD"}}  # fmt: skip
    row("http_stream (NDJSON), oanda", base, await run_collector(table, n), "lines/s")

    purl = f"http://127.0.0.1:{http_port}"
    gets = [0]

    async def bare_poll() -> None:
        async with aiohttp.ClientSession() as s:
            while True:
                async with s.get(f"{purl}/price/XAU") as resp:
                    await resp.read()
                    gets[0] += 1

    base = await timed(bare_poll, lambda: gets[0], polls)
    table = {"name": "gold", "kind": "http_poll", "profile": "gold_api", "url": purl,
             "symbols": {"XAU": "XAU-USD"}, "interval_ms": 1}  # fmt: skip
    row("http_poll, gold_api (interval 1 ms)", base, await run_collector(table, polls),
        "requests/s")  # fmt: skip

    path = tmp / "ticks.jsonl"
    path.write_bytes(
        b"\n".join(
            orjson.dumps({"symbol": "XAU-USD", "ts_ms": T0 + i, "bid": 4000.0 + i % 97 / 10,
                          "ask": 4000.5 + i % 97 / 10, "seq": i}) for i in range(n)
        ) + b"\n"
    )  # fmt: skip
    read = [0]

    async def bare_replay() -> None:
        with path.open("rb") as f:
            for line in f:
                orjson.loads(line)
                read[0] += 1
                if read[0] % 1000 == 0:
                    await asyncio.sleep(0)
        await asyncio.sleep(3600)

    base = await timed(bare_replay, lambda: read[0], n)
    table = {"name": "replay", "kind": "replay", "path": str(path), "speed": 0}
    row("replay, JSON lines, speed 0", base, await run_collector(table, n), "lines/s")
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser(
        __file__,
        __doc__,
        examples=[("", "100,000 messages, 3 rounds"), ("--quick", "a smoke run")],
        quick="10,000 messages, one round",
    )
    parser.add_argument("--messages", type=int, default=100_000, help="messages per measurement")
    parser.add_argument("--polls", type=int, default=3_000, help="requests for the polling rows")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of part 1 (best is kept)")
    args = parser.parse_args(argv)
    apply_quick(args, argv, {"--messages": 10_000, "--repeat": 1, "--polls": 500})
    n, repeat, polls = args.messages, args.repeat, args.polls
    logging.basicConfig(level=logging.ERROR)
    info = machine(libraries=("uvloop", "websockets", "aiohttp", "orjson"))
    ctx = multiprocessing.get_context("fork")  # before any event loop exists in this process
    parent, child = ctx.Pipe()
    server = ctx.Process(target=serve_vendor, args=(child, n), daemon=True)
    server.start()
    say(f"part 1: parsers, {n:,} messages per profile, best of {repeat}")
    p1 = part1(n, repeat)
    ws_port, http_port = parent.recv()
    say("part 2: collectors against a fake vendor in a child process")
    with tempfile.TemporaryDirectory() as tmp:
        p2 = uvloop.run(part2(ws_port, http_port, n, polls, Path(tmp)))
    parent.send("stop")
    server.join(10)
    lines = header("Vendor ingestion benchmark", command=command_line(__file__), facts=info)
    lines += [
        "The machine is shared and noisy: read each result beside its baseline.",
        "",
        f"### Parsers, one core ({n:,} messages each, best of {repeat})",
        "",
        *table(
            ["profile", "baseline: `orjson.loads`, msgs/s", "`parse`, msgs/s",
             "`Feed.take` (parse + map + gate + Tick), msgs/s", "take vs loads"],
            [[name, f"{base:,.0f}", f"{parse:,.0f}", f"{take:,.0f}", f"{take / base:.0%}"]
             for name, base, parse, take in p1],
            align="lrrrr",
        ),
        "",
        f"### Collectors ({n:,} messages; polling {polls:,} requests); wall / CPU rates",
        "",
        *table(
            ["collector", "baseline (bare client loop), wall / CPU", "collector, wall / CPU",
             "wall vs baseline", "unit"],
            p2,
            align="lrrrl",
        ),
    ]  # fmt: skip
    print("\n".join(lines), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
