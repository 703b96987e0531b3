"""Run configured collectors against a real in-process bus and collect what they publish."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from ingest.config import CompositeConfig, parse_vendors
from ingest.feed import Feed
from ingest.replay import Progress
from ingest.service import Ingest, build
from stream.bus.memory import MemoryBus
from stream.contract import (
    DEADLETTER,
    TICKS,
    VENDOR_TICKS,
    VENDORS,
    Consumer,
    DeadLetter,
    Tick,
    VendorStatus,
    decode_deadletter,
    decode_tick,
    decode_vendor_status,
)

OFF = CompositeConfig(enabled=False)


@dataclass
class Harness:
    ingest: Ingest
    ticks: list[Tick] = field(default_factory=list)
    vendor_ticks: list[Tick] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)
    statuses: list[VendorStatus] = field(default_factory=list)

    def feed(self, name: str) -> Feed:
        return next(f for f in self.ingest.feeds if f.name == name)

    def reasons(self) -> set[str]:
        return {d.reason.split(":")[0] for d in self.letters}


async def _drain(consumers: Mapping[str, Consumer], h: Harness) -> None:
    while True:
        for topic, consumer in consumers.items():
            for rec in await consumer.poll(max_records=1_000, timeout_ms=5):
                if topic == TICKS:
                    h.ticks.append(decode_tick(rec.value))
                elif topic == VENDOR_TICKS:
                    h.vendor_ticks.append(decode_tick(rec.value))
                elif topic == DEADLETTER:
                    h.letters.append(decode_deadletter(rec.value))
                else:
                    h.statuses.append(decode_vendor_status(rec.value))


@contextlib.asynccontextmanager
async def collecting(
    tables: list[dict[str, object]],
    *,
    composite: CompositeConfig = OFF,
    progress: Progress | None = None,
) -> AsyncIterator[Harness]:
    """Build the collectors of ``tables`` (``[[vendors]]`` as dicts) and run them."""
    bus = MemoryBus()
    topics = (TICKS, VENDOR_TICKS, DEADLETTER, VENDORS)
    consumers = {t: await bus.consumer(t, group="test") for t in topics}
    producer = await bus.producer()
    vendors = parse_vendors(tables)
    ingest = build(vendors, composite, producer, status_interval_ms=50, progress=progress)
    h = Harness(ingest)
    tasks = [asyncio.create_task(ingest.run()), asyncio.create_task(_drain(consumers, h))]
    try:
        yield h
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await bus.close()
