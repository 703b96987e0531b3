"""Candle rows and their reduction: summaries, merged candles, extremes-keeping downsampling.

``rows`` is a float64 array of shape (n, 5): candle start time in ms, open, high, low, close,
oldest first. A pause longer than five candles (a weekend, a feed outage) is a gap: a line
breaks there.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import numpy.typing as npt

from render.spec import ChartSpec
from stream.contract import RESOLUTIONS

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

T, O, H, L, C = range(5)  # noqa: E741 - the columns of a candle row
GAP_CANDLES = 5
MIN_CANDLE_PX = 3


def summary(rows: Floats) -> tuple[float, float, float, float]:
    """``(first open, last close, high, low)`` of the candles (NaN when there are none)."""
    if len(rows) == 0:
        nan = float("nan")
        return nan, nan, nan, nan
    return float(rows[0, O]), float(rows[-1, C]), float(rows[:, H].max()), float(rows[:, L].min())


def merge_candles(rows: Floats, k: int) -> Floats:
    """OHLC of every ``k`` consecutive candles (open first, high max, low min, close last)."""
    if k <= 1 or len(rows) == 0:
        return rows
    starts = np.arange(0, len(rows), k)
    ends = np.minimum(starts + k - 1, len(rows) - 1)
    out = np.empty((len(starts), 5))
    out[:, T] = rows[starts, T]
    out[:, O] = rows[starts, O]
    out[:, H] = np.maximum.reduceat(rows[:, H], starts)
    out[:, L] = np.minimum.reduceat(rows[:, L], starts)
    out[:, C] = rows[ends, C]
    return out


def minmax_downsample(x: Floats, y: Floats, buckets: int) -> tuple[Floats, Floats]:
    """At most two points per bucket of equal ``x`` width: the minimum and the maximum, in order.

    Every extreme survives (unlike LTTB, which may drop one); cost O(n). ``x`` is ascending,
    so each bucket is a run of neighbours and nothing needs sorting.
    """
    n = len(x)
    if n <= 2 * buckets or buckets < 1:
        return x, y
    span = x[-1] - x[0] or 1.0
    b = np.minimum(((x - x[0]) / span * buckets).astype(np.int64), buckets - 1)
    starts = np.flatnonzero(_changes(b))
    bucket_of = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, n)))
    idx_min = _first_where(y == np.minimum.reduceat(y, starts)[bucket_of], bucket_of)
    idx_max = _first_where(y == np.maximum.reduceat(y, starts)[bucket_of], bucket_of)
    pairs = np.empty(2 * len(starts) + 2, np.int64)
    pairs[0], pairs[-1] = 0, n - 1
    pairs[1:-1:2] = np.minimum(idx_min, idx_max)
    pairs[2:-1:2] = np.maximum(idx_min, idx_max)
    keep = pairs[_changes(pairs)]  # ascending; a repeated index once
    return x[keep], y[keep]


def _first_where(hit: npt.NDArray[np.bool_], bucket_of: Ints) -> Ints:
    """Per bucket (``bucket_of`` ascending), the index of the first position where ``hit``."""
    where = np.flatnonzero(hit)
    return where[_changes(bucket_of[where])]


def _changes(values: Ints) -> npt.NDArray[np.bool_]:
    """True where a value differs from the one before it, and at the first."""
    out = np.empty(len(values), bool)
    out[:1] = True
    np.not_equal(values[1:], values[:-1], out=out[1:])
    return out


def find_gaps(rows: Floats, res_ms: int) -> npt.NDArray[np.bool_]:
    """``gaps[i]`` is True when candles i and i+1 are too far apart to be joined."""
    return np.diff(rows[:, T]) > GAP_CANDLES * res_ms


def line_points(spec: ChartSpec, rows: Floats, as_of_ms: int) -> Floats:
    """Time of each close: the end of its candle (the newest one: the newest tick)."""
    return np.minimum(rows[:, T] + RESOLUTIONS[spec.res], float(as_of_ms))


def _runs(gaps: npt.NDArray[np.bool_], n: int) -> list[tuple[int, int]]:
    """``[start, end)`` index runs of points joined without a gap."""
    cuts = (np.flatnonzero(gaps) + 1).tolist()
    bounds = [0, *cuts, n]
    return list(itertools.pairwise(bounds))


def merge_factor(px_per_candle: float) -> int:
    """How many candles to merge so that each bucket is at least ``MIN_CANDLE_PX`` wide."""
    return max(1, math.ceil(MIN_CANDLE_PX / px_per_candle))


def line_runs(
    spec: ChartSpec, rows: Floats, as_of_ms: int, *, width_px: int
) -> list[tuple[Floats, Floats]]:
    """The closes as (time, price) runs split at the gaps, MinMax-downsampled to two points per
    pixel of ``width_px``; none without rows."""
    if not len(rows):
        return []
    t = line_points(spec, rows, as_of_ms)
    gaps = find_gaps(rows, RESOLUTIONS[spec.res]) if len(rows) > 1 else np.zeros(0, bool)
    return [
        minmax_downsample(t[s:e], rows[s:e, C], max(1, width_px * (e - s) // len(rows)))
        for s, e in _runs(gaps, len(rows))
    ]
