"""The byte-bounded LRU of the memory cache, and single flight."""

from __future__ import annotations

import asyncio

import pytest

from render.cache import ByteLRU, SingleFlight


def test_lru_evicts_least_recently_used_by_bytes() -> None:
    lru = ByteLRU(10)
    lru.put("a", b"1234")
    lru.put("b", b"1234")
    assert lru.get("a") == b"1234"  # now b is the oldest
    lru.put("c", b"1234")
    assert (lru.get("a"), lru.get("b"), lru.get("c")) == (b"1234", None, b"1234")
    assert lru.bytes == 8


def test_lru_replaces_a_key_and_ignores_values_larger_than_the_bound() -> None:
    lru = ByteLRU(10)
    lru.put("a", b"12")
    lru.put("a", b"123456")
    assert (lru.bytes, len(lru)) == (6, 1)
    lru.put("big", b"x" * 11)
    assert lru.get("big") is None
    assert lru.bytes == 6


async def test_concurrent_callers_of_one_key_share_one_fetch() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    calls = 0
    release = asyncio.Event()

    async def fetch() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return calls

    first = asyncio.ensure_future(flight.run("k", fetch))
    await asyncio.sleep(0)
    assert "k" in flight
    assert "other" not in flight
    second = asyncio.ensure_future(flight.run("k", fetch))
    await asyncio.sleep(0)
    release.set()
    assert [await first, await second] == [1, 1]
    assert calls == 1
    assert "k" not in flight
    assert await flight.run("k", fetch) == 2  # a later call fetches again


async def test_a_failed_fetch_reaches_every_caller_sharing_it() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    release = asyncio.Event()

    async def fetch() -> int:
        await release.wait()
        raise LookupError("gone")

    callers = [asyncio.ensure_future(flight.run("k", fetch)) for _ in range(3)]
    await asyncio.sleep(0)
    release.set()
    for caller in callers:
        with pytest.raises(LookupError, match="gone"):
            await caller
    assert "k" not in flight
