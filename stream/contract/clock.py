"""The wall clock, in the contract's unit: integer milliseconds since the epoch, UTC.

The one place the I/O shells read it; pure code takes the time as an argument.
"""

from __future__ import annotations

import time


def now_ms() -> int:
    return time.time_ns() // 1_000_000
