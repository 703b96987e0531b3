"""How many decimals each symbol's prices are shown with: its tick size, applied on output.

Prices are kept as vendors and the composite give them; every number the HTTP API, the
websocket and SSE feeds, snapshots and charts print is rounded to its symbol's decimals, so a
mid of two quotes (4049.5249999999996) reads as a price (4049.52). ``Precision.of`` gives the
configured decimals of a symbol, else ``default``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

#: The metals' usual quoting precision, in US dollars: gold, platinum and palladium to the cent,
#: silver to a tenth of a cent.
METAL_DECIMALS: Mapping[str, int] = {"XAU-USD": 2, "XAG-USD": 3, "XPT-USD": 2, "XPD-USD": 2}


@dataclass(frozen=True, slots=True)
class Precision:
    decimals: Mapping[str, int] = field(default_factory=lambda: dict(METAL_DECIMALS))
    default: int = 4

    def of(self, symbol: str) -> int:
        return self.decimals.get(symbol, self.default)


def round_price(value: float, decimals: int) -> float:
    """``value`` to ``decimals`` places (a non-finite value as it is)."""
    return round(value, decimals) if math.isfinite(value) else value
