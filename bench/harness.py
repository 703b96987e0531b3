"""What the benchmark scripts share, so that each one holds only what it measures.

- Progress and the report's head: ``say`` (stderr, seconds since start), ``machine``,
  ``command_line``, ``header``.
- Options: ``make_parser`` (the docstring's first paragraph, examples) and ``apply_quick``.
- Ticks: ``make_ticks`` (the simulated feed), ``TickSource``, ``pace`` (a paced publisher),
  ``measured_window``, ``warm_up``.
- Servers: ``embedded`` (the embedded service with a ``Publisher`` feeding its bus),
  ``bare_broadcast`` (the ``websockets.broadcast`` baseline) and ``NullProducer``.
- Child processes: ``run_child`` and ``answer``; a child that fails answers ``("error", why)``,
  and ``answer`` raises it in the parent.
- Numbers and markdown: ``Timer``, ``percentile``, ``fmt``, ``verdict``, ``table``.

Nothing here measures anything by itself. Each script puts the repository root on ``sys.path``
before it imports ``bench.harness``, so that ``python bench/NAME.py`` works.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import shlex
import sqlite3
import sys
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Mapping,
    Sequence,
)
from importlib.metadata import version
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import orjson
import uvloop

from ingest.publisher import Publisher
from ingest.simulator import Simulator
from pricestream.embedded import Running, run_embedded
from pricestream.settings import Settings
from stream.contract import Tick, tick_public

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: the simulated feed starts here by default
LIBRARIES = ("uvloop", "websockets", "aiohttp", "msgspec", "orjson", "sqlite")

# ----------------------------------------------------------------------------- progress, report

_T0 = time.monotonic()


def say(text: str) -> None:
    """Progress, to stderr, with the seconds since the benchmark started."""
    print(f"[{time.monotonic() - _T0:7.1f}s] {text}", file=sys.stderr, flush=True)


def _version(name: str) -> str:
    return sqlite3.sqlite_version if name == "sqlite" else version(name)


def machine(
    *, libraries: Sequence[str] = LIBRARIES, load_at: str = "start"
) -> list[tuple[str, str]]:
    """What the numbers were measured on, as (what, value) pairs; call it at ``load_at``."""
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    facts = [
        ("cores (nproc)", str(len(os.sched_getaffinity(0)))),
        ("CPU model", model),
        ("python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("kernel", platform.release()),
    ]
    if libraries:
        facts.append(("libraries", ", ".join(f"{n} {_version(n)}" for n in libraries)))
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    facts.append((f"load average at {load_at} (1/5/15 min)", load))
    return facts


def command_line(script: str) -> str:
    """How this benchmark was started, as ``python bench/NAME.py ARGS``."""
    return shlex.join([Path(sys.executable).name, f"bench/{Path(script).name}", *sys.argv[1:]])


def header(
    title: str, *, command: str, facts: Sequence[tuple[str, str]], more: Sequence[str] = ()
) -> list[str]:
    """The top of a report: its title, the command, the machine, ``more`` about the run, and
    when it finished, as markdown lines."""
    return [
        f"## {title}",
        "",
        f"- command: `{command}`",
        *(f"- {k}: {v}" for k, v in facts),
        *(f"- {line}" for line in more),
        f"- finished: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        "",
    ]


# ----------------------------------------------------------------------------- options


def make_parser(
    script: str,
    doc: str | None,
    *,
    examples: Sequence[tuple[str, str]] = (),
    quick: str | None = None,
) -> argparse.ArgumentParser:
    """The parser of ``bench/NAME.py``: described by the first paragraph of its docstring, with
    ``(arguments, comment)`` examples, and a ``--quick`` flag when ``quick`` says what it does."""
    prog = f"bench/{Path(script).name}"
    width = max((len(args) for args, comment in examples if comment), default=0)
    lines = [
        f"  .venv/bin/python {(prog + ' ' + args).ljust(len(prog) + 1 + width)}"
        + (f"    # {comment}" if comment else "")
        for args, comment in examples
    ]
    epilog = "examples:\n" + "".join(f"{ln.rstrip()}\n" for ln in lines) if lines else ""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=doc.split("\n\n")[0] if doc else None,
        epilog=epilog + "The results (markdown) go to stdout, progress to stderr.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if quick is not None:
        parser.add_argument("--quick", action="store_true", help=quick)
    return parser


def apply_quick(
    args: argparse.Namespace, argv: Sequence[str] | None, values: Mapping[str, object]
) -> None:
    """With ``--quick``, each ``--flag`` in ``values`` takes its value there, unless the command
    line gave it."""
    if not args.quick:
        return
    given = {a.split("=")[0] for a in (argv if argv is not None else sys.argv[1:])}
    for flag, value in values.items():
        if flag not in given:
            setattr(args, flag[2:].replace("-", "_"), value)


# ----------------------------------------------------------------------------- ticks


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def make_ticks(n: int, *, rate_hz: float, seed: int = 1, start_ms: int = START_MS) -> list[Tick]:
    """``n`` ticks of the simulated feed, as the simulator collector would publish them."""
    sim = Simulator(rate_hz=rate_hz, seed=seed, start_ms=start_ms)
    out: list[Tick] = []
    now = start_ms
    while len(out) < n:
        now += 1_000
        out.extend(sim.advance(now))
    del out[n:]
    return out


class TickSource:
    """Simulated prices, re-stamped with the publish time (``ts_ms`` = ``recv_ms`` = now)."""

    def __init__(self, *, pool: int = 20_000) -> None:
        self._pool = make_ticks(pool, rate_hz=4.0, seed=7)
        self._i = 0

    def next(self, now_ms: int) -> Tick:
        t = self._pool[self._i % len(self._pool)]
        self._i += 1
        return Tick(t.symbol, t.vendor, t.bid, t.ask, t.price, now_ms, now_ms, None, self._i)

    def symbols(self) -> list[str]:
        return sorted({t.symbol for t in self._pool})


#: Where paced ticks go: a publisher's ``send`` or a bare server's broadcast.
Sink = Callable[[Sequence[Tick]], Awaitable[None]]


async def warm_up(source: TickSource, sink: Sink) -> None:
    """A first 64 ticks, so that every metal is known before clients subscribe."""
    stamp = now_ms()
    await sink([source.next(stamp) for _ in range(64)])
    await asyncio.sleep(0.5)


async def pace(*, rate: float, seconds: float, source: TickSource, sink: Sink) -> list[Tick]:
    """Publish ``rate`` ticks/s for ``seconds``, stamping each batch with the time of its send."""
    published: list[Tick] = []
    total = int(rate * seconds)
    t0 = time.perf_counter()
    sent = 0
    next_report = t0 + 1.0
    while sent < total:
        now = time.perf_counter()
        due = min(int((now - t0) * rate) + 1, total) - sent
        if due > 0:
            stamp = now_ms()
            ticks = [source.next(stamp) for _ in range(due)]
            await sink(ticks)
            published.extend(ticks)
            sent += due
        if now >= next_report:
            say(f"  published {sent:,} of {total:,} ticks")
            next_report += 1.0
        await asyncio.sleep(max(t0 + sent / rate - time.perf_counter(), 0.0))
    return published


def measured_window(
    published: Sequence[Tick], *, warmup_s: float, rate: float
) -> tuple[int, int, dict[str, int]]:
    """The measured part of a paced run: the ``recv_ms`` bounds (end exclusive) from the first
    tick after the warm-up to the last, and how many ticks of each symbol it holds."""
    start_ms = published[min(int(warmup_s * rate), len(published) - 1)].recv_ms
    end_ms = published[-1].recv_ms + 1
    per_symbol: dict[str, int] = {}
    for t in published:
        if start_ms <= t.recv_ms < end_ms:
            per_symbol[t.symbol] = per_symbol.get(t.symbol, 0) + 1
    return start_ms, end_ms, per_symbol


# ----------------------------------------------------------------------------- servers


@contextlib.asynccontextmanager
async def embedded(
    data_dir: Path, *, start_s: float, **sections: dict[str, object]
) -> AsyncIterator[tuple[Running, Sink]]:
    """The embedded service on 127.0.0.1 and a free port with the simulator off, ``sections``
    overriding settings, and a ``Publisher`` on its bus: yields the service and the publisher's
    ``send`` (the benchmark feeds the bus). On exit the publisher drains, the service stops."""
    settings = Settings.load(
        None,
        {},
        {
            "server": {"host": "127.0.0.1", "port": 0},
            "storage": {"data_dir": str(data_dir)},
            "simulator": {"enabled": False},
            **sections,
        },
    )
    stop = asyncio.Event()
    ready: asyncio.Future[Running] = asyncio.get_running_loop().create_future()
    service = asyncio.create_task(run_embedded(settings, stop=stop, on_ready=ready.set_result))
    waiting: list[asyncio.Future[Any]] = [service, ready]
    await asyncio.wait(waiting, timeout=start_s, return_when=asyncio.FIRST_COMPLETED)
    if not ready.done():
        stop.set()
        if service.done():
            await service  # raises what stopped it
        raise TimeoutError(f"the embedded service did not start in {start_s:g} s")
    try:
        running = ready.result()
        async with Publisher(await running.bus.producer()).running() as publisher:
            yield running, publisher.send
    finally:
        stop.set()
        await asyncio.wait_for(service, 30)


@contextlib.asynccontextmanager
async def bare_broadcast(
    *, compression: str | None, backlog: int = 100
) -> AsyncIterator[tuple[int, Sink]]:
    """The baseline: a bare ``websockets`` server on 127.0.0.1 that speaks the service's
    subscribe protocol, and a sink that encodes each tick once and ``broadcast``s it to the
    subscribers of its ``ticks:SYMBOL`` channel. Yields the port and the sink."""
    from websockets.asyncio.server import ServerConnection, broadcast, serve

    subscribers: dict[str, set[ServerConnection]] = {}
    seqs: dict[str, int] = {}

    async def handler(ws: ServerConnection) -> None:
        mine: list[str] = []
        try:
            async for raw in ws:
                for channel in orjson.loads(raw)["channels"]:
                    subscribers.setdefault(channel, set()).add(ws)
                    mine.append(channel)
                    seq = seqs.get(channel, 0)
                    snapshot = {"type": "snapshot", "channel": channel, "seq": seq, "data": None}
                    await ws.send(orjson.dumps(snapshot).decode())
        finally:
            for channel in mine:
                subscribers[channel].discard(ws)

    async def sink(ticks: Sequence[Tick]) -> None:
        for tick in ticks:
            channel = f"ticks:{tick.symbol}"
            seqs[channel] = seq = seqs.get(channel, 0) + 1
            subs = subscribers.get(channel)
            if subs:
                msg = {"type": "update", "channel": channel, "seq": seq, "data": tick_public(tick)}
                broadcast(subs, orjson.dumps(msg).decode())

    async with serve(
        handler, "127.0.0.1", 0, ping_interval=None, compression=compression, backlog=backlog
    ) as server:
        yield next(iter(server.sockets)).getsockname()[1], sink


class NullProducer:
    """A producer that sends nowhere, for measuring what comes before the bus."""

    async def send(self, topic: str, value: bytes, *, key: bytes | None = None) -> None:
        return None

    async def send_many(self, topic: str, items: Sequence[tuple[bytes | None, bytes]]) -> None:
        return None

    async def flush(self) -> None:
        return None


# ----------------------------------------------------------------------------- child processes


def run_child(conn: Connection, main: Coroutine[Any, Any, None]) -> None:
    """A child process's body: ``main`` on uvloop; should it fail, the parent is told
    ``("error", why)`` before the exception goes on."""
    try:
        uvloop.run(main)
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        raise


def answer(
    conn: Connection, *, timeout_s: float, what: str = "the child process"
) -> tuple[object, ...]:
    """The next message from a child process, waiting at most ``timeout_s``; an ``("error",
    why)`` from it is raised here."""
    if not conn.poll(timeout_s):
        raise TimeoutError(f"no answer from {what} in {timeout_s:.0f} s")
    msg = conn.recv()
    assert isinstance(msg, tuple)
    if msg[0] == "error":
        raise RuntimeError(f"{what} failed: {msg[1]}")
    return msg


# ----------------------------------------------------------------------------- numbers, tables

Timing = tuple[float, float]  # (wall seconds, CPU seconds of this process, every thread)


class Timer:
    """Wall and CPU time since it was made. CPU time is what a noisy, shared machine disturbs
    least: other processes stretch the wall time, not the CPU time of this one."""

    def __init__(self) -> None:
        self.wall0 = time.perf_counter()
        self.cpu0 = time.process_time()

    def stop(self) -> Timing:
        return time.perf_counter() - self.wall0, time.process_time() - self.cpu0

    def cpu_share(self) -> float:
        """CPU time over wall time so far (1.0 = one core)."""
        wall, cpu = self.stop()
        return cpu / wall


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ordered sequence."""
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def fmt(x: float | None, digits: int = 2) -> str:
    """``x`` with ``digits`` decimals, or ``-`` for a missing value (None or NaN)."""
    return "-" if x is None or math.isnan(x) else f"{x:.{digits}f}"


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**NOT met**"


def table(head: Sequence[str], rows: Iterable[Sequence[object]], *, align: str) -> list[str]:
    """A markdown table; ``align`` has a letter a column, ``l`` (left) or ``r`` (right)."""
    rule = "|" + "".join("---|" if a == "l" else "---:|" for a in align)
    return [_row(head), rule, *(_row(r) for r in rows)]


def _row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"
