"""The renderer's in-memory caches: LRU maps bounded by size, and single flight for fetches.

``SingleFlight`` runs one fetch per key however many callers ask for it at once: the first
caller runs it, the others await its result (or its error). A caller cancelled while it waits
does not cancel the shared fetch.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SizedLRU(Generic[K, V]):
    """A least-recently-used map bounded by the total ``size`` of its entries (and, if given,
    by ``max_items``); an entry larger than the whole bound is not kept."""

    def __init__(
        self, max_size: int, size: Callable[[K, V], int], *, max_items: int | None = None
    ) -> None:
        self.max_size = max_size
        self.max_items = max_items
        self.size = size
        self.total = 0
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        n = self.size(key, value)
        if n > self.max_size:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self.total -= self.size(key, old)
        self._items[key] = value
        self.total += n
        items = self._items
        while self.total > self.max_size or (
            self.max_items is not None and len(items) > self.max_items
        ):
            dropped, gone = items.popitem(last=False)
            self.total -= self.size(dropped, gone)

    def __len__(self) -> int:
        return len(self._items)


class ByteLRU(SizedLRU[str, bytes]):
    """Rendered bodies by cache key, bounded by their total length."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(max_bytes, _body_bytes)

    @property
    def bytes(self) -> int:
        return self.total

    @property
    def max_bytes(self) -> int:
        return self.max_size


def _body_bytes(_key: str, body: bytes) -> int:
    return len(body)


class SingleFlight(Generic[K, V]):
    """One run of a fetch per key for all the callers that ask for that key meanwhile."""

    def __init__(self) -> None:
        self._flights: dict[K, asyncio.Future[V]] = {}

    def __contains__(self, key: K) -> bool:
        """Whether a fetch for ``key`` is running (a call now would share it)."""
        return key in self._flights

    async def run(self, key: K, fetch: Callable[[], Awaitable[V]]) -> V:
        """The result of ``fetch``, run once for concurrent callers with the same ``key``."""
        flight = self._flights.get(key)
        if flight is not None:
            return await asyncio.shield(flight)
        fut: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._flights[key] = fut
        try:
            value = await fetch()
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # the callers sharing it get it; nobody else has to
            raise
        else:
            fut.set_result(value)
        finally:
            del self._flights[key]
        return value
