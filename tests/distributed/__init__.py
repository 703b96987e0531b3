"""Distributed mode as users run it: role processes on a real Kafka broker and nx-27017.

``Cluster`` writes one TOML config (its own topics, consumer group and database), starts
``pricestream <role> --config FILE`` processes, publishes a fixed list of ticks through the
Kafka bus adapter, and reads the candles back from MongoDB. ``reference`` is the clean run: the
same ticks folded through the pure windows in one go, so a test can demand that what the
processes stored after any fault is exactly that.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pricestream.roles import kafka_options
from pricestream.settings import Settings
from stream.bus.kafka import KafkaBus
from stream.contract import RESOLUTIONS, TICKS, Candle, Tick, encode_tick
from stream.store.mongo import MongoStore
from stream.windows import Windows
from tests.services import ServiceError, kill, log_tail, spawn, terminate
from tests.services.kafka import KafkaBroker
from tests.services.mongo import MongoServer

SYMBOLS = ("XAU-USD", "XAG-USD", "XPT-USD", "XPD-USD")
GRACE_MS = 2_000
REPO = Path(__file__).resolve().parents[2]


def make_ticks(count: int, *, seed: int = 42, start_ms: int | None = None) -> list[Tick]:
    """``count`` ticks round-robin over the metals, 20 ms apart, with some out of order and
    a few later than the grace period (which must be dead-lettered the same way every run)."""
    rng = random.Random(seed)
    t0 = (time.time_ns() // 1_000_000 - 3_600_000) if start_ms is None else start_ms
    prices = {"XAU-USD": 2400.0, "XAG-USD": 30.0, "XPT-USD": 950.0, "XPD-USD": 1000.0}
    out = []
    for i in range(count):
        symbol = SYMBOLS[i % len(SYMBOLS)]
        ts = t0 + i * 20
        roll = rng.random()
        if roll < 0.05:
            ts -= rng.randrange(1, 1_500)  # out of order, within the grace period
        elif roll < 0.06:
            ts -= rng.randrange(5_000, 9_000)  # late: beyond the grace period
        price = prices[symbol] = round(prices[symbol] * (1 + rng.gauss(0, 0.0004)), 4)
        spread = round(price * 0.0002, 4)
        out.append(Tick(symbol, "test", price - spread, price + spread, price, ts, ts + 3,
                        None, i))  # fmt: skip
    return out


def reference(ticks: Sequence[Tick]) -> dict[tuple[str, str], list[Candle]]:
    """The clean run: every candle as a single uninterrupted worker leaves it."""
    windows = Windows(grace_ms=GRACE_MS)
    final: dict[tuple[str, str, int], Candle] = {}
    for tick in ticks:
        windows.receive(tick)
        for change in windows.take().values():
            for c in change.candles:
                final[(c.symbol, c.res, c.start_ms)] = c
    out: dict[tuple[str, str], list[Candle]] = {}
    for key in sorted(final):
        c = final[key]
        out.setdefault((c.symbol, c.res), []).append(c)
    return out


@dataclass
class RoleProcess:
    role: str
    label: str
    log: Path
    proc: subprocess.Popen[bytes] = field(repr=False)

    def alive(self) -> bool:
        return self.proc.poll() is None

    async def kill(self) -> None:
        """SIGKILL: no flush, no commit, no goodbye."""
        await kill(self.proc)

    async def stop(self, grace: float = 20) -> None:
        await terminate(self.proc, grace)


def start_role(role: str, config: Path, log: Path, **env: str) -> subprocess.Popen[bytes]:
    """``pricestream ROLE --config CONFIG`` as users start it, its output appended to ``log``;
    ``PRICESTREAM_*`` variables of this process are not passed on, ``env`` is added."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PRICESTREAM_")}
    environ.update(env)
    argv = [sys.executable, "-m", "pricestream", role, "--config", str(config)]
    return spawn(argv, cwd=REPO, output=log, env=environ)


def _printed_url(log: Path) -> str | None:
    text = log.read_text(errors="replace") if log.exists() else ""
    for line in text.splitlines():
        if "is running" in line and "http://" in line:
            return ("http://" + line.split("http://", 1)[1].split()[0]).removesuffix("healthz")
    return None


async def wait_running(
    proc: subprocess.Popen[bytes], log: Path, *, label: str, seconds: float = 60
) -> str:
    """Wait for a role's 'is running' line; the base URL it printed (ending in /)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        url = _printed_url(log)
        if url is not None:
            return url
        if proc.poll() is not None:
            raise ServiceError(f"{label} exited while starting\n{log_tail(log, lines=40)}")
        await asyncio.sleep(0.1)
    raise ServiceError(f"{label} did not start in {seconds:.0f}s\n{log_tail(log, lines=40)}")


class Cluster:
    """Role processes and their config for one test; see the package docstring."""

    def __init__(
        self, tmp: Path, broker: KafkaBroker, mongo: MongoServer, *, extra_toml: str = ""
    ) -> None:
        self.tmp = tmp
        self.broker = broker
        self.mongo = mongo
        self.extra_toml = extra_toml
        self.name = uuid.uuid4().hex[:8]
        self.processes: list[RoleProcess] = []
        self.config = tmp / "pricestream.toml"
        self.config.write_text(self.toml())
        self.settings = Settings.load(self.config, {})
        self._bus: KafkaBus | None = None
        self._store: MongoStore | None = None

    def toml(self) -> str:
        n = self.name
        return (
            f"""
[server]
host = "127.0.0.1"
port = 0

[bus]
kind = "kafka"
bootstrap = "{self.broker.bootstrap}"
client_id = "test-{n}"
group = "stream-{n}"
ticks_topic = "ticks-{n}"
ticks_partitions = 4
updates_topic = "updates-{n}"
deadletter_topic = "deadletter-{n}"
session_timeout_ms = 2000

[storage]
kind = "mongo"
mongo_uri = "{self.mongo.uri}"
mongo_database = "ps{n}"
timeout_ms = 10000

[stream]
grace_ms = {GRACE_MS}
flush_interval_ms = 100

[simulator]
enabled = false
"""
            + self.extra_toml
        )

    def start(self, role: str, label: str | None = None, **env: str) -> RoleProcess:
        label = label or f"{role}-{len(self.processes)}"
        log = self.tmp / f"{label}.log"
        started = RoleProcess(role, label, log, start_role(role, self.config, log, **env))
        self.processes.append(started)
        return started

    async def wait_running(self, process: RoleProcess, *, seconds: float = 60) -> str:
        """Wait for the 'is running' line; returns the base URL it printed (ending in /)."""
        return await wait_running(process.proc, process.log, label=process.label, seconds=seconds)

    def logs(self, *processes: RoleProcess) -> str:
        return log_tail(*(p.log for p in processes or self.processes), lines=40)

    async def bus(self) -> KafkaBus:
        if self._bus is None:
            self._bus = KafkaBus(kafka_options(self.settings))
            await self._bus.start(timeout_s=60)
        return self._bus

    async def store(self) -> MongoStore:
        if self._store is None:
            self._store = await MongoStore.open(
                self.mongo.uri, database=self.settings.storage.mongo_database, timeout_ms=2_000
            )
        return self._store

    async def publish(
        self, ticks: Sequence[Tick], *, chunk: int = 200, pause_s: float = 0.05
    ) -> None:
        """Publish ``ticks`` in order, ``chunk`` at a time with a pause between (paced)."""
        producer = await (await self.bus()).producer()
        for i in range(0, len(ticks), chunk):
            part = ticks[i : i + chunk]
            await producer.send_many(TICKS, [(t.symbol.encode(), encode_tick(t)) for t in part])
            await asyncio.sleep(pause_s)
        await producer.flush()

    async def stored(self) -> dict[tuple[str, str], list[Candle]]:
        store = await self.store()
        out: dict[tuple[str, str], list[Candle]] = {}
        for symbol in SYMBOLS:
            for res in RESOLUTIONS:
                got = await store.candles(symbol, res, limit=1_000_000)
                if got:
                    out[(symbol, res)] = got
        return out

    async def converge(
        self, expected: dict[tuple[str, str], list[Candle]], *, seconds: float = 90
    ) -> dict[tuple[str, str], list[Candle]]:
        """Read the stored candles until they equal ``expected`` or ``seconds`` pass."""
        deadline = time.monotonic() + seconds
        got: dict[tuple[str, str], list[Candle]] = {}
        while time.monotonic() < deadline:
            try:
                got = await self.stored()
            except Exception:  # the store may be down in the middle of a fault test
                got = {}
            if got == expected:
                return got
            await asyncio.sleep(0.5)
        return got

    async def close(self) -> None:
        for process in self.processes:
            if process.alive():
                process.proc.send_signal(signal.SIGTERM)
        for process in self.processes:
            await process.stop(grace=20)
        if self._bus is not None:
            await self._bus.close()
        if self._store is not None:
            await self._store.close()


def diff(
    expected: dict[tuple[str, str], list[Candle]], got: dict[tuple[str, str], list[Candle]]
) -> str:
    """The first differences, readable in a failed assertion."""
    lines = []
    for key in sorted(set(expected) | set(got)):
        want, have = expected.get(key, []), got.get(key, [])
        if want == have:
            continue
        lines.append(f"{key}: {len(want)} expected, {len(have)} stored")
        by_start = {c.start_ms: c for c in have}
        for c in want:
            if by_start.get(c.start_ms) != c:
                lines.append(f"  expected {c}\n  stored   {by_start.get(c.start_ms)}")
                break
    return "\n".join(lines[:20]) or "no difference"
