"""Validation and publishing: bad ticks go to the dead-letter with their reason, never lost."""

from __future__ import annotations

import math

import pytest

from ingest.feed import Feed
from ingest.publisher import Publisher
from ingest.validate import Limits, problem
from stream.bus.memory import MemoryBus
from stream.contract import DEADLETTER, TICKS, Tick, decode_deadletter, decode_tick, encode_tick


def tick(
    bid: float = 10.0, ask: float = 10.2, price: float = 10.1, size: float | None = None
) -> Tick:
    return Tick("XAU-USD", "v", bid, ask, price, 1_000, 1_001, size, None)


@pytest.mark.parametrize(
    ("t", "reason"),
    [
        (tick(), None),
        (tick(bid=10.2, ask=10.2), None),
        (tick(bid=math.nan), "non-finite bid"),
        (tick(ask=math.inf), "non-finite ask"),
        (tick(price=0.0), "non-positive price"),
        (tick(bid=-1.0), "non-positive bid"),
        (tick(bid=10.3), "crossed quote"),
        (tick(size=-1.0), "bad size"),
    ],
)
def test_problem_names_what_is_wrong(t: Tick, reason: str | None) -> None:
    found = problem(t)
    assert (found is None) if reason is None else (found is not None and found.startswith(reason))


async def test_good_ticks_are_published_keyed_by_symbol_and_bad_ones_dead_lettered() -> None:
    bus = MemoryBus()
    ticks_in = await bus.consumer(TICKS, group="s")
    letters_in = await bus.consumer(DEADLETTER, group="d")
    publisher = Publisher(await bus.producer())
    feed = Feed("v", kind="simulator", profile="simulator", parse=None, publisher=publisher,
                limits=Limits(max_age_ms=None), clock_ms=lambda: 42)  # fmt: skip
    bad = tick(bid=11.0)
    async with publisher.running():
        await feed.receive_ticks([tick(), bad, tick(price=10.15)])
    published = await ticks_in.poll(max_records=10, timeout_ms=100)
    assert [decode_tick(r.value).price for r in published] == [10.1, 10.15]
    assert {r.key for r in published} == {b"XAU-USD"}
    [letter] = [
        decode_deadletter(r.value) for r in await letters_in.poll(max_records=10, timeout_ms=100)
    ]
    assert letter.reason.startswith("crossed quote")
    assert letter.source == "vendor:v"
    assert letter.raw == encode_tick(bad)
    assert letter.ts_ms == bad.recv_ms
    stats = feed.stats
    assert (stats.messages, stats.published, stats.rejects) == (3, 2, {"crossed quote": 1})
