"""Benchmark of distributed mode: ingest -> Kafka -> stream -> MongoDB -> web -> websocket.

Everything real and on this machine: an Apache Kafka broker (the tests' pinned release, KRaft,
one node) and nx-27017 for MongoDB, started by the benchmark; the stream worker and the web node
are ``pricestream stream`` and ``pricestream web`` processes started as users start them.

Part 1, throughput. The same N simulator ticks, encoded beforehand, go through:
- baseline, raw aiokafka produce: one ``AIOKafkaProducer.send`` per tick (acks=all, idempotent),
  then ``flush``;
- Pricestream's producer: ``KafkaProducer.send_many`` (one record batch per partition);
- baseline, raw consume-and-decode: a group-less ``AIOKafkaConsumer`` reading the topic from the
  start with ``getmany`` and decoding every value with ``decode_tick``;
- the pipeline: this process publishes the ticks with ``send_many`` as fast as it can while a
  ``pricestream stream`` process consumes them; the clock stops when the worker's committed
  offsets reach the end of every partition. It commits only after its MongoDB write, so at that
  moment every tick is in MongoDB.

Part 2, latency at a paced rate (default 10,000 ticks/s): ticks published with ``send_many``
every millisecond-scale slice, through ``pricestream stream`` and ``pricestream web``, to a
websocket client (a separate process) subscribed to every metal's ticks. Latency is the
client's receive time minus the publish time of the tick, matched by the number each paced
tick carries in its ``size`` field (a field the websocket API passes through).

Progress goes to stderr; results (markdown) to stdout. ``python bench/distributed.py --help``.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import contextlib
import multiprocessing
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection

import orjson
import uvloop
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench.harness import (
    answer,
    apply_quick,
    command_line,
    header,
    machine,
    make_parser,
    make_ticks,
    percentile,
    run_child,
    say,
    table,
)
from pricestream.roles import kafka_options
from pricestream.settings import Settings
from stream.bus.kafka import KafkaBus
from stream.contract import TICKS, Tick, decode_tick, encode_tick
from tests.distributed import start_role, wait_running
from tests.services import log_tail, terminate
from tests.services.kafka import FAST_GROUPS, KafkaBroker
from tests.services.mongo import MongoServer

SYMBOLS = ("XAU-USD", "XAG-USD", "XPT-USD", "XPD-USD")


@dataclass(frozen=True, slots=True)
class Options:
    ticks: int
    rate: int
    seconds: float
    partitions: int


def build_parser() -> argparse.ArgumentParser:
    p = make_parser(
        __file__,
        __doc__,
        examples=[("", "about 1.5 min"), ("--quick", "30,000 ticks, 4 s at 2,000 ticks/s")],
        quick="a short run to check it works",
    )
    p.add_argument("--ticks", type=int, default=300_000, help="ticks for part 1 (300000)")
    p.add_argument("--rate", type=int, default=10_000, help="ticks/s for part 2 (10000)")
    p.add_argument("--seconds", type=float, default=15, help="part 2 duration (15)")
    p.add_argument("--partitions", type=int, default=6, help="ticks topic partitions (6)")
    return p


# ------------------------------------------------------------------------------- the servers


class Stack:
    """Broker, MongoDB server, config; role processes started on demand."""

    def __init__(self, tmp: Path, opts: Options) -> None:
        self.tmp = tmp
        self.opts = opts
        self.broker = KafkaBroker(tmp / "kafka", extra_properties=FAST_GROUPS)
        self.mongo = MongoServer(tmp / "mongo")
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        self.round = 0

    async def start(self) -> None:
        say("starting the Kafka broker and nx-27017")
        await asyncio.gather(self.broker.start(), self.mongo.start())

    def settings(self) -> Settings:
        return Settings.load(self.config(), {})

    def config(self) -> Path:
        n = self.round
        path = self.tmp / f"bench-{n}.toml"
        path.write_text(f"""
[server]
host = "127.0.0.1"
port = 0
[bus]
kind = "kafka"
bootstrap = "{self.broker.bootstrap}"
group = "bench-{n}"
ticks_topic = "ticks-{n}"
ticks_partitions = {self.opts.partitions}
updates_topic = "updates-{n}"
deadletter_topic = "deadletter-{n}"
session_timeout_ms = 3000
[storage]
kind = "mongo"
mongo_uri = "{self.mongo.uri}"
mongo_database = "bench{n}"
[simulator]
enabled = false
""")
        return path

    async def role(self, role: str) -> str:
        """Start ``pricestream ROLE`` on this round's config; return its base URL when up."""
        log = self.tmp / f"{role}-{self.round}.log"
        proc = start_role(role, self.config(), log)
        self.procs.append(proc)
        self.logs.append(log)
        return await wait_running(proc, log, label=f"pricestream {role}")

    @contextlib.asynccontextmanager
    async def next_round(self) -> AsyncIterator[tuple[Settings, KafkaBus]]:
        """A new round (its own group and topics): its settings and a started bus; on exit, the
        bus closes and the roles of the round stop."""
        self.round += 1
        settings = self.settings()
        bus = KafkaBus(kafka_options(settings))
        await bus.start()
        try:
            yield settings, bus
        finally:
            await bus.close()
            await self.stop_roles()

    async def stop_roles(self) -> None:
        await asyncio.gather(*(terminate(p, 20) for p in self.procs))
        self.procs.clear()

    async def close(self) -> None:
        await self.stop_roles()
        await asyncio.gather(self.broker.stop(), self.mongo.stop(), return_exceptions=True)


# ------------------------------------------------------------------------ part 1: throughput


async def raw_produce(bootstrap: str, topic: str, items: list[tuple[bytes, bytes]]) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                enable_idempotence=True, linger_ms=5,
                                max_batch_size=512 * 1024)  # fmt: skip
    await producer.start()
    try:
        t0 = time.perf_counter()
        for key, value in items:
            await producer.send(topic, value, key=key)
        await producer.flush()
        return len(items) / (time.perf_counter() - t0)
    finally:
        await producer.stop()


async def ours_produce(bus: KafkaBus, items: list[tuple[bytes, bytes]]) -> float:
    producer = await bus.producer()
    t0 = time.perf_counter()
    for i in range(0, len(items), 1_000):
        await producer.send_many(TICKS, list(items[i : i + 1_000]))
    await producer.flush()
    return len(items) / (time.perf_counter() - t0)


async def raw_consume_decode(bootstrap: str, topic: str, count: int) -> float:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, fetch_max_bytes=16 * 1024 * 1024,
                                max_partition_fetch_bytes=16 * 1024 * 1024)  # fmt: skip
    await consumer.start()
    try:
        got = 0
        t0: float | None = None
        deadline = time.monotonic() + 300
        while got < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=5_000)
            if t0 is None and batches:
                t0 = time.perf_counter()
            for messages in batches.values():
                for m in messages:
                    decode_tick(m.value)
                got += len(messages)
        if t0 is None or got < count:
            raise RuntimeError(f"raw consumer read {got} of {count} records")
        return count / (time.perf_counter() - t0)
    finally:
        await consumer.stop()


async def committed_everything(bootstrap: str, group: str, topic: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await admin.start()
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or [])]
        if not parts:
            await consumer.topics()  # refresh metadata
            parts = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or [])]
        ends = await consumer.end_offsets(parts)
        done = await admin.list_consumer_group_offsets(group)
        return all(tp in done and done[tp].offset >= end for tp, end in ends.items())
    finally:
        await consumer.stop()
        await admin.close()


async def pipeline_throughput(stack: Stack, items: list[tuple[bytes, bytes]]) -> float:
    async with stack.next_round() as (settings, bus):
        await stack.role("stream")
        await asyncio.sleep(2)  # the worker has joined its group and owns every partition
        topic, group = settings.bus.ticks_topic, settings.bus.group
        say(f"pipeline: publishing {len(items):,} ticks while pricestream stream consumes")
        t0 = time.perf_counter()
        await ours_produce(bus, items)
        deadline = time.monotonic() + 600
        while not await committed_everything(stack.broker.bootstrap, group, topic):
            if time.monotonic() > deadline:
                raise RuntimeError("the stream worker did not catch up in 600 s")
            await asyncio.sleep(0.05)
        return len(items) / (time.perf_counter() - t0)


# --------------------------------------------------------------------------- part 2: latency


def client_entry(conn: Connection, url: str, seconds: float) -> None:
    run_child(conn, _client(conn, url, seconds))


async def _client(conn: Connection, url: str, seconds: float) -> None:
    from websockets.asyncio.client import connect

    got: list[tuple[int, int]] = []
    async with connect(url, compression=None, max_size=None) as ws:
        channels = [f"ticks:{s}" for s in SYMBOLS]
        await ws.send(orjson.dumps({"op": "subscribe", "channels": channels}).decode())
        conn.send(("subscribed",))
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                raw = await asyncio.wait_for(ws.recv(), max(end - time.monotonic(), 0.01))
            except TimeoutError:
                break
            now = time.time_ns()
            msg = orjson.loads(raw)
            # A paced tick carries its number in ``size`` (shown by the API); warm-up ticks none.
            size = msg["data"].get("size") if msg.get("type") == "update" else None
            if size is not None:
                got.append((int(size), now))
    conn.send(("received", got))


async def latency(stack: Stack, opts: Options) -> dict[str, float]:
    async with stack.next_round() as (_, bus):
        await stack.role("stream")
        web = await stack.role("web")
        producer = await bus.producer()
        # Every metal known to the store and the hub before clients subscribe.
        warm = make_ticks(400, rate_hz=50, start_ms=time.time_ns() // 1_000_000)
        await producer.send_many(TICKS, [(t.symbol.encode(), encode_tick(t)) for t in warm])
        await producer.flush()
        await asyncio.sleep(3)
        parent, child = multiprocessing.Pipe()
        ctx = multiprocessing.get_context("spawn")
        client = ctx.Process(target=client_entry,
                             args=(child, web.replace("http://", "ws://") + "ws",
                                   opts.seconds + 5))  # fmt: skip
        client.start()
        client_process = "the websocket client"
        await asyncio.to_thread(answer, parent, timeout_s=60, what=client_process)
        await asyncio.sleep(1)
        say(f"latency: {opts.rate:,} ticks/s for {opts.seconds:.0f} s")
        sent: dict[int, int] = {}
        template = make_ticks(4_000, rate_hz=50, start_ms=0)
        seq = 1_000_000
        slice_s = 0.01
        per_slice = max(1, int(opts.rate * slice_s))
        t0 = time.perf_counter()
        n_slices = int(opts.seconds / slice_s)
        for k in range(n_slices):
            now_ms = time.time_ns() // 1_000_000
            batch = []
            for j in range(per_slice):
                base = template[(k * per_slice + j) % len(template)]
                seq += 1
                tick = Tick(base.symbol, base.vendor, base.bid, base.ask, base.price,
                            now_ms, now_ms, float(seq), seq)  # fmt: skip
                batch.append((tick.symbol.encode(), encode_tick(tick)))
                sent[seq] = time.time_ns()
            await producer.send_many(TICKS, batch)
            delay = t0 + (k + 1) * slice_s - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        achieved = len(sent) / (time.perf_counter() - t0)
        await producer.flush()
        _, got = await asyncio.to_thread(
            answer, parent, timeout_s=opts.seconds + 60, what=client_process
        )
        assert isinstance(got, list)
        client.join(10)
        lat = [(now - sent[s]) / 1e6 for s, now in got if s in sent]
        if not lat:
            raise RuntimeError(f"the client received none of the ticks\n{log_tail(*stack.logs)}")
        return {
            "sent": float(len(sent)),
            "received": float(len(lat)),
            "rate": achieved,
            "p50": statistics.median(lat),
            "p99": percentile(sorted(lat), 0.99),
            "max": max(lat),
        }


# ------------------------------------------------------------------------------------ report


async def main_async(opts: Options) -> str:
    info = machine()
    tmp = Path(tempfile.mkdtemp(prefix="pricestream-bench-"))
    stack = Stack(tmp, opts)
    await stack.start()
    try:
        ticks = make_ticks(opts.ticks, rate_hz=200)
        items = [(t.symbol.encode(), encode_tick(t)) for t in ticks]
        async with stack.next_round() as (_, bus):
            raw_topic = f"raw-{stack.round}"
            await stack.broker.create_topics(raw_topic, partitions=opts.partitions)
            say(f"raw aiokafka produce: {len(items):,} sends")
            raw_prod = await raw_produce(stack.broker.bootstrap, raw_topic, items)
            say(f"Pricestream send_many: {len(items):,} ticks")
            ours = await ours_produce(bus, items)
        say("raw aiokafka consume and decode")
        raw_cons = await raw_consume_decode(stack.broker.bootstrap, raw_topic, len(items))
        pipe = await pipeline_throughput(stack, items)
        lat = await latency(stack, opts)
    finally:
        await stack.close()
    rows = [
        ("raw aiokafka produce (send per tick, acks=all, idempotent)", f"{raw_prod:,.0f}"),
        ("Pricestream produce (send_many: one batch per partition)", f"{ours:,.0f}"),
        ("raw aiokafka consume + decode_tick", f"{raw_cons:,.0f}"),
        ("**pipeline: send_many -> Kafka -> pricestream stream -> MongoDB (committed)**",
         f"**{pipe:,.0f}**"),
    ]  # fmt: skip
    latency_row = [f"{lat['sent']:,.0f}", f"{lat['received']:,.0f}", f"{lat['p50']:.2f}",
                   f"{lat['p99']:.2f}", f"{lat['max']:.2f}"]  # fmt: skip
    title = "Distributed mode (Kafka + MongoDB)"
    out = header(title, command=command_line(__file__), facts=info)
    out += [f"Part 1: {opts.ticks:,} ticks, {opts.partitions} partitions.", ""]
    out += table(["path", "ticks/s"], rows, align="lr")
    share = pipe / raw_cons
    out += ["", f"Pipeline / raw consume-and-decode: **{share:.2f}** (target >= 0.33).", ""]
    out += [
        f"Part 2: {lat['rate']:,.0f} ticks/s achieved for {opts.seconds:.0f} s through "
        "pricestream stream and pricestream web to one websocket client on 4 channels.",
        "",
        *table(["sent", "received", "p50 ms", "p99 ms", "max ms"], [latency_row], align="rrrrr"),
    ]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    apply_quick(args, argv, {"--ticks": 30_000, "--rate": 2_000, "--seconds": 4})
    opts = Options(ticks=args.ticks, rate=args.rate, seconds=args.seconds,
                   partitions=args.partitions)  # fmt: skip
    print(uvloop.run(main_async(opts)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
