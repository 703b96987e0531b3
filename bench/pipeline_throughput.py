"""Part 1 of ``bench/pipeline.py``, throughput: the pipeline and each of its stages, in ticks/s.

N realistic ticks from the simulator are encoded in the bus wire format beforehand, then
published with ``send_many`` in batches onto a ``MemoryBus`` ``ticks`` topic while a real
``StreamWorker`` (real ``Windows``, real ``SqliteStore`` in a temporary directory) consumes them.
The clock runs from the first publish until the worker has processed every tick and its final
store write has returned. Beside it: orjson and msgspec decode loops over the same bytes, a bare
bounded ``asyncio.Queue`` hand-off of as many items, and the cost of each stage on its own.
Run it with ``python bench/pipeline.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import gc
import io
import pstats
import sqlite3
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import orjson

from bench.harness import NullProducer, Timer, Timing, make_ticks, say, table, verdict
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

Items = list[tuple[bytes | None, bytes]]


@dataclass(frozen=True, slots=True)
class ThroughputOptions:
    ticks: int
    batch: int  # ticks per producer send_many
    repeat: int
    sim_rate_hz: float
    max_batch: int
    flush_interval_ms: int
    bus_capacity: int
    profile: Path | None


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


def time_loop(decode: Callable[[bytes], object], raws: list[bytes]) -> Timing:
    """``decode`` on every item, called through a local name."""
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


async def time_bus_handoff(batches: list[Items], *, opts: ThroughputOptions) -> Timing:
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


async def time_process(
    items: Items, *, settings: Settings, opts: ThroughputOptions, tmp: Path
) -> Timing:
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
    opts: ThroughputOptions,
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


async def part_throughput(
    opts: ThroughputOptions, settings: Settings, tmp: Path
) -> ThroughputResult:
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
        m["orjson"].add(time_loop(orjson.loads, raws))
        m["struct"].add(time_loop(msgspec.json.Decoder(Tick).decode, raws))
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


HEAD = ("measurement", "ticks/s (wall)", "wall range", "ticks per CPU-s", "CPU µs/tick",
        "x pipeline", "note")  # fmt: skip


def report_lines(tp: ThroughputResult) -> list[str]:
    """Part 1's section of the report, as markdown lines."""
    pipe = tp.pipeline
    per_tick = 1e6 / pipe.cpu_rate

    def cells(row: Measure) -> list[object]:
        us = 1e6 / row.cpu_rate
        name = f"**{row.name}**" if row is pipe else row.name
        rate = f"**{row.rate:,.0f}**" if row is pipe else f"{row.rate:,.0f}"
        return [
            name, rate, row.rate_range(), f"{row.cpu_rate:,.0f}", f"{us:.2f}",
            f"{us / per_tick:.2f}", row.note,
        ]  # fmt: skip

    lines = [
        f"### 1. Throughput: {tp.ticks:,} ticks, decode -> windows -> store, no clients",
        "",
        f"Medians of {len(pipe.wall)} round(s); every row measured in this run, on the same "
        "bytes, on one event loop (uvloop). Wall rates are what the target is about; CPU "
        "rates (CPU time of this process, all threads) are what a busy shared machine "
        "disturbs least. `x pipeline` is the row's CPU time per tick over the pipeline's.",
        "",
        *table(HEAD, [cells(row) for row in [*tp.measures, pipe]], align="lrrrrrl"),
        "",
        f"Target >= {THROUGHPUT_TARGET:,} ticks/s: {verdict(pipe.rate >= THROUGHPUT_TARGET)} "
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
    return lines


def profile_lines(tp: ThroughputResult) -> list[str]:
    """The profile of the first pipeline run, when one was taken, as markdown lines."""
    if not tp.profile_top:
        return []
    lines = ["### Profile of the first pipeline run (cProfile, by own time)", "", "```"]
    lines += [ln.rstrip() for ln in tp.profile_top.strip().splitlines()[:45]]
    return [*lines, "```", ""]
