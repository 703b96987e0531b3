"""Benchmark of the embedded pipeline, each result read against baselines measured in the same run.

Part 1, throughput (no websocket clients): N realistic ticks from the simulator are encoded in
the bus wire format beforehand, then published with ``send_many`` in batches onto a
``MemoryBus`` ``ticks`` topic while a real ``StreamWorker`` (real ``Windows``, real
``SqliteStore`` in a temporary directory, the embedded defaults from ``Settings``) consumes them.
The clock runs from the first publish until the worker has processed every tick and its final
store write has returned. Beside it: orjson and msgspec decode loops over the same bytes, a bare
bounded ``asyncio.Queue`` hand-off of as many items, and the cost of each stage on its own.

Part 2, latency: the real embedded service (``run_embedded``, port 0, simulator off), fed by a
paced ``ingest.collector.Publisher`` that stamps ``recv_ms`` at publish, with websocket clients
(the ``websockets`` library) in a separate process. Latency is the client's receive time minus
the tick's ``recv_ms``. Beside it: a bare ``websockets`` server that ``broadcast``s the same
messages at the same rate to as many clients, measured the same way.

Everything runs on uvloop, as the command line runs the service. Progress goes to stderr; the
results (a markdown table) go to stdout. Run ``python bench/pipeline.py --help``.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import contextlib
import cProfile
import gc
import io
import logging
import multiprocessing
import pstats
import shlex
import sqlite3
import statistics
import tempfile
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from multiprocessing.connection import Connection

import msgspec
import orjson
import uvloop

from bench.harness import (
    NullProducer,
    Sink,
    TickSource,
    Timer,
    Timing,
    answer,
    bare_broadcast,
    embedded,
    machine,
    make_ticks,
    pace,
    percentile,
    run_child,
    say,
    warm_up,
)
from pricestream.settings import Settings
from stream.bus.memory import MemoryBus
from stream.consumer import StreamWorker
from stream.contract import (
    TICKS,
    Record,
    Tick,
    decode_tick,
    encode_tick,
    encode_update_raw,
)
from stream.store.sqlite import SqliteStore
from stream.windows import Outcome, Windows

THROUGHPUT_TARGET = 250_000  # ticks/s
P99_TARGET_MS = 20.0

Items = list[tuple[bytes | None, bytes]]


# ----------------------------------------------------------------------------- options, output


@dataclass(frozen=True, slots=True)
class Options:
    ticks: int
    batch: int
    repeat: int
    sim_rate_hz: float
    max_batch: int
    flush_interval_ms: int
    bus_capacity: int
    clients: int
    rate: float
    seconds: float
    warmup: float
    subscribe: str
    compression: bool
    throughput: bool
    latency: bool
    profile: Path | None


def build_parser() -> argparse.ArgumentParser:
    defaults = Settings().stream
    parser = argparse.ArgumentParser(
        prog="bench/pipeline.py",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog=(
            "examples:\n"
            "  .venv/bin/python bench/pipeline.py            # full run, about 2-3 minutes\n"
            "  .venv/bin/python bench/pipeline.py --quick    # smoke run, a few seconds\n"
            "  .venv/bin/python bench/pipeline.py --no-latency --profile /tmp/pipe.prof\n"
            "The results table (markdown) goes to stdout, progress to stderr."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    part1 = parser.add_argument_group("part 1: throughput")
    part1.add_argument("--ticks", type=int, default=1_000_000, help="ticks (default 1000000)")
    part1.add_argument(
        "--batch", type=int, default=1_000, help="ticks per producer send_many (default 1000)"
    )
    part1.add_argument(
        "--repeat", type=int, default=3, help="rounds of part 1; medians reported (default 3)"
    )
    part1.add_argument(
        "--sim-rate-hz",
        type=float,
        default=4.0,
        help="simulated ticks/s per vendor and metal, i.e. tick density in event time "
        "(default 4.0, the service default: 48 ticks/s over 4 metals and 3 vendors)",
    )
    part1.add_argument(
        "--max-batch", type=int, default=defaults.max_batch,
        help=f"worker poll size (default {defaults.max_batch}, the service default)",
    )  # fmt: skip
    part1.add_argument(
        "--flush-interval-ms", type=int, default=defaults.flush_interval_ms,
        help=f"worker store flush interval (default {defaults.flush_interval_ms})",
    )  # fmt: skip
    part1.add_argument(
        "--bus-capacity", type=int, default=defaults.bus_capacity,
        help=f"MemoryBus queue bound, also the asyncio.Queue bound (default "
        f"{defaults.bus_capacity})",
    )  # fmt: skip
    part1.add_argument("--profile", type=Path, help="cProfile the first pipeline run to FILE")
    part2 = parser.add_argument_group("part 2: latency")
    part2.add_argument("--clients", type=int, default=100, help="websocket clients (default 100)")
    part2.add_argument("--rate", type=float, default=1_000.0, help="ticks/s (default 1000)")
    part2.add_argument(
        "--seconds", type=float, default=15.0, help="measured seconds per server (default 15)"
    )
    part2.add_argument(
        "--warmup", type=float, default=2.0, help="unmeasured seconds first (default 2)"
    )
    part2.add_argument(
        "--subscribe",
        choices=("one", "all"),
        default="one",
        help="'one': each client subscribes to one metal's ticks:SYMBOL channel, clients spread "
        "evenly over the four; 'all': every client subscribes to all four (default one)",
    )
    part2.add_argument(
        "--no-compression",
        action="store_true",
        help="clients do not offer permessage-deflate (by default they do, as browsers do)",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--no-throughput", action="store_true", help="skip part 1")
    parser.add_argument("--no-latency", action="store_true", help="skip part 2")
    return parser


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quick:
        explicit = set(argv if argv is not None else sys.argv[1:])
        quick = {"--ticks": 20_000, "--repeat": 1, "--clients": 8, "--seconds": 1.5}
        quick["--warmup"] = 0.5
        for flag, value in quick.items():
            if flag not in explicit:
                setattr(args, flag[2:].replace("-", "_"), value)
    for name in ("ticks", "batch", "repeat", "max_batch", "clients", "bus_capacity"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.rate <= 0 or args.seconds <= 0 or args.warmup < 0 or args.sim_rate_hz <= 0:
        parser.error("--rate, --seconds and --sim-rate-hz must be > 0, --warmup >= 0")
    return Options(
        ticks=args.ticks,
        batch=args.batch,
        repeat=args.repeat,
        sim_rate_hz=args.sim_rate_hz,
        max_batch=args.max_batch,
        flush_interval_ms=args.flush_interval_ms,
        bus_capacity=args.bus_capacity,
        clients=args.clients,
        rate=args.rate,
        seconds=args.seconds,
        warmup=args.warmup,
        subscribe=args.subscribe,
        compression=not args.no_compression,
        throughput=not args.no_throughput,
        latency=not args.no_latency,
        profile=args.profile,
    )


# ----------------------------------------------------------------------------- part 1: throughput


@dataclass(slots=True)
class Measure:
    """Repeated timings of one measurement of ``items`` items."""

    name: str
    items: int
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    note: str = ""

    def add(self, timing: Timing) -> None:
        self.wall.append(timing[0])
        self.cpu.append(timing[1])

    @property
    def median_s(self) -> float:
        return statistics.median(self.wall)

    @property
    def rate(self) -> float:
        """Items per wall-clock second (median)."""
        return self.items / self.median_s

    @property
    def cpu_rate(self) -> float:
        """Items per CPU second (median)."""
        return self.items / max(statistics.median(self.cpu), 1e-9)

    def rate_range(self) -> str:
        lo, hi = self.items / max(self.wall), self.items / min(self.wall)
        return f"{lo:,.0f}-{hi:,.0f}" if len(self.wall) > 1 else "-"


def time_orjson(raws: list[bytes]) -> Timing:
    loads = orjson.loads
    timer = Timer()
    for raw in raws:
        loads(raw)
    return timer.stop()


def time_msgspec_struct(raws: list[bytes]) -> Timing:
    decoder = msgspec.json.Decoder(Tick)
    decode = decoder.decode
    timer = Timer()
    for raw in raws:
        decode(raw)
    return timer.stop()


def time_decode_tick(raws: list[bytes]) -> Timing:
    timer = Timer()
    for raw in raws:
        decode_tick(raw)
    return timer.stop()


async def time_queue_handoff(raws: list[bytes], *, bound: int) -> Timing:
    """A producer task ``put``s every item on a bounded queue, a consumer task ``get``s them."""
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=bound)
    n = len(raws)

    async def produce() -> None:
        put = queue.put
        for raw in raws:
            await put(raw)

    async def consume() -> None:
        get = queue.get
        for _ in range(n):
            await get()

    timer = Timer()
    await asyncio.gather(produce(), consume())
    return timer.stop()


async def time_bus_handoff(batches: list[Items], *, opts: Options) -> Timing:
    """The bus alone: ``send_many`` batches in, ``poll`` batches out, nothing done with them."""
    bus = MemoryBus(capacity=opts.bus_capacity)
    consumer = await bus.consumer(TICKS, group="bench")
    producer = await bus.producer()
    n = sum(len(batch) for batch in batches)

    async def consume() -> None:
        got = 0
        while got < n:
            got += len(await consumer.poll(max_records=opts.max_batch, timeout_ms=100))

    timer = Timer()
    task = asyncio.create_task(consume())
    for batch in batches:
        await producer.send_many(TICKS, batch)
    await task
    elapsed = timer.stop()
    await bus.close()
    return elapsed


def time_stages(raws: list[bytes], *, settings: Settings, max_batch: int) -> dict[str, Timing]:
    """The worker's pure steps on their own, batch by batch as it runs them."""
    windows = Windows(boundary=settings.boundary, grace_ms=settings.stream.grace_ms)
    seqs: dict[str, dict[str, int]] = {}
    wall = dict.fromkeys(("decode", "receive", "take", "updates"), 0.0)
    cpu = dict(wall)
    clock, cpu_clock = time.perf_counter, time.thread_time
    for i in range(0, len(raws), max_batch):
        t0, c0 = clock(), cpu_clock()
        batch = raws[i : i + max_batch]
        ticks = [decode_tick(raw) for raw in batch]
        t1, c1 = clock(), cpu_clock()
        accepted: dict[str, list[bytes]] = {}
        for tick, raw in zip(ticks, batch, strict=True):
            if windows.receive(tick, None) is Outcome.ACCEPTED:
                accepted.setdefault(tick.symbol, []).append(raw)
        t2, c2 = clock(), cpu_clock()
        changes = windows.take()
        t3, c3 = clock(), cpu_clock()
        for symbol, change in changes.items():
            seq = seqs.setdefault(symbol, {})
            tick_pairs = []
            for raw in accepted.get(symbol, ()):
                seq["ticks"] = n = seq.get("ticks", 0) + 1
                tick_pairs.append((n, raw))
            candle_pairs = []
            for candle in change.candles:
                seq[candle.res] = n = seq.get(candle.res, 0) + 1
                candle_pairs.append((n, candle))
            encode_update_raw(symbol, tick_pairs, candle_pairs)
        t4, c4 = clock(), cpu_clock()
        for key, (w, c) in {
            "decode": (t1 - t0, c1 - c0),
            "receive": (t2 - t1, c2 - c1),
            "take": (t3 - t2, c3 - c2),
            "updates": (t4 - t3, c4 - c3),
        }.items():
            wall[key] += w
            cpu[key] += c
    return {key: (wall[key], cpu[key]) for key in wall}


class _NullConsumer:
    durable = False

    async def poll(self, *, max_records: int, timeout_ms: int) -> list[Record]:
        return []

    async def commit(self, positions: object = None) -> None:
        return None

    def seek(self, positions: object) -> None:
        return None

    def lag(self) -> int | None:
        return None

    def end(self, partition: int) -> int | None:
        return None

    async def close(self) -> None:
        return None


async def time_process(items: Items, *, settings: Settings, opts: Options, tmp: Path) -> Timing:
    """``StreamWorker.process`` on every batch, no bus and no store flush."""
    store = await SqliteStore.open(tmp / "process.db")
    worker = StreamWorker(
        consumer=_NullConsumer(),
        producer=NullProducer(),
        store=store,
        windows=Windows(boundary=settings.boundary, grace_ms=settings.stream.grace_ms),
        max_batch=opts.max_batch,
    )
    first = [Record(TICKS, 0, j, k, v) for j, (k, v) in enumerate(items[:64])]
    await worker.process(first)  # restores (looks up) the symbols: not the steady state
    wall = cpu = 0.0
    for i in range(0, len(items), opts.max_batch):
        # Records made outside the clock, one batch at a time, as the bus hands them out: a
        # million live records at once would make the garbage collector the cost measured.
        batch = [
            Record(TICKS, 0, i + j, k, v) for j, (k, v) in enumerate(items[i : i + opts.max_batch])
        ]
        timer = Timer()
        await worker.process(batch)
        w, c = timer.stop()
        wall, cpu = wall + w, cpu + c
    await store.close()
    return wall, cpu


@dataclass(slots=True)
class PipelineRun:
    seconds: float
    cpu_seconds: float
    main_thread_cpu_seconds: float
    ticks_in: int
    accepted: int
    rejected: dict[str, int]
    batches: int
    store_writes: int
    store_write_ms: float
    updates_out: int
    candles_stored: int
    symbols_stored: int
    latest_ok: bool


async def run_pipeline(
    batches: list[Items],
    last_ts: dict[str, int],
    *,
    settings: Settings,
    opts: Options,
    db: Path,
    profile: cProfile.Profile | None = None,
) -> PipelineRun:
    """Publish every item onto the bus while a real worker consumes it; time until flushed."""
    bus = MemoryBus(capacity=opts.bus_capacity)
    store = await SqliteStore.open(db, retention_ms=settings.retention_ms)
    worker = StreamWorker(
        consumer=await bus.consumer(TICKS, group="stream"),
        producer=await bus.producer(),
        store=store,
        windows=Windows(boundary=settings.boundary, grace_ms=settings.stream.grace_ms),
        max_batch=opts.max_batch,
        flush_interval_ms=opts.flush_interval_ms,
    )
    producer = await bus.producer()
    n = sum(len(batch) for batch in batches)

    async def progress() -> None:
        while True:
            await asyncio.sleep(1.0)
            say(f"  pipeline: {worker.stats.ticks_in:,} of {n:,} ticks processed")

    reporter = asyncio.create_task(progress())
    if profile is not None:
        profile.enable()
    timer = Timer()
    thread0 = time.thread_time()
    task = asyncio.create_task(worker.run(), name="stream")
    for batch in batches:
        await producer.send_many(TICKS, batch)
    worker.stop()  # the worker drains what the bus holds, flushes the store, then returns
    await task
    elapsed, cpu = timer.stop()
    main_cpu = time.thread_time() - thread0
    if profile is not None:
        profile.disable()
    reporter.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reporter
    states = await store.states()
    await store.close()
    await bus.close()
    with contextlib.closing(sqlite3.connect(db)) as conn:
        (candles,) = conn.execute("SELECT count(*) FROM candles").fetchone()
    latest_ok = len(states) == len(last_ts) and all(
        s.latest is not None and s.latest.ts_ms == last_ts[s.symbol] for s in states
    )
    stats = worker.stats
    return PipelineRun(
        seconds=elapsed,
        cpu_seconds=cpu,
        main_thread_cpu_seconds=main_cpu,
        ticks_in=stats.ticks_in,
        accepted=stats.ticks_accepted,
        rejected=dict(stats.rejected),
        batches=stats.batches,
        store_writes=stats.store_writes,
        store_write_ms=stats.store_write_ms_total,
        updates_out=stats.updates_out,
        candles_stored=int(candles),
        symbols_stored=len(states),
        latest_ok=latest_ok,
    )


@dataclass(slots=True)
class ThroughputResult:
    ticks: int
    measures: list[Measure]
    pipeline: Measure
    runs: list[PipelineRun]
    stage_share: dict[str, float]
    profile_top: str


async def part_throughput(opts: Options, settings: Settings, tmp: Path) -> ThroughputResult:
    say(f"part 1: simulating {opts.ticks:,} ticks ({opts.sim_rate_hz:g} Hz per vendor and metal)")
    ticks = make_ticks(opts.ticks, rate_hz=opts.sim_rate_hz)
    items: Items = [(t.symbol.encode(), encode_tick(t)) for t in ticks]
    raws = [raw for _, raw in items]
    last_ts: dict[str, int] = {}
    for t in ticks:
        last_ts[t.symbol] = max(last_ts.get(t.symbol, t.ts_ms), t.ts_ms)
    sizes = sorted(len(r) for r in raws)
    span_h = (ticks[-1].ts_ms - ticks[0].ts_ms) / 3_600_000
    say(
        f"  {len(raws):,} ticks, {span_h:.1f} h of event time, "
        f"median {sizes[len(sizes) // 2]} bytes on the wire"
    )
    del ticks
    n = len(raws)
    m = {
        "orjson": Measure("baseline: `orjson.loads` loop", n, note="dict only, no validation"),
        "struct": Measure(
            "baseline: msgspec `Decoder(Tick).decode` loop", n, note="typed struct, no check"
        ),
        "decode": Measure(
            "baseline: `stream.contract.decode_tick` loop",
            n,
            note="msgspec + symbol regex + finite prices",
        ),
        "queue": Measure(
            f"baseline: bare `asyncio.Queue(maxsize={opts.bus_capacity:,})` put/get",
            n,
            note="producer task put, consumer task get, one item at a time",
        ),
        "bus": Measure(
            "stage: MemoryBus hand-off only",
            n,
            note=f"send_many({opts.batch}) / poll({opts.max_batch}), nothing done",
        ),
        "s_decode": Measure("stage: decode (`decode_tick`)", n),
        "s_receive": Measure("stage: `Windows.receive`", n, note="7 resolutions"),
        "s_take": Measure("stage: `Windows.take`", n, note=f"once per {opts.max_batch} ticks"),
        "s_updates": Measure(
            "stage: number + `encode_update_raw`", n, note="as `StreamWorker.process` does it today"
        ),
        "process": Measure(
            "stage: `StreamWorker.process` (all of the above)",
            n,
            note="no bus, no store flush",
        ),
    }
    pipeline = Measure("PIPELINE: bus -> StreamWorker -> SqliteStore", n)
    runs: list[PipelineRun] = []
    profile_top = ""
    batches = [items[i : i + opts.batch] for i in range(0, n, opts.batch)]
    # The input (two million bytes and tuples) is the benchmark's, not the service's: freeze it
    # out of the garbage collector, or every full collection would walk it (60-90 ms each).
    gc.collect()
    gc.freeze()
    for r in range(opts.repeat):
        say(f"round {r + 1} of {opts.repeat}: baselines")
        m["orjson"].add(time_orjson(raws))
        m["struct"].add(time_msgspec_struct(raws))
        m["decode"].add(time_decode_tick(raws))
        m["queue"].add(await time_queue_handoff(raws, bound=opts.bus_capacity))
        gc.collect()
        say(f"round {r + 1}: stages")
        m["bus"].add(await time_bus_handoff(batches, opts=opts))
        for key, timing in time_stages(raws, settings=settings, max_batch=opts.max_batch).items():
            m[f"s_{key}"].add(timing)
        gc.collect()
        m["process"].add(await time_process(items, settings=settings, opts=opts, tmp=tmp))
        gc.collect()
        say(f"round {r + 1}: pipeline, {n:,} ticks")
        prof = cProfile.Profile() if opts.profile is not None and r == 0 else None
        run = await run_pipeline(
            batches,
            last_ts,
            settings=settings,
            opts=opts,
            db=tmp / f"pipeline-{r}.db",
            profile=prof,
        )
        runs.append(run)
        pipeline.add((run.seconds, run.cpu_seconds))
        say(
            f"  {n / run.seconds:,.0f} ticks/s ({run.seconds:.2f} s wall, {run.cpu_seconds:.2f} s "
            f"CPU, {n / run.cpu_seconds:,.0f} ticks per CPU-second); {run.store_writes} store "
            f"writes, {run.store_write_ms:.0f} ms in them; {run.candles_stored:,} candles stored"
        )
        if prof is not None and opts.profile is not None:
            prof.dump_stats(opts.profile)
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(25)
            profile_top = out.getvalue()
            say(f"  profile written to {opts.profile}")
        gc.collect()
    gc.unfreeze()
    total = statistics.median(m["process"].cpu)
    share = {
        k: statistics.median(m[f"s_{k}"].cpu) / total
        for k in ("decode", "receive", "take", "updates")
    }
    return ThroughputResult(n, list(m.values()), pipeline, runs, share, profile_top)


# ----------------------------------------------------------------------------- part 2: latency


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
    server: str, url: str, *, opts: Options, source: TickSource, sink: Sink
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
        cpu0, wall0 = time.process_time(), time.perf_counter()
        seconds = opts.warmup + opts.seconds
        published = await pace(rate=opts.rate, seconds=seconds, source=source, sink=sink)
        await asyncio.sleep(0.5)  # let the last ticks arrive
        server_cpu = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
        await lag.stop()
        # The measured window: recv_ms from the first tick after the warm-up on, both sides.
        start_ms = published[int(opts.warmup * opts.rate)].recv_ms
        end_ms = published[-1].recv_ms + 1
        measured = [t for t in published if start_ms <= t.recv_ms < end_ms]
        expected = sum(per_symbol.get(t.symbol, 0) for t in measured)
        parent.send(("stop", start_ms, end_ms, time.perf_counter() - wall0))
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
        len(measured),
        expected,
        summary,
        lag.p99(),
        server_cpu,
    )


async def latency_embedded(opts: Options, tmp: Path) -> LatencyResult:
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


async def latency_bare(opts: Options, *, deflate: bool) -> LatencyResult:
    say(f"part 2b: bare websockets server, websockets.broadcast, deflate {deflate}")
    async with bare_broadcast(compression="deflate" if deflate else None) as (port, sink):
        return await measure_latency(
            "bare websockets.broadcast", f"ws://127.0.0.1:{port}/", opts=opts,
            source=TickSource(), sink=sink,
        )  # fmt: skip


# ----------------------------------------------------------------------------- report


def _fmt_ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def report(
    opts: Options,
    info: list[tuple[str, str]],
    command: str,
    tp: ThroughputResult | None,
    lat: list[LatencyResult],
) -> str:
    lines = ["## Pricestream embedded pipeline benchmark", ""]
    lines += [f"- command: `{command}`"]
    lines += [f"- {k}: {v}" for k, v in info]
    lines += [f"- finished: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}", ""]
    if tp is not None:
        pipe = tp.pipeline
        lines += [
            f"### 1. Throughput: {tp.ticks:,} ticks, decode -> windows -> store, no clients",
            "",
            f"Medians of {len(pipe.wall)} round(s); every row measured in this run, on the same "
            "bytes, on one event loop (uvloop). Wall rates are what the target is about; CPU "
            "rates (CPU time of this process, all threads) are what a busy shared machine "
            "disturbs least. `x pipeline` is the row's CPU time per tick over the pipeline's.",
            "",
            "| measurement | ticks/s (wall) | wall range | ticks per CPU-s | CPU µs/tick | "
            "x pipeline | note |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        per_tick = 1e6 / pipe.cpu_rate
        for row in [*tp.measures, pipe]:
            us = 1e6 / row.cpu_rate
            name = f"**{row.name}**" if row is pipe else row.name
            rate = f"**{row.rate:,.0f}**" if row is pipe else f"{row.rate:,.0f}"
            lines.append(
                f"| {name} | {rate} | {row.rate_range()} | {row.cpu_rate:,.0f} | {us:.2f} | "
                f"{us / per_tick:.2f} | {row.note} |"
            )
        ok = pipe.rate >= THROUGHPUT_TARGET
        lines += [
            "",
            f"Target >= {THROUGHPUT_TARGET:,} ticks/s: **{'met' if ok else 'NOT met'}** "
            f"({pipe.rate:,.0f} ticks/s wall, {pipe.cpu_rate:,.0f} per CPU-second).",
            "",
        ]
        run = tp.runs[-1]
        share = ", ".join(f"{k} {v:.0%}" for k, v in tp.stage_share.items())
        writes = [r.store_write_ms / max(r.store_writes, 1) for r in tp.runs]
        store_share = [r.store_write_ms / 1000 / r.seconds for r in tp.runs]
        main_share = [r.main_thread_cpu_seconds / r.cpu_seconds for r in tp.runs]
        busy = [r.cpu_seconds / r.seconds for r in tp.runs]
        lines += [
            "- Pipeline runs: "
            + ", ".join(f"{r.seconds:.2f} s wall / {r.cpu_seconds:.2f} s CPU" for r in tp.runs)
            + f"; {run.batches:,} worker batches, mean "
            f"{run.ticks_in / max(run.batches, 1):,.0f} ticks per batch; the process was on CPU "
            f"{statistics.median(busy):.0%} of the wall time, {statistics.median(main_share):.0%} "
            "of that in the event-loop thread.",
            f"- Store: {run.store_writes} writes per run, {statistics.median(writes):.1f} ms mean "
            f"each; the worker waited on the store for {statistics.median(store_share):.0%} of "
            f"the pipeline's wall time.",
            f"- Checks: {run.ticks_in:,} ticks in, {run.accepted:,} accepted, rejected "
            f"{run.rejected or 'none'}; {run.candles_stored:,} candles and "
            f"{run.symbols_stored} symbol states stored; latest tick per symbol in the store "
            f"{'matches' if run.latest_ok else 'DOES NOT match'} the last published.",
            f"- Share of `process` time by stage: {share}.",
            "",
        ]
    if lat:
        lines += [
            f"### 2. Latency: tick -> websocket client at {opts.rate:,.0f} ticks/s, "
            f"{opts.clients} clients",
            "",
            f"Latency = client receive time (`time.time_ns()`) minus the tick's `recv_ms` "
            f"(integer ms, stamped at publish, so about +0.5 ms of truncation is included). "
            f"{opts.seconds:g} s measured after {opts.warmup:g} s of warm-up; clients in one "
            f"separate process (uvloop, `websockets` {version('websockets')}); subscriptions: "
            + (
                "each client one metal's `ticks:SYMBOL` channel, spread evenly over the four"
                if opts.subscribe == "one"
                else "every client all four `ticks:SYMBOL` channels"
            )
            + ". Clients "
            + ("offer" if opts.compression else "do not offer")
            + " permessage-deflate, as browsers do; `deflate` says whether the server took it. "
            "CPU columns are each process's CPU time over the wall time (1.0 = one core).",
            "",
            "| server | deflate | received / expected | gaps | p50 ms | p90 ms | p99 ms | "
            "p99.9 ms | max ms | >= 20 ms | server loop lag p99 ms | server CPU | client CPU |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in lat:
            s = r.summary
            deflate = "yes" if "deflate" in r.extensions else "no"
            lines.append(
                f"| {r.server} | {deflate} | {int(s['count']):,} / {r.expected:,} | "
                f"{int(s['gaps'])} | "
                f"{_fmt_ms(s.get('p50'))} | {_fmt_ms(s.get('p90'))} | "
                f"**{_fmt_ms(s.get('p99'))}** | {_fmt_ms(s.get('p999'))} | "
                f"{_fmt_ms(s.get('max'))} | {s.get('over20', 0.0):.2%} | "
                f"{r.loop_lag_p99_ms:.2f} | {r.server_cpu:.2f} | {s['cpu']:.2f} |"
            )
        lines.append("")
        for r in lat:
            lines += [f"- {r.server}: {note}" for note in r.notes]
        emb = next((r for r in lat if r.server.startswith("embedded")), None)
        if emb is not None and "p99" in emb.summary:
            ok = emb.summary["p99"] < P99_TARGET_MS
            lines += [
                "",
                f"Target p99 < {P99_TARGET_MS:g} ms: **{'met' if ok else 'NOT met'}** "
                f"({emb.summary['p99']:.2f} ms).",
            ]
        lines.append("")
    if tp is not None and tp.profile_top:
        lines += ["### Profile of the first pipeline run (cProfile, by own time)", "", "```"]
        lines += [ln.rstrip() for ln in tp.profile_top.strip().splitlines()[:45]]
        lines += ["```", ""]
    return "\n".join(lines)


async def main_async(opts: Options, command: str) -> str:
    info = machine()
    settings = Settings()
    tp: ThroughputResult | None = None
    lat: list[LatencyResult] = []
    with tempfile.TemporaryDirectory(prefix="pricestream-bench-") as d:
        tmp = Path(d)
        if opts.throughput:
            tp = await part_throughput(opts, settings, tmp)
        gc.collect()
        if opts.latency:
            embedded_result = await latency_embedded(opts, tmp)
            # The baseline compresses exactly when the service does: the same frames on the wire.
            deflate = "deflate" in embedded_result.extensions
            lat += [await latency_bare(opts, deflate=deflate), embedded_result]
    return report(opts, info, command, tp, lat)


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_options(argv)
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    command = shlex.join([Path(sys.executable).name, "bench/pipeline.py", *sys.argv[1:]])
    print(uvloop.run(main_async(opts, command)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
