"""Websocket fan-out at 1,000 / 5,000 / 10,000 clients, beside a bare ``websockets.broadcast``.

For each client count and each server (the bare baseline first, then the service), in this order:

1. A server process starts: either the embedded service (``run_embedded``, port 0, simulator
   off) with a paced ``ingest.collector.Publisher`` in the same process feeding its bus (ticks go
   bus -> stream worker -> updates -> hub -> clients, as in production), or a bare ``websockets``
   server whose paced publisher encodes each tick once and ``broadcast``s it to the subscribers of
   its channel. Both publishers stamp ``recv_ms`` at publish.
2. Its RSS is read from ``/proc/self/status`` (after ``gc.collect()``), the clients connect and
   subscribe, and the RSS is read again: the delta over the connections is the memory per idle
   connection.
3. The offered load steps up: each step publishes ticks at ``rate * 4 / clients`` ticks/s, so
   that ``rate`` messages/s are due to clients (each client watches one of the four metals'
   ``ticks:SYMBOL`` channels, spread evenly). A step is *sustained* when, over its measured
   window, (a) clients received at least 99% of the messages due (no seq gaps, nobody closed)
   and (b) the per-client lag stays bounded: the p99 latency of the window's last quarter is
   under 100 ms and its median at most 25 ms above the first quarter's. A growing backlog
   fails (a): messages pile up in buffers and arrive after the window's grace, or the service
   conflates them (seq gaps). The ladder stops at the first step that is not sustained.

Clients run in several processes (``--client-procs``) with a small hand-written websocket
client on raw asyncio transports (handshake, masked client frames, unmasked server frames,
pong on ping): the ``websockets`` client costs more CPU per message than the servers measured,
and one process of it saturated before any server. Latency is the client's receive time
(``time.time_ns()`` once per socket read) minus the tick's ``recv_ms``.

Progress goes to stderr; the results (markdown) go to stdout. Run
``python bench/websocket.py --help``. 127.0.0.1 only.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import base64
import contextlib
import gc
import multiprocessing
import os
import resource
import tempfile
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import cast

import orjson

from bench.harness import (
    TickSource,
    Timer,
    answer,
    apply_quick,
    bare_broadcast,
    command_line,
    embedded,
    fmt,
    header,
    machine,
    make_parser,
    measured_window,
    pace,
    percentile,
    run_child,
    say,
    table,
    verdict,
    warm_up,
)
from tests.web.raw_ws import client_frame

DELIVERED_MIN = 0.99  # share of the due messages that must arrive within the grace
LAG_BOUND_MS = 100.0  # p99 latency of the window's last quarter must stay under this
LAG_GROWTH_MS = 25.0  # ... and its median at most this much above the first quarter's
GRACE_S = 1.0  # arrivals after the window's end still counted
LATENCY_AT = 50_000  # messages/s delivered at which latency is reported
RATIO_TARGET = 0.7
P99_TARGET_MS = 50.0
MEMORY_TARGET_KB = 30.0


# ----------------------------------------------------------------------------- options


@dataclass(frozen=True, slots=True)
class Options:
    clients: tuple[int, ...]
    rates: tuple[int, ...]
    seconds: float
    warmup: float
    client_procs: int
    servers: tuple[str, ...]


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        __file__,
        __doc__,
        examples=[
            ("", "full run, about 6-8 minutes"),
            ("--quick", "smoke run, under a minute"),
            ("--clients 5000 --rates 50000,100000", ""),
        ],
        quick="a smoke run: 200 clients, 2 steps",
    )
    parser.add_argument(
        "--clients", default="1000,5000,10000", help="client counts (default 1000,5000,10000)"
    )
    parser.add_argument(
        "--rates",
        default="10000,20000,35000,50000,70000,90000,110000,130000,150000,175000,200000",
        help="offered messages/s to clients, stepped up in this order (default 10k..200k)",
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="measured s per step (3)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured s per step (1)")
    parser.add_argument("--client-procs", type=int, default=4, help="client processes (default 4)")
    parser.add_argument(
        "--servers", default="bare,embedded", help="which servers, in order (default both)"
    )
    return parser


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = build_parser()
    args = parser.parse_args(argv)
    quick = {"--clients": "200", "--rates": "10000,50000", "--seconds": 1.5, "--warmup": 0.5}
    apply_quick(args, argv, quick)
    try:
        clients = tuple(int(x) for x in str(args.clients).split(","))
        rates = tuple(int(x) for x in str(args.rates).split(","))
    except ValueError:
        parser.error("--clients and --rates are comma-separated integers")
    servers = tuple(str(args.servers).split(","))
    if any(s not in ("bare", "embedded") for s in servers):
        parser.error("--servers is a comma-separated list of 'bare' and 'embedded'")
    if min(clients) < 4 or max(clients) > 15_000 or min(rates) < 1 or len(rates) > 20:
        parser.error("--clients 4..15000 each, --rates >= 1 each and at most 20 of them")
    if args.seconds <= 0 or args.warmup < 0 or not 1 <= args.client_procs <= 16:
        parser.error("--seconds > 0, --warmup >= 0, --client-procs 1..16")
    return Options(clients, rates, args.seconds, args.warmup, args.client_procs, servers)


def raise_fd_limit() -> int:
    """As many file descriptors as the hard limit allows (10,000 sockets need more than 1,024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_kb() -> int:
    """This process's resident set size, from /proc."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def ask(conn: Connection, message: tuple[object, ...], *, timeout_s: float) -> tuple[object, ...]:
    """Send a command to a child process and wait (bounded) for its answer."""
    conn.send(message)
    return answer(conn, timeout_s=timeout_s, what=f"the child process to {message[0]!r}")


async def next_command(conn: Connection) -> tuple[object, ...]:
    def wait() -> tuple[object, ...]:
        if not conn.poll(900):
            return ("stop",)  # the parent is gone or stuck: stop rather than wait forever
        msg = conn.recv()
        assert isinstance(msg, tuple)
        return msg

    return await asyncio.get_running_loop().run_in_executor(None, wait)


# ----------------------------------------------------------------------------- server processes


def server_entry(conn: Connection, kind: str, tmp: str) -> None:
    raise_fd_limit()
    run_child(conn, _server(conn, kind, Path(tmp)))


async def _server(conn: Connection, kind: str, tmp: Path) -> None:
    async with contextlib.AsyncExitStack() as stack:
        if kind == "embedded":
            # every client comes from 127.0.0.1: a per-address limit would refuse most of them
            service = embedded(tmp / "embedded", start_s=60, http={"rate_limit_per_s": 0})
            running, sink = await stack.enter_async_context(service)
            port = running.port
        else:
            bare = bare_broadcast(compression=None, backlog=1024)
            port, sink = await stack.enter_async_context(bare)
        source = TickSource()
        await warm_up(source, sink)
        conn.send(("ready", port, source.symbols()))
        while True:
            cmd = await next_command(conn)
            if cmd[0] == "rss":
                gc.collect()
                await asyncio.sleep(0.2)
                conn.send(("rss", rss_kb()))
            elif cmd[0] == "pace":
                _, rate, seconds, warmup = cmd
                rate, seconds, warmup = float(str(rate)), float(str(seconds)), float(str(warmup))
                timer = Timer()
                published = await pace(
                    rate=rate, seconds=warmup + seconds, source=source, sink=sink
                )
                cpu = timer.cpu_share()
                start_ms, end_ms, due = measured_window(published, warmup_s=warmup, rate=rate)
                conn.send(("paced", start_ms, end_ms, due, cpu))
            else:
                conn.send(("stopped",))
                return


# ----------------------------------------------------------------------------- client processes


class Stats:
    """What one client process received: per message its tick's stamp and its latency."""

    def __init__(self) -> None:
        self.stamps = array("q")
        self.lat_ms = array("d")
        self.gaps = 0
        self.closed = 0
        self.bad = 0


class RawClient(asyncio.Protocol):
    """One websocket connection, just enough protocol to subscribe, read and answer pings."""

    def __init__(self, stats: Stats, host: str, port: int, channel: str) -> None:
        self.stats = stats
        self.request = (
            f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: "
            f"{base64.b64encode(os.urandom(16)).decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        self.channel = channel
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.upgraded = False
        self.last_seq: int | None = None
        self.subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats.closed += 1
        if not self.subscribed.done():
            self.subscribed.set_exception(ConnectionError(f"closed before subscribing: {exc}"))

    def send(self, opcode: int, payload: bytes) -> None:
        assert self.transport is not None
        self.transport.write(client_frame(opcode, payload))

    def data_received(self, data: bytes) -> None:
        now_ms = time.time_ns() / 1e6
        buf = self.buf
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                if not self.subscribed.done():
                    self.subscribed.set_exception(ConnectionError(bytes(buf[:80]).decode()))
                if self.transport is not None:
                    self.transport.close()
                return
            del buf[: end + 4]
            self.upgraded = True
            self.send(1, orjson.dumps({"op": "subscribe", "channels": [self.channel]}))
        i, size = 0, len(buf)
        while size - i >= 2:
            b0, n = buf[i], buf[i + 1] & 0x7F
            head = 2
            if n == 126:
                if size - i < 4:
                    break
                n, head = int.from_bytes(buf[i + 2 : i + 4], "big"), 4
            elif n == 127:
                if size - i < 10:
                    break
                n, head = int.from_bytes(buf[i + 2 : i + 10], "big"), 10
            if size - i < head + n:
                break
            payload = bytes(buf[i + head : i + head + n])
            i += head + n
            opcode = b0 & 0x0F
            if opcode == 1:
                self.on_text(payload, now_ms)
            elif opcode == 9:
                self.send(10, payload)
            elif opcode == 8 and self.transport is not None:
                self.transport.close()
        del buf[:i]

    def on_text(self, payload: bytes, now_ms: float) -> None:
        msg = orjson.loads(payload)
        kind = msg.get("type")
        if kind == "update":
            seq = msg["seq"]
            if self.last_seq is not None and seq != self.last_seq + 1:
                self.stats.gaps += max(seq - self.last_seq - 1, 0)
            self.last_seq = seq
            stamp = msg["data"]["recv_ms"]
            self.stats.stamps.append(stamp)
            self.stats.lat_ms.append(now_ms - stamp)
        elif kind == "snapshot":
            self.last_seq = msg["seq"]
            if not self.subscribed.done():
                self.subscribed.set_result(None)
        elif kind == "error":
            self.stats.bad += 1
            if not self.subscribed.done():
                self.subscribed.set_exception(RuntimeError(f"subscribe refused: {msg}"))


def client_entry(conn: Connection, port: int, channels: list[str]) -> None:
    raise_fd_limit()
    run_child(conn, _clients(conn, port, channels))


async def _clients(conn: Connection, port: int, channels: list[str]) -> None:
    loop = asyncio.get_running_loop()
    stats = Stats()
    clients: list[RawClient] = []

    async def open_one(channel: str) -> RawClient:
        for attempt in range(5):
            try:
                _, proto = await asyncio.wait_for(
                    loop.create_connection(
                        lambda: RawClient(stats, "127.0.0.1", port, channel), "127.0.0.1", port
                    ),
                    10,
                )
                await asyncio.wait_for(proto.subscribed, 30)
                return proto
            except (OSError, TimeoutError):
                if attempt == 4:
                    raise
                await asyncio.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    for i in range(0, len(channels), 50):
        clients += await asyncio.gather(*(open_one(c) for c in channels[i : i + 50]))
    stats.closed = 0
    conn.send(("ready", len(clients)))
    while True:
        cmd = await next_command(conn)
        if cmd[0] == "collect":
            _, start_ms, end_ms = cmd
            keep = [
                (s, lat)
                for s, lat in zip(stats.stamps, stats.lat_ms, strict=True)
                if start_ms <= s < end_ms  # type: ignore[operator]
            ]
            conn.send(
                (
                    "collected",
                    array("q", (s for s, _ in keep)).tobytes(),
                    array("d", (lat for _, lat in keep)).tobytes(),
                    stats.gaps,
                    stats.closed,
                    time.process_time(),
                )
            )
            stats.stamps, stats.lat_ms = array("q"), array("d")
            stats.gaps = 0
        else:
            for client in clients:
                if client.transport is not None:
                    client.transport.abort()
            conn.send(("stopped",))
            return


# ----------------------------------------------------------------------------- the parent


@dataclass(slots=True)
class Step:
    rate: int  # offered messages/s to clients
    due: int
    received: int
    seconds: float
    p50: float
    p99: float
    first_p50: float
    last_p50: float
    last_p99: float
    gaps: int
    closed: int
    server_cpu: float
    client_cpu: float
    sustained: bool
    why: str

    @property
    def delivered(self) -> float:
        return self.received / self.seconds


@dataclass(slots=True)
class Run:
    server: str
    clients: int
    memory_kb: float
    connect_s: float
    steps: list[Step] = field(default_factory=list)
    metrics: str = ""

    def best(self) -> Step | None:
        ok = [s for s in self.steps if s.sustained]
        return max(ok, key=lambda s: s.delivered) if ok else None

    def at_latency_rate(self) -> Step | None:
        ok = [s for s in self.steps if s.sustained and s.rate <= LATENCY_AT]
        return max(ok, key=lambda s: s.rate) if ok else None


def judge(
    due: int, stamps: list[int], lats: list[float], start_ms: int, end_ms: int, gaps: int,
    closed: int,
) -> tuple[dict[str, float], bool, str]:  # fmt: skip
    quarter = (end_ms - start_ms) / 4
    first = sorted(lat for s, lat in zip(stamps, lats, strict=True) if s < start_ms + quarter)
    last = sorted(lat for s, lat in zip(stamps, lats, strict=True) if s >= end_ms - quarter)
    every = sorted(lats)
    nan = float("nan")
    q = {
        "p50": percentile(every, 0.5) if every else nan,
        "p99": percentile(every, 0.99) if every else nan,
        "first_p50": percentile(first, 0.5) if first else nan,
        "last_p50": percentile(last, 0.5) if last else nan,
        "last_p99": percentile(last, 0.99) if last else nan,
    }
    why = []
    if len(lats) < DELIVERED_MIN * due:
        why.append(f"received {len(lats) / max(due, 1):.1%} of due")
    if gaps:
        why.append(f"{gaps} seq gaps")
    if closed:
        why.append(f"{closed} closed")
    if not last or q["last_p99"] >= LAG_BOUND_MS:
        why.append(f"last-quarter p99 {q['last_p99']:.0f} ms")
    if last and first and q["last_p50"] - q["first_p50"] > LAG_GROWTH_MS:
        why.append(f"lag grew {q['first_p50']:.0f} -> {q['last_p50']:.0f} ms")
    return q, not why, "; ".join(why) or "ok"


def scrape_metrics(port: int) -> str:
    import urllib.request

    with contextlib.suppress(OSError):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        keep = [
            ln for ln in text.splitlines()
            if ln.startswith("pricestream_websocket_") and not ln.startswith("#")
        ]  # fmt: skip
        return ", ".join(keep)
    return "(metrics not reachable)"


def measure(server: str, n: int, opts: Options, tmp: str) -> Run:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    srv = ctx.Process(target=server_entry, args=(child, server, tmp), name=f"server-{server}")
    srv.start()
    procs: list[tuple[BaseProcess, Connection]] = []
    try:
        _, port, symbols = answer(parent, timeout_s=90, what=f"the {server} server")
        assert isinstance(symbols, list)
        channels = [f"ticks:{s}" for s in symbols]
        per_channel = dict.fromkeys(channels, 0)
        subs = [channels[i % len(channels)] for i in range(n)]
        for c in subs:
            per_channel[c] += 1
        (_, rss0) = ask(parent, ("rss",), timeout_s=30)
        say(f"{server}, {n:,} clients: server on port {port}, RSS {rss0:,} kB; connecting")
        t0 = time.perf_counter()
        k = min(opts.client_procs, n)
        for j in range(k):
            a, b = ctx.Pipe()
            p = ctx.Process(target=client_entry, args=(b, port, subs[j::k]), name=f"clients-{j}")
            p.start()
            procs.append((p, a))
        connected = 0
        for _, a in procs:
            connected += int(str(answer(a, timeout_s=300, what="a client process")[1]))
        connect_s = time.perf_counter() - t0
        time.sleep(1.0)
        (_, rss1) = ask(parent, ("rss",), timeout_s=30)
        memory = (int(str(rss1)) - int(str(rss0))) / connected
        say(
            f"  {connected:,} connected in {connect_s:.1f} s; RSS {rss1:,} kB: {memory:.1f} kB each"
        )
        run = Run(server, connected, memory, connect_s)
        cpu_before = [float(str(ask(a, ("collect", 0, 0), timeout_s=60)[5])) for _, a in procs]
        for rate in opts.rates:
            ticks_per_s = rate * len(channels) / connected
            say(f"  step {rate:,} msg/s offered ({ticks_per_s:,.1f} ticks/s)")
            wall0 = time.perf_counter()
            _, start_ms, end_ms, due_by, srv_cpu = ask(
                parent, ("pace", ticks_per_s, opts.seconds, opts.warmup),
                timeout_s=opts.seconds + opts.warmup + 60,
            )  # fmt: skip
            time.sleep(GRACE_S)
            wall = time.perf_counter() - wall0
            start_ms, end_ms = int(str(start_ms)), int(str(end_ms))
            assert isinstance(due_by, dict)
            due = sum(count * per_channel[f"ticks:{s}"] for s, count in due_by.items())
            stamps: list[int] = []
            lats: list[float] = []
            gaps = closed = 0
            cpu_after = []
            for _, a in procs:
                _, sb, lb, g, shut, used = ask(a, ("collect", start_ms, end_ms), timeout_s=120)
                assert isinstance(sb, bytes)
                assert isinstance(lb, bytes)
                stamps += array("q", sb)
                lats += array("d", lb)
                gaps += int(str(g))
                closed += int(str(shut))
                cpu_after.append(float(str(used)))
            client_cpu = sum(cpu_after) - sum(cpu_before)
            cpu_before = cpu_after
            q, ok, why = judge(due, stamps, lats, start_ms, end_ms, gaps, closed)
            step = Step(
                rate, due, len(lats), (end_ms - start_ms) / 1000, q["p50"], q["p99"],
                q["first_p50"], q["last_p50"], q["last_p99"], gaps, closed,
                float(str(srv_cpu)), client_cpu / wall, ok, why,
            )  # fmt: skip
            run.steps.append(step)
            say(
                f"    delivered {step.delivered:,.0f} msg/s ({len(lats):,} of {due:,}), "
                f"p50 {q['p50']:.1f} ms p99 {q['p99']:.1f} ms, server CPU {step.server_cpu:.2f}, "
                f"clients CPU {step.client_cpu:.2f}: {'sustained' if ok else 'NOT: ' + why}"
            )
            if not ok:
                break
        if server == "embedded":
            run.metrics = scrape_metrics(int(str(port)))
        return run
    finally:
        for proc, a in procs:
            with contextlib.suppress(Exception):
                ask(a, ("stop",), timeout_s=30)
            proc.join(30)
            if proc.is_alive():
                proc.kill()
        with contextlib.suppress(Exception):
            ask(parent, ("stop",), timeout_s=60)
        srv.join(60)
        if srv.is_alive():
            srv.kill()


# ----------------------------------------------------------------------------- report


SUMMARY = ("clients", "server", "highest sustained msg/s", "x bare", "latency at", "p50 ms",
           "p99 ms", "memory per idle connection", "connect s")  # fmt: skip
STEPS = ("clients", "server", "offered msg/s", "delivered msg/s", "received / due", "p50 ms",
         "p99 ms", "last-quarter p50 / p99 ms", "server CPU", "clients CPU", "verdict")  # fmt: skip


def summary_row(r: Run, bare: Run | None) -> list[object]:
    """One server at one client count: its best sustained step and its latency at 50k/s."""
    best, lat = r.best(), r.at_latency_rate()
    bb = bare.best() if bare else None
    ratio = f"{best.delivered / bb.delivered:.2f}" if best and bb and r is not bare else "-"
    at = f"{lat.delivered:,.0f}" if lat else "-"
    if lat and lat.rate < LATENCY_AT:
        at += " (highest sustained)"
    name = "bare websockets.broadcast" if r.server == "bare" else "**embedded Pricestream**"
    failed = "" if not r.steps or r.steps[-1].sustained else " (next step failed)"
    return [
        f"{r.clients:,}", name, f"{best.delivered if best else 0:,.0f}{failed}", ratio, at,
        fmt(lat.p50, 1) if lat else "-", fmt(lat.p99, 1) if lat else "-",
        f"{r.memory_kb:.1f} KB", f"{r.connect_s:.1f}",
    ]  # fmt: skip


def step_row(r: Run, s: Step) -> list[object]:
    return [
        f"{r.clients:,}", r.server, f"{s.rate:,}", f"{s.delivered:,.0f}",
        f"{s.received:,} / {s.due:,}", fmt(s.p50, 1), fmt(s.p99, 1),
        f"{fmt(s.last_p50, 1)} / {fmt(s.last_p99, 1)}", f"{s.server_cpu:.2f}",
        f"{s.client_cpu:.2f}", "sustained" if s.sustained else s.why,
    ]  # fmt: skip


def targets(runs: list[Run]) -> list[str]:
    bare = {r.clients: r for r in runs if r.server == "bare"}
    lines = []
    for r in runs:
        if r.server != "embedded":
            continue
        best, b = r.best(), bare.get(r.clients)
        bb = b.best() if b else None
        if best and bb:
            times = best.delivered / bb.delivered
            lines.append(
                f"- {r.clients:,} clients: {times:.2f}x the bare broadcast (target >= "
                f"{RATIO_TARGET}): {verdict(times >= RATIO_TARGET)}"
            )
        lat = r.at_latency_rate()
        if lat and r.clients == 5_000:
            lines.append(
                f"- 5,000 clients: p99 {lat.p99:.1f} ms at {lat.delivered:,.0f} msg/s (target < "
                f"{P99_TARGET_MS:g} ms): {verdict(lat.p99 < P99_TARGET_MS)}"
            )
        lines.append(
            f"- {r.clients:,} clients: {r.memory_kb:.1f} KB per idle connection (target < "
            f"{MEMORY_TARGET_KB:g} KB): {verdict(r.memory_kb < MEMORY_TARGET_KB)}"
        )
    return lines


def report(opts: Options, info: list[tuple[str, str]], command: str, runs: list[Run]) -> str:
    rates = ", ".join(f"{r:,}" for r in opts.rates)
    run = (
        f"client processes: {opts.client_procs}; steps of {opts.warmup:g} s warm-up + "
        f"{opts.seconds:g} s measured; offered rates (messages/s to clients): {rates}"
    )
    lines = header("Websocket fan-out benchmark", command=command, facts=info, more=[run])
    bare = {r.clients: r for r in runs if r.server == "bare"}
    lines += [
        f"A step is sustained (no growing backlog) when clients received >= {DELIVERED_MIN:.0%} of "
        f"the messages due for ticks published in the window (arriving within {GRACE_S:g} s after "
        f"it), with no seq gaps (conflation) and no closed connection, and the lag stayed bounded: "
        f"p99 latency of the window's last quarter < {LAG_BOUND_MS:g} ms and its median at most "
        f"{LAG_GROWTH_MS:g} ms above the first quarter's. The ladder stops at the first step that "
        "is not sustained. Latency: client receive time minus the tick's publish stamp `recv_ms` "
        "(integer ms, so about +0.5 ms of truncation is in it).",
        "",
        "### Summary",
        "",
        *table(SUMMARY, [summary_row(r, bare.get(r.clients)) for r in runs], align="rlrrrrrrr"),
        "",
        "### Every step",
        "",
        *table(STEPS, [step_row(r, s) for r in runs for s in r.steps], align="rlrrrrrrrrl"),
        "",
        "CPU columns: CPU time over wall time (1.0 = one core); clients CPU is the sum over the "
        "client processes. The machine has 2 cores shared with other engineers' work.",
        "",
    ]
    for r in runs:
        if r.metrics:
            lines.append(f"- embedded, {r.clients:,} clients, /metrics at the end: {r.metrics}")
    lines += ["", "### Targets", "", *targets(runs), ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_options(argv)
    limit = raise_fd_limit()
    if limit < max(opts.clients) + 200:
        say(f"warning: the fd limit is {limit}, too low for {max(opts.clients):,} clients")
    command = command_line(__file__)
    info = machine()
    with tempfile.TemporaryDirectory(prefix="pricestream-bench-ws-") as tmp:
        runs = [
            measure(server, n, opts, f"{tmp}/{server}-{n}")
            for n in opts.clients
            for server in opts.servers
        ]
    print(report(opts, info, command, runs), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
