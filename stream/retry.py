"""Retrying a store call while the store is unavailable, so nothing waiting on it is lost."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from stream.contract import StoreUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_MAX_S = 2.0  # the longest wait between two attempts


async def while_unavailable(
    what: str,
    call: Callable[[], Awaitable[T]],
    *,
    on_failure: Callable[[StoreUnavailable | None], None] | None = None,
) -> T:
    """``call()``, retried with capped exponential backoff while it raises ``StoreUnavailable``.

    ``on_failure`` hears each failure, and ``None`` once the call succeeds after failing.
    Any other error is raised at once.
    """
    delay_s, attempt = 0.05, 0
    while True:
        try:
            result = await call()
        except StoreUnavailable as exc:
            attempt += 1
            if on_failure is not None:
                on_failure(exc)
            log.warning("store %s failed (attempt %d), retrying in %.2fs: %s",
                        what, attempt, delay_s, exc)  # fmt: skip
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, RETRY_MAX_S)
        else:
            if attempt:
                log.info("store %s succeeded after %d retries", what, attempt)
                if on_failure is not None:
                    on_failure(None)
            return result
