"""The ingest role: build the configured collectors and run them with the status reporter.

``build(vendors, composite, producer)`` makes one ``Feed`` and one collector per configured
vendor; ``Ingest.run()`` runs them all until cancelled. The embedded runner and a separate
``pricestream ingest`` process both call these.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field

from ingest.collector import Backoff, SimulatorCollector, report_status
from ingest.composite import Composite
from ingest.config import CompositeConfig, VendorConfig
from ingest.feed import Feed
from ingest.http import PollCollector, StreamCollector
from ingest.publisher import Publisher
from ingest.replay import Progress, ReplayCollector
from ingest.simulator import VENDORS as SIM_VENDORS
from ingest.simulator import Simulator
from ingest.validate import Limits
from ingest.websocket import WebsocketCollector
from stream.contract import Producer, now_ms

log = logging.getLogger(__name__)


@dataclass
class Ingest:
    feeds: list[Feed]
    runs: list[Callable[[], Coroutine[object, object, None]]]
    producer: Producer
    publisher: Publisher
    status_interval_ms: int = 1_000
    replays: list[ReplayCollector] = field(default_factory=list)
    drain_timeout_s: float = 30.0

    async def run(self) -> None:
        """Run every collector, the status reporter and the publisher until cancelled.

        A collector that ends (a replay reaching the end of its file) leaves the rest running.
        On cancel the collectors stop first, then the publisher delivers what they queued
        (for at most ``drain_timeout_s``; what the bus still refuses then is logged as lost).
        """
        publisher = self.publisher
        sending = asyncio.create_task(publisher.run(), name="publisher")
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(_watch(sending), name="publisher-watch")
                tasks.create_task(
                    report_status(self.feeds, publisher, interval_ms=self.status_interval_ms),
                    name="vendor-status",
                )
                for feed, run in zip(self.feeds, self.runs, strict=True):
                    tasks.create_task(run(), name=f"collector:{feed.name}")
        finally:
            await self._drain(sending)

    async def _drain(self, sending: asyncio.Task[None]) -> None:
        try:
            if not sending.done():
                async with asyncio.timeout(self.drain_timeout_s):
                    await self.publisher.drain()
        except TimeoutError:
            log.error(
                "stopping with %d records the bus did not take in %.0f s: they are lost",
                self.publisher.sender.stats.queued, self.drain_timeout_s,
            )  # fmt: skip
        finally:
            sending.cancel()
            await asyncio.gather(sending, return_exceptions=True)


async def _watch(sending: asyncio.Task[None]) -> None:
    """Fail with the publisher if it fails; its cancellation is the owner's to do."""
    await asyncio.shield(sending)


def limits(v: VendorConfig, *, gapless: bool, seq_per_symbol: bool = True) -> Limits:
    return Limits(
        seq_per_symbol=seq_per_symbol,
        spike_bp=v.spike_bp or None,
        max_future_ms=v.max_future_ms,
        max_age_ms=v.max_age_ms or None,
        gapless=gapless,
        spike_reset_ms=max(v.stale_after_ms, 60_000),
    )


def build(
    vendors: Sequence[VendorConfig],
    composite: CompositeConfig,
    producer: Producer,
    *,
    progress: Progress | None = None,
    status_interval_ms: int = 1_000,
    clock_ms: Callable[[], int] = now_ms,
    sim_prices: Mapping[str, float] | None = None,
) -> Ingest:
    """``sim_prices``: the latest stored price per symbol, where the simulator continues; the
    metals not in it get simulated history. None: nothing is known of the store (a separate
    ingest process), so no history either."""
    stale = {v.name: v.stale_after_ms for v in vendors}
    for v in vendors:
        if v.kind == "simulator":
            stale.update((s.name, v.stale_after_ms) for s in SIM_VENDORS)
    mixer = None
    if composite.enabled:
        mixer = Composite(
            vendor=composite.vendor,
            rule=composite.rule,
            priority=composite.priority,
            stale_after_ms=stale,
        )
    publisher = Publisher(producer, composite=mixer)
    ingest = Ingest([], [], producer, publisher, status_interval_ms)
    for v in vendors:
        rng = random.Random(f"{v.name}:{v.seed}")
        backoff = Backoff(min_ms=v.backoff_min_ms, max_ms=v.backoff_max_ms, rng=rng)
        headers = dict(v.headers)
        run: Callable[[], Coroutine[object, object, None]]
        if v.kind == "simulator":
            feed = Feed(
                v.name, kind=v.kind, profile="simulator", parse=None, publisher=publisher,
                limits=limits(v, gapless=True, seq_per_symbol=False),
                stale_after_ms=v.stale_after_ms,
                clock_ms=clock_ms,
            )  # fmt: skip
            sim = Simulator(rate_hz=v.rate_hz, seed=v.seed, start_ms=clock_ms(),
                            prices=sim_prices, backfill=sim_prices is not None,
                            history_days=v.history_days)  # fmt: skip
            run = SimulatorCollector(sim, feed, interval_ms=v.interval_ms, clock_ms=clock_ms).run
        elif v.kind == "replay":
            feed = Feed(
                v.name, kind=v.kind, profile=v.format, parse=None, publisher=publisher,
                symbols=v.symbols, limits=limits(v, gapless=False),
                stale_after_ms=v.stale_after_ms, clock_ms=clock_ms,
            )  # fmt: skip
            replay = ReplayCollector(
                feed, path=v.path, speed=v.speed, fmt=v.format, progress=progress
            )
            ingest.replays.append(replay)
            run = replay.run
        else:
            profile = v.make_profile()
            feed = Feed(
                v.name, kind=v.kind, profile=v.profile, parse=profile.parse,
                publisher=publisher, symbols=v.symbols,
                limits=limits(v, gapless=profile.gapless), stale_after_ms=v.stale_after_ms,
                clock_ms=clock_ms,
            )  # fmt: skip
            urls = profile.urls(v.url, list(v.symbols))
            if v.kind == "websocket":
                run = WebsocketCollector(
                    feed, profile, url=v.url, headers=headers,
                    ping_interval_ms=v.ping_interval_ms,
                    heartbeat_interval_ms=v.heartbeat_interval_ms,
                    open_timeout_ms=v.open_timeout_ms, stale_after_ms=v.stale_after_ms,
                    backoff=backoff,
                ).run  # fmt: skip
            elif v.kind == "http_poll":
                run = PollCollector(
                    feed, urls=urls, headers=headers, interval_ms=v.interval_ms,
                    timeout_ms=v.timeout_ms, backoff=backoff,
                ).run  # fmt: skip
            else:
                run = StreamCollector(
                    feed, url=urls[0], headers=headers, timeout_ms=v.timeout_ms,
                    stale_after_ms=v.stale_after_ms, backoff=backoff,
                ).run  # fmt: skip
        ingest.feeds.append(feed)
        ingest.runs.append(run)
        log.info("vendor %s: %s %s %s", v.name, v.kind, v.profile or v.format, v.url or v.path)
    return ingest
