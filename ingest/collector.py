"""The collector shell: publishes validated ticks to the bus and keeps per-vendor counters.

A tick that fails validation is never dropped silently: it goes to the dead-letter topic with
the reason, the vendor and its raw bytes, and is counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ingest.simulator import Simulator
from ingest.validate import problem
from stream.contract import (
    DEADLETTER,
    TICKS,
    DeadLetter,
    Producer,
    Tick,
    encode_deadletter,
    encode_tick,
)

log = logging.getLogger(__name__)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class VendorStats:
    messages: int = 0
    published: int = 0
    rejects: dict[str, int] = field(default_factory=dict)
    last_message_ms: int | None = None


class Publisher:
    """Validates ticks and sends them to ``ticks`` (key = symbol) in one batch per call."""

    def __init__(self, producer: Producer, *, clock_ms: Callable[[], int] = now_ms) -> None:
        self.producer = producer
        self.clock_ms = clock_ms
        self.stats: dict[str, VendorStats] = {}

    async def publish(self, ticks: Sequence[Tick]) -> None:
        good: list[tuple[bytes | None, bytes]] = []
        letters: list[tuple[bytes | None, bytes]] = []
        now = self.clock_ms()
        for tick in ticks:
            stats = self.stats.get(tick.vendor) or self.stats.setdefault(tick.vendor, VendorStats())
            stats.messages += 1
            stats.last_message_ms = now
            raw = encode_tick(tick)
            why = problem(tick)
            if why is None:
                good.append((tick.symbol.encode(), raw))
                stats.published += 1
                continue
            kind = why.split(":", 1)[0]
            stats.rejects[kind] = stats.rejects.get(kind, 0) + 1
            log.warning("rejected tick from %s: %s", tick.vendor, why)
            letter = DeadLetter(why, f"vendor:{tick.vendor}", now, raw)
            letters.append((None, encode_deadletter(letter)))
        if good:
            await self.producer.send_many(TICKS, good)
        if letters:
            await self.producer.send_many(DEADLETTER, letters)


class SimulatorCollector:
    """Drives a ``Simulator`` in real time, publishing every ``interval_ms``."""

    def __init__(
        self,
        simulator: Simulator,
        publisher: Publisher,
        *,
        interval_ms: int = 20,
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        self.simulator = simulator
        self.publisher = publisher
        self.interval_ms = interval_ms
        self.clock_ms = clock_ms

    async def run(self) -> None:
        log.info(
            "simulator started: %d metals, %d vendors, %.1f ticks/s each",
            len(self.simulator.metals),
            len(self.simulator.vendors),
            self.simulator.rate_hz,
        )
        while True:
            await asyncio.sleep(self.interval_ms / 1000)
            ticks = self.simulator.advance(self.clock_ms())
            if ticks:
                await self.publisher.publish(ticks)
