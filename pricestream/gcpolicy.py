"""Keeps CPython's cyclic garbage collector from stopping a process that holds many objects.

A web node with 10,000 websocket clients holds about 840,000 objects the collector tracks,
84 per connection: tasks, coroutines, futures, contexts, timers. CPython 3.11 runs a full
collection whenever the objects promoted to its oldest generation since the last full one
reach a quarter of that generation. Each full collection walked all 840,000 objects with the
event loop stopped for 0.4-0.8 s, freed nothing, and came back every 15-20 s under load, so
every websocket client saw a lag spike of that size (``bench/websocket.py``).

So every ``interval_s`` the objects that have lived that long are frozen (``gc.freeze``): the
collector no longer walks them, and reference counting frees them as before. A cycle of frozen
objects that becomes garbage is not reclaimed while frozen, so once the frozen objects have
grown by ``growth`` since the last full pass, and at most once every ``min_pass_interval_s``,
they are unfrozen, collected once and frozen again: one pause, logged with its length, every
few minutes at most, rather than one every 15 s. (Growth alone would also pass right after
clients connect, when the new objects are live connections, not garbage.) On cancel the
objects are unfrozen, leaving the collector as it was.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GcPolicy:
    interval_s: float = 10.0  # 0 leaves the collector alone
    growth: float = 1.5  # a full pass once the frozen objects grew by this factor
    min_objects: int = 200_000  # ... and there are at least this many
    min_pass_interval_s: float = 300.0  # ... and the last pass (or the start) is this old


def needs_full_pass(
    frozen: int, after_last_pass: int, since_last_pass_s: float, policy: GcPolicy
) -> bool:
    """Whether the frozen objects have grown enough, and long enough ago, to look for garbage
    among them."""
    return (
        frozen >= policy.min_objects
        and frozen >= after_last_pass * policy.growth
        and since_last_pass_s >= policy.min_pass_interval_s
    )


async def keep_collector_quiet(policy: GcPolicy) -> None:
    """Freeze long-lived objects every ``policy.interval_s`` until cancelled."""
    if policy.interval_s <= 0:
        return
    after_last_pass = 0
    last_pass_s = time.monotonic()
    try:
        while True:
            await asyncio.sleep(policy.interval_s)
            frozen = gc.get_freeze_count()
            now_s = time.monotonic()
            if needs_full_pass(frozen, after_last_pass, now_s - last_pass_s, policy):
                gc.unfreeze()
                freed = gc.collect()
                gc.freeze()
                after_last_pass, last_pass_s = gc.get_freeze_count(), time.monotonic()
                log.info(
                    "full garbage collection: %d objects freed, %d kept, %.0f ms",
                    freed, after_last_pass, (last_pass_s - now_s) * 1000,
                )  # fmt: skip
            else:
                gc.freeze()
    finally:
        gc.unfreeze()
