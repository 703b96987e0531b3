"""Chart and snapshot requests: picklable, normalised, validated.

``parse_chart``/``parse_snapshot`` turn a symbol, a format and a query mapping into a frozen spec
or raise ``SpecError`` (a ``ValueError``) whose message says what is allowed. Two requests that
mean the same chart normalise to the same spec, so they share one cache entry.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

from stream.contract import RESOLUTIONS, InvalidSymbol, check_symbol
from stream.contract.resolutions import DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS


class SpecError(ValueError):
    """A chart or snapshot request that is not allowed; the message says what is."""


#: Every range a chart or snapshot may cover, ending at the symbol's newest tick.
RANGES_MS: dict[str, int] = {
    "1h": HOUR_MS,
    "1d": DAY_MS,
    "1w": 7 * DAY_MS,
    "1m": 30 * DAY_MS,
    "1y": 365 * DAY_MS,
    "5y": 1_826 * DAY_MS,
}

#: The resolution a range uses when the request names none: a few hundred candles at most.
DEFAULT_RES: dict[str, str] = {
    "1h": "1m",
    "1d": "5m",
    "1w": "1h",
    "1m": "4h",
    "1y": "1d",
    "5y": "1d",
}

#: How stale a cached chart of each range may be: the ``max-age`` it is served with and how
#: long the symbol's data version is trusted before the store is asked again.
FRESH_MS: dict[str, int] = {
    "1h": 1 * SECOND_MS,
    "1d": 5 * SECOND_MS,
    "1w": 30 * SECOND_MS,
    "1m": 1 * MINUTE_MS,
    "1y": 5 * MINUTE_MS,
    "5y": 15 * MINUTE_MS,
}

CHART_FORMATS = ("png", "svg", "json")
SNAPSHOT_FORMATS = ("json", "csv", "txt")
CHART_TYPES = ("area", "candles")
THEMES = ("light", "dark")
WIDTH_PX = (200, 2_000)
HEIGHT_PX = (100, 1_200)
#: The most candles one request may cover (five years of one-minute candles).
MAX_CANDLES = 2_700_000

CONTENT_TYPES = {
    "png": "image/png",
    "svg": "image/svg+xml",
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "txt": "text/plain; charset=utf-8",
}


@dataclass(frozen=True, slots=True)
class ChartSpec:
    symbol: str
    range: str
    res: str
    fmt: str
    width_px: int = 600
    height_px: int = 300
    kind: str = "area"
    theme: str = "light"
    #: places prices are printed with (the symbol's precision); None: as stored
    decimals: int | None = None

    @property
    def key(self) -> str:
        return (
            f"chart/{self.symbol}/{self.range}/{self.res}/{self.kind}/{self.theme}/"
            f"{self.width_px}x{self.height_px}.{self.fmt}"
        )


@dataclass(frozen=True, slots=True)
class SnapshotSpec:
    symbol: str
    range: str
    res: str
    fmt: str
    #: places prices are printed with (the symbol's precision); None: as stored
    decimals: int | None = None

    @property
    def key(self) -> str:
        return f"snapshot/{self.symbol}/{self.range}/{self.res}.{self.fmt}"


Spec = ChartSpec | SnapshotSpec


def _choice(query: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = query.get(name, default)  # an empty value is refused: it names nothing
    if value not in allowed:
        raise SpecError(f"{name} must be one of {', '.join(allowed)}, got {value[:20]!r}")
    return value


def _size(query: Mapping[str, str], name: str, bounds: tuple[int, int], default: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    lo, hi = bounds
    try:
        value = int(raw)
    except ValueError:
        raise SpecError(f"{name} must be an integer from {lo} to {hi}, got {raw[:20]!r}") from None
    if not lo <= value <= hi:
        raise SpecError(f"{name} must be an integer from {lo} to {hi}, got {value}")
    return value


def _common(
    symbol: str, fmt: str, formats: tuple[str, ...], query: Mapping[str, str]
) -> tuple[str, str, str]:
    try:
        check_symbol(symbol)
    except InvalidSymbol as exc:
        raise SpecError(str(exc)) from exc
    if fmt not in formats:
        raise SpecError(f"format must be one of {', '.join(formats)}, got {fmt[:10]!r}")
    rng = _choice(query, "range", tuple(RANGES_MS), "1d")
    res = query.get("res", DEFAULT_RES[rng])
    allowed = allowed_resolutions(rng)
    if res not in allowed:
        raise SpecError(
            f"res for range {rng} must be one of {', '.join(allowed)}, got {res[:20]!r}"
        )
    return symbol, rng, res


@functools.cache
def allowed_resolutions(rng: str) -> tuple[str, ...]:
    """Resolutions that give at least two and at most ``MAX_CANDLES`` candles over ``rng``."""
    span = RANGES_MS[rng]
    return tuple(r for r, ms in RESOLUTIONS.items() if 2 * ms <= span and span // ms <= MAX_CANDLES)


def parse_chart(symbol: str, fmt: str, query: Mapping[str, str]) -> ChartSpec:
    symbol, rng, res = _common(symbol, fmt, CHART_FORMATS, query)
    return ChartSpec(
        symbol=symbol,
        range=rng,
        res=res,
        fmt=fmt,
        width_px=_size(query, "w", WIDTH_PX, 600),
        height_px=_size(query, "h", HEIGHT_PX, 300),
        kind=_choice(query, "type", CHART_TYPES, "area"),
        theme=_choice(query, "theme", THEMES, "light"),
    )


def parse_snapshot(symbol: str, fmt: str, query: Mapping[str, str]) -> SnapshotSpec:
    symbol, rng, res = _common(symbol, fmt, SNAPSHOT_FORMATS, query)
    return SnapshotSpec(symbol=symbol, range=rng, res=res, fmt=fmt)


def parse_path(path: str) -> Spec:
    """``"XAU-USD.png?range=1d&w=800"`` or ``"snapshots/XAU-USD.csv?range=1w"`` (pre-generation)."""
    target, _, qs = path.strip().partition("?")
    snapshot = target.startswith("snapshots/")
    target = target.removeprefix("snapshots/").removeprefix("charts/")
    symbol, dot, fmt = target.rpartition(".")
    if not dot:
        raise SpecError(f"{path!r} is not like XAU-USD.png?range=1d")
    query: dict[str, str] = {}
    for part in filter(None, qs.split("&")):
        name, _, value = part.partition("=")
        query[name] = value
    if snapshot:
        return parse_snapshot(symbol, fmt, query)
    return parse_chart(symbol, fmt, query)
