"""The garbage-collector policy: a pure rule, and the loop run against the real collector."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from collections.abc import Callable

import pytest

from pricestream.gcpolicy import GcPolicy, keep_collector_quiet, needs_full_pass

POLICY = GcPolicy(interval_s=10, growth=1.5, min_objects=1_000, min_pass_interval_s=300)


@pytest.mark.parametrize(
    ("frozen", "after_last_pass", "since_last_pass_s", "full"),
    [
        (999, 0, 600, False),  # too few objects to be worth a pass
        (1_000, 0, 600, True),  # the first time there are enough
        (1_000, 0, 299, False),  # ... but not within five minutes of the start
        (1_499, 1_000, 600, False),  # grown by less than half since the last pass
        (1_500, 1_000, 600, True),
        (1_500, 1_000, 120, False),  # grown enough, but the last pass is recent
        (900_000, 840_000, 3_600, False),  # 10,000 idle websocket clients: left frozen
    ],
)
def test_a_full_pass_waits_for_the_frozen_objects_to_grow_and_for_its_interval(
    frozen: int, after_last_pass: int, since_last_pass_s: float, full: bool
) -> None:
    assert needs_full_pass(frozen, after_last_pass, since_last_pass_s, POLICY) is full


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


async def _until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def test_frozen_cycles_are_freed_by_the_next_full_pass_and_cancel_unfreezes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pricestream.gcpolicy")

    def passes() -> int:
        return sum("full garbage collection" in r.getMessage() for r in caplog.records)

    assert gc.get_freeze_count() == 0
    policy = GcPolicy(interval_s=0.02, growth=2.0, min_objects=1, min_pass_interval_s=0)
    task = asyncio.create_task(keep_collector_quiet(policy))
    try:
        await _until(lambda: passes() == 1, "the first full pass")
        cycle = Node()
        dead = weakref.ref(cycle)
        del cycle
        await asyncio.sleep(0.1)  # a few rounds: the cycle is frozen, no pass is due
        gc.collect()
        assert dead() is not None, "a frozen cycle must be out of the collector's reach"
        assert passes() == 1
        # Double the frozen objects: the next round unfreezes, collects and freezes again.
        keep = [[i] for i in range(2 * gc.get_freeze_count())]
        await _until(lambda: dead() is None, "the full pass that frees the cycle")
        assert passes() == 2
        assert gc.get_freeze_count() > len(keep)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert gc.get_freeze_count() == 0


async def test_an_interval_of_zero_leaves_the_collector_alone() -> None:
    await asyncio.wait_for(keep_collector_quiet(GcPolicy(interval_s=0)), 1)
    assert gc.get_freeze_count() == 0
