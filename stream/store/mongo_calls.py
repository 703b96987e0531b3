"""Every MongoDB call of the store bounded in time, its failures as the store's errors.

``bounded`` runs one call within ``timeout_ms`` overall (the client's socket timeout is the same
bound): a server that cannot be reached, or that stops answering, raises ``StoreUnavailable`` so
the caller retries; any other failure of the driver raises ``StoreError``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pymongo.errors import ConnectionFailure, PyMongoError

from stream.contract import StoreError, StoreUnavailable

T = TypeVar("T")
Doc = dict[str, Any]


async def bounded(what: str, call: Callable[[], Awaitable[T]], *, timeout_ms: int) -> T:
    """``call()`` within ``timeout_ms`` overall; unreachable or silent: ``StoreUnavailable``."""
    deadline = asyncio.timeout(timeout_ms / 1000)
    try:
        async with deadline:
            return await call()
    except TimeoutError as exc:
        if not deadline.expired():
            raise
        raise StoreUnavailable(f"mongodb {what}: no answer within {timeout_ms} ms") from exc
    except PyMongoError as exc:
        if isinstance(exc, ConnectionFailure) or exc.timeout:
            raise StoreUnavailable(f"mongodb {what} (timeout {timeout_ms} ms): {exc}") from exc
        raise StoreError(f"mongodb {what}: {exc}") from exc


def at(ms: int) -> dt.datetime:
    """A BSON date (for ``expire_at`` and TTL indexes) from integer ms since the epoch."""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
