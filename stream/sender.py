"""Records to the bus in order, through a bounded buffer that rides out a bus outage.

``put`` queues records and returns at once while fewer than ``max_queued`` wait; past that it
waits for room (backpressure on whoever produces them). ``run`` sends what is queued as one
round: ``send_many`` per topic, then ``flush``, which returns once the bus holds every record of
the round. The next round starts only then, so a round never overtakes another. A round the bus
refuses (``BusError``: broker unreachable, a delivery that failed) is sent again, whole and in
the same order, after a capped backoff, until it goes through. Nothing queued is dropped;
``drain`` waits until everything queued is delivered, for a clean shutdown. A round refused, or
not taken within ``SLOW_S``, starts an outage: logged then, every ``REPORT_EVERY_S`` while it
lasts and when it ends, and shown in ``SenderStats`` (``down_since_ms``, ``queued``).

On Kafka the producer retries a delivery on its own, idempotently, for the bus's
``delivery_timeout_ms``, so an outage shorter than that costs neither loss nor duplicates. Past
it the round comes back here and is sent again through a fresh producer: records the broker had
already taken before it went away may then be written twice (at least once, never lost).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from stream.contract import BusError, Producer, now_ms

log = logging.getLogger(__name__)

Item = tuple[str, bytes | None, bytes]  # (topic, key, value)

MAX_ROUND = 50_000  # most records in one round
RETRY_MIN_S = 0.1
RETRY_MAX_S = 5.0
REPORT_EVERY_S = 10.0  # how often an outage is logged while it lasts
SLOW_S = 5.0  # a round the bus has not taken after this long is an outage


@dataclass(slots=True)
class SenderStats:
    """What a ``Sender`` did and holds; read by /metrics."""

    queued: int = 0  #: records waiting, the round in flight included
    delivered: int = 0
    rounds: int = 0
    #: rounds the bus refused, each sent again later
    failures: int = 0
    #: wall-clock ms of the first refusal of the current outage; None while the bus takes rounds
    down_since_ms: int | None = None
    last_error: str | None = None


class Sender:
    def __init__(self, producer: Producer, *, max_queued: int = 500_000) -> None:
        if max_queued < 1:
            raise ValueError(f"max_queued must be at least 1, got {max_queued}")
        self.producer = producer
        self.max_queued = max_queued
        self.stats = SenderStats()
        self._queue: list[Item] = []
        self._wake = asyncio.Event()  # set when something is queued
        self._room = asyncio.Event()  # set while the queue has room
        self._room.set()
        self._idle = asyncio.Event()  # set while nothing is queued or in flight
        self._idle.set()
        self._reported_s = 0.0  # when the current outage was last logged (monotonic)

    async def put(self, items: Sequence[Item]) -> None:
        """Queue ``items`` in order; wait first while the buffer is full."""
        if not items:
            return
        while self.stats.queued >= self.max_queued:
            self._room.clear()
            await self._room.wait()
        self._queue.extend(items)
        self.stats.queued += len(items)
        self._idle.clear()
        self._wake.set()

    async def drain(self) -> None:
        """Wait until every record queued so far is delivered."""
        await self._idle.wait()

    async def run(self) -> None:
        """Send rounds until cancelled; a refused round is retried until it goes through."""
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
            round_, self._queue = self._queue[:MAX_ROUND], self._queue[MAX_ROUND:]
            await self._deliver(round_)
            self.stats.queued -= len(round_)
            self.stats.delivered += len(round_)
            self.stats.rounds += 1
            if self.stats.queued < self.max_queued:
                self._room.set()
            if not self._queue:
                self._idle.set()

    async def _deliver(self, round_: list[Item]) -> None:
        """Send one round until the bus holds all of it; an outage is logged and counted."""
        by_topic: dict[str, list[tuple[bytes | None, bytes]]] = {}
        for topic, key, value in round_:
            group = by_topic.get(topic)
            if group is None:
                by_topic[topic] = [(key, value)]
            else:
                group.append((key, value))
        delay_s = RETRY_MIN_S
        while True:
            attempt = asyncio.ensure_future(self._send(by_topic))
            try:
                while True:
                    # A bus that retries on its own (Kafka) holds the round without failing:
                    # past SLOW_S that is an outage too, and is said so.
                    done, _ = await asyncio.wait({attempt}, timeout=SLOW_S)
                    if done:
                        break
                    self._outage(f"no answer for {SLOW_S:.0f} s", len(round_))
                attempt.result()
            except BusError as exc:
                self.stats.failures += 1
                self._outage(str(exc), len(round_), retry_s=delay_s)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, RETRY_MAX_S)
                continue
            finally:
                if not attempt.done():
                    attempt.cancel()
            down = self.stats.down_since_ms
            if down is not None:
                self.stats.down_since_ms = None
                self._reported_s = 0.0
                log.info(
                    "the bus took the held records after %.1f s; %d records still queued",
                    (now_ms() - down) / 1000, self.stats.queued - len(round_),
                )  # fmt: skip
            return

    async def _send(self, by_topic: dict[str, list[tuple[bytes | None, bytes]]]) -> None:
        for topic, group in by_topic.items():
            await self.producer.send_many(topic, group)
        await self.producer.flush()

    def _outage(self, why: str, size: int, *, retry_s: float | None = None) -> None:
        """Count and log a round the bus did not take: at its start, then every 10 s."""
        stats = self.stats
        stats.last_error = why[:300]
        now_s = time.monotonic()
        retry = "" if retry_s is None else f", next try in {retry_s:.1f} s"
        if stats.down_since_ms is None:
            stats.down_since_ms = now_ms()
            log.warning(
                "the bus did not take %d records (%s): holding them and %d more%s",
                size, why, stats.queued - size, retry,
            )  # fmt: skip
            self._reported_s = now_s
        elif now_s - self._reported_s >= REPORT_EVERY_S:
            log.warning(
                "the bus is still unavailable: %d records held%s: %s",
                stats.queued, retry, why,
            )  # fmt: skip
            self._reported_s = now_s
