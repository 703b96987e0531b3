"""Plausibility checks on a normalised tick: pure, each failure a reason to dead-letter."""

from __future__ import annotations

import math

from stream.contract import Tick


def problem(tick: Tick) -> str | None:
    """Why ``tick`` must not be published, or None when it is plausible."""
    for name, value in (("bid", tick.bid), ("ask", tick.ask), ("price", tick.price)):
        if not math.isfinite(value):
            return f"non-finite {name}: {value!r}"
        if value <= 0:
            return f"non-positive {name}: {value!r}"
    if tick.bid > tick.ask:
        return f"crossed quote: bid {tick.bid} > ask {tick.ask}"
    if tick.size is not None and (not math.isfinite(tick.size) or tick.size < 0):
        return f"bad size: {tick.size!r}"
    return None
