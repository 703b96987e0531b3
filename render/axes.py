"""Chart layout shared by PNG and SVG: margins, scales, price and time ticks, labels."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from render.raster import Font
from render.reduce import C, Floats, H, L, O, T
from render.spec import RANGES_MS, ChartSpec
from stream.contract import RESOLUTIONS
from stream.contract.resolutions import DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS

NO_DATA = "No prices in this range at this resolution"


@dataclass(frozen=True, slots=True)
class Layout:
    width: int
    height: int
    x0: int  # plot area [x0, x1) x [y0, y1)
    x1: int
    y0: int
    y1: int
    t_min: float
    t_max: float
    p_min: float
    p_max: float
    price_ticks: list[tuple[float, str]]
    time_ticks: list[tuple[float, str]]
    last: float
    last_label: str
    title: str
    change: str
    rising: bool

    def x(self, t: Floats | float) -> Floats:
        span = (self.t_max - self.t_min) or 1.0
        return self.x0 + (np.asarray(t) - self.t_min) / span * (self.x1 - self.x0 - 1)

    def y(self, p: Floats | float) -> Floats:
        span = (self.p_max - self.p_min) or 1.0
        return self.y0 + (self.p_max - np.asarray(p)) / span * (self.y1 - self.y0 - 1)

    def px(self, t: float) -> float:
        """``x`` of one time, in plain floats (a numpy scalar costs ten times more)."""
        span = (self.t_max - self.t_min) or 1.0
        return self.x0 + (t - self.t_min) / span * (self.x1 - self.x0 - 1)

    def py(self, p: float) -> float:
        """``y`` of one price, in plain floats."""
        span = (self.p_max - self.p_min) or 1.0
        return self.y0 + (self.p_max - p) / span * (self.y1 - self.y0 - 1)


def nice_step(raw: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten that is at least ``raw``."""
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    exp = math.floor(math.log10(raw))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if m * 10.0**exp >= raw * (1 - 1e-9):
            return float(m * 10.0**exp)
    return 10.0 ** (exp + 1)


def price_decimals(step: float) -> int:
    return max(0, min(8, -math.floor(math.log10(step) + 1e-9) + (1 if step % 1 else 0)))


def format_price(p: float, decimals: int) -> str:
    return f"{p:,.{decimals}f}"


def price_ticks(lo: float, hi: float, max_ticks: int) -> tuple[list[float], float]:
    step = nice_step((hi - lo) / max(1, max_ticks))
    first = math.ceil(lo / step - 1e-9) * step
    ticks: list[float] = []
    v = first
    while v <= hi + step * 1e-9 and len(ticks) < 100:
        ticks.append(v)
        v = first + step * len(ticks)
    return ticks, step


_TIME_STEPS_MS = [
    SECOND_MS, 5 * SECOND_MS, 15 * SECOND_MS, 30 * SECOND_MS, MINUTE_MS, 5 * MINUTE_MS,
    10 * MINUTE_MS, 15 * MINUTE_MS, 30 * MINUTE_MS, HOUR_MS, 2 * HOUR_MS, 3 * HOUR_MS,
    6 * HOUR_MS, 12 * HOUR_MS, DAY_MS, 2 * DAY_MS, 7 * DAY_MS, 14 * DAY_MS,
]  # fmt: skip
_MONTH_STEPS = [1, 2, 3, 6, 12, 24]


def time_ticks(t_min: float, t_max: float, max_ticks: int) -> list[tuple[float, str]]:
    """Round UTC times between ``t_min`` and ``t_max`` with labels, at most ``max_ticks``."""
    span = t_max - t_min
    max_ticks = max(1, max_ticks)
    for step in _TIME_STEPS_MS:
        if span / step <= max_ticks:
            first: float = math.ceil(t_min / step) * step
            if step == 7 * DAY_MS or step == 14 * DAY_MS:  # weeks start on Monday
                monday = 4 * DAY_MS  # 1970-01-05 was a Monday
                first = math.ceil((t_min - monday) / step) * step + monday
            out = []
            t = first
            while t <= t_max:
                out.append((float(t), _time_label(t, step)))
                t += step
            return out
    for months in _MONTH_STEPS:
        if span / (months * 30.44 * DAY_MS) <= max_ticks:
            break
    start = datetime.fromtimestamp(t_min / 1000, tz=UTC)
    index = start.year * 12 + start.month - 1
    index = -(-index // months) * months  # the first month boundary on or after t_min
    out = []
    while True:
        year, month = divmod(index, 12)
        t = datetime(year, month + 1, 1, tzinfo=UTC).timestamp() * 1000
        if t > t_max:
            break
        if t >= t_min:
            label = str(year) if month == 0 or months >= 12 else _MONTHS[month]
            out.append((t, label))
        index += months
    return out


_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def _time_label(t_ms: float, step_ms: int) -> str:
    d = datetime.fromtimestamp(t_ms / 1000, tz=UTC)
    if step_ms < MINUTE_MS:
        return f"{d:%H:%M:%S}"
    if step_ms < DAY_MS and (d.hour or d.minute):
        return f"{d:%H:%M}"
    return f"{_MONTHS[d.month - 1]} {d.day}"


def layout(spec: ChartSpec, rows: Floats, as_of_ms: int, f: Font, title_font: Font) -> Layout:
    """Where everything goes. ``f`` measures label widths (SVG passes the PNG font too)."""
    w, h = spec.width_px, spec.height_px
    res_ms = RESOLUTIONS[spec.res]
    if len(rows):
        t_min = max(float(as_of_ms - RANGES_MS[spec.range]), float(rows[0, T]))
        t_max = float(max(as_of_ms, rows[-1, T] + 1))
        if spec.kind == "candles":
            # A candle is drawn across its whole slot: the newest one, still open, ends at its
            # slot's end, not at the newest tick, or its right half and wick fall off the plot.
            t_max = max(t_max, float(rows[-1, T] + res_ms))
        if t_max - t_min < res_ms:
            t_min = t_max - res_ms
        if spec.kind == "candles":
            lo, hi = float(rows[:, L].min()), float(rows[:, H].max())
        else:
            lo, hi = float(rows[:, C].min()), float(rows[:, C].max())
        first, last = float(rows[0, O]), float(rows[-1, C])
    else:
        t_min, t_max = float(as_of_ms - RANGES_MS[spec.range]), float(as_of_ms)
        lo, hi, first, last = 0.0, 1.0, math.nan, math.nan
    pad = (hi - lo) * 0.08 or max(abs(hi) * 0.001, 1e-6)
    lo, hi = lo - pad, hi + pad
    top = title_font.height + 14
    bottom = f.height + 10
    y0, y1 = top, max(top + 20, h - bottom)
    ticks, step = price_ticks(lo, hi, max(2, (y1 - y0) // 42))
    dec = price_decimals(step)
    labels = [(p, format_price(p, dec)) for p in ticks] if len(rows) else []
    places = max(2, dec) if spec.decimals is None else spec.decimals  # the symbol's precision
    last_label = format_price(last, places) if math.isfinite(last) else ""
    label_w = max([f.width(s) for _, s in labels] + [f.width(last_label) + 8])
    x0, x1 = 10, max(30, w - label_w - 14)
    times = time_ticks(t_min, t_max, max(1, (x1 - x0) // 90))
    if math.isfinite(last) and first:
        chg = last - first
        change = f"{chg:+,.{places}f} ({chg / first * 100:+.2f}%)"
    else:
        chg, change = 0.0, ""
    title = f"{spec.symbol}  {spec.range} | {spec.res}"
    return Layout(
        w, h, x0, x1, y0, y1, t_min, t_max, lo, hi, labels, times, last, last_label, title,
        change, chg >= 0,
    )  # fmt: skip


def label_x(lay: Layout, t: float, width: int) -> int:
    """The centre of a time label at ``t``, moved inward where it would run off the image."""
    x = round(lay.px(t))
    return min(max(x, width // 2 + 2), lay.width - 2 - (width + 1) // 2)
