"""The byte-bounded LRU of the memory cache."""

from __future__ import annotations

from render.service import ByteLRU


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
