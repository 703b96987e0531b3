"""The collector shell around the feeds: reconnect backoff, status reports, the simulator.

- ``Backoff`` is jittered exponential backoff for reconnects.
- ``report_status`` publishes each feed's ``VendorStatus`` on ``vendors`` every second, for
  ``GET /api/v1/vendors``.
- ``SimulatorCollector`` drives the built-in ``Simulator`` in real time through its feed.

A feed (``ingest.feed.Feed``) takes a vendor's messages to the ``ingest.publisher.Publisher``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence

from ingest.feed import Feed
from ingest.publisher import Publisher
from ingest.simulator import Simulator
from stream.contract import VENDORS, encode_vendor_status, now_ms

log = logging.getLogger(__name__)

HISTORY_CHUNK = 2_000  # simulated history ticks handed to the feed at a time


class Backoff:
    """Jittered exponential backoff: ``min_ms`` doubling up to ``max_ms``, each delay drawn
    uniformly from its upper half so that many collectors do not reconnect in step."""

    def __init__(self, *, min_ms: int, max_ms: int, rng: random.Random | None = None) -> None:
        self.min_ms = min_ms
        self.max_ms = max_ms
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_ms(self) -> int:
        ceiling = min(self.max_ms, self.min_ms * 2 ** min(self.attempt, 30))
        self.attempt += 1
        return int(ceiling / 2 + self._rng.random() * ceiling / 2)

    def reset(self) -> None:
        self.attempt = 0


async def report_status(
    feeds: Sequence[Feed],
    publisher: Publisher,
    *,
    interval_ms: int = 1_000,
    clock_ms: Callable[[], int] = now_ms,
) -> None:
    """Queue every feed's ``VendorStatus`` for ``vendors`` every ``interval_ms``, forever."""
    while True:
        now = clock_ms()
        items = [(VENDORS, f.name.encode(), encode_vendor_status(f.status(now))) for f in feeds]
        await publisher.sender.put(items)
        await asyncio.sleep(interval_ms / 1000)


class SimulatorCollector:
    """Drives a ``Simulator`` in real time, publishing every ``interval_ms``."""

    def __init__(
        self,
        simulator: Simulator,
        feed: Feed,
        *,
        interval_ms: int = 20,
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        self.simulator = simulator
        self.feed = feed
        self.interval_ms = interval_ms
        self.clock_ms = clock_ms

    async def run(self) -> None:
        log.info(
            "simulator started: %d metals, %d vendors, %.1f ticks/s each",
            len(self.simulator.metals),
            len(self.simulator.vendors),
            self.simulator.rate_hz,
        )
        self.feed.connected(True)
        try:
            history = self.simulator.history()
            if history:
                symbols = sorted({t.symbol for t in history})
                log.info(
                    "simulator: %d ticks of simulated history (%.0f days) for %s",
                    len(history), (history[-1].ts_ms - history[0].ts_ms) / 86_400_000,
                    ", ".join(symbols),
                )  # fmt: skip
                for i in range(0, len(history), HISTORY_CHUNK):
                    await self.feed.receive_ticks(history[i : i + HISTORY_CHUNK])
            if self.simulator.continued:
                log.info("simulator: %s continue from their stored prices",
                         ", ".join(sorted(self.simulator.continued)))  # fmt: skip
            while True:
                await asyncio.sleep(self.interval_ms / 1000)
                ticks = self.simulator.advance(self.clock_ms())
                if ticks:
                    await self.feed.receive_ticks(ticks)
                else:
                    self.feed.alive()
        finally:
            self.feed.connected(False)
