"""Pure chart drawing: candles (as an array) -> PNG, SVG or a plotly figure, as bytes.

Nothing here awaits or reads the clock: the chart's end time (``as_of_ms``, the symbol's newest
tick) comes in with the data. ``rows`` is a float64 array of shape (n, 5): candle start time in
ms, open, high, low, close, oldest first.

Faithful at any length: an area chart is drawn column by column from the minimum and maximum of
every data point falling in each pixel column (and the line between neighbours), so a five-year
chart of one-minute candles keeps every extreme; candlesticks are merged into OHLC buckets of
at least three pixels; SVG and plotly output is MinMax-downsampled to two points per pixel.
A pause longer than five candles (a weekend, a feed outage) is a gap: the line breaks there.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import orjson

from render.raster import LEVELS, Font, Palette, Pixels, canvas, draw_text, encode_png, font
from render.spec import RANGES_MS, ChartSpec
from stream.contract import RESOLUTIONS
from stream.contract.resolutions import DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

T, O, H, L, C = range(5)  # noqa: E741 - the columns of a candle row
GAP_CANDLES = 5
NO_DATA = "No prices in this range at this resolution"
MIN_CANDLE_PX = 3


@dataclass(frozen=True, slots=True)
class Theme:
    bg: tuple[int, int, int]
    grid: tuple[int, int, int]
    axis: tuple[int, int, int]
    text: tuple[int, int, int]
    title: tuple[int, int, int]
    line: tuple[int, int, int]
    fill_top: tuple[int, int, int]
    fill_bottom: tuple[int, int, int]
    up: tuple[int, int, int]
    down: tuple[int, int, int]
    marker: tuple[int, int, int]
    marker_text: tuple[int, int, int]


THEMES = {
    "light": Theme(
        bg=(255, 255, 255),
        grid=(234, 237, 242),
        axis=(196, 202, 210),
        text=(96, 104, 116),
        title=(20, 24, 31),
        line=(33, 110, 220),
        fill_top=(196, 219, 250),
        fill_bottom=(248, 251, 255),
        up=(22, 163, 106),
        down=(220, 53, 69),
        marker=(33, 110, 220),
        marker_text=(255, 255, 255),
    ),
    "dark": Theme(
        bg=(17, 20, 26),
        grid=(35, 40, 49),
        axis=(70, 78, 90),
        text=(150, 158, 170),
        title=(236, 239, 243),
        line=(77, 163, 255),
        fill_top=(33, 68, 118),
        fill_bottom=(19, 23, 31),
        up=(38, 194, 129),
        down=(240, 82, 92),
        marker=(77, 163, 255),
        marker_text=(10, 12, 16),
    ),
}

FILL_SHADES = 24


@functools.lru_cache(maxsize=64)
def hex_colour(rgb: tuple[int, int, int]) -> str:
    return f"#{rgb[0]:02x}{rgb[1]:02x}{rgb[2]:02x}"


# ---------------------------------------------------------------------------------------------
# Data preparation


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


# ---------------------------------------------------------------------------------------------
# Layout: margins, scales, ticks and labels, shared by PNG and SVG


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


def _gaps(rows: Floats, res_ms: int) -> npt.NDArray[np.bool_]:
    """``gaps[i]`` is True when candles i and i+1 are too far apart to be joined."""
    return np.diff(rows[:, T]) > GAP_CANDLES * res_ms


def _line_points(spec: ChartSpec, rows: Floats, as_of_ms: int) -> Floats:
    """Time of each close: the end of its candle (the newest one: the newest tick)."""
    return np.minimum(rows[:, T] + RESOLUTIONS[spec.res], float(as_of_ms))


# ---------------------------------------------------------------------------------------------
# PNG


@dataclass(frozen=True, slots=True)
class Inks:
    palette: Palette
    bg: int
    grid: int
    axis: int
    line: int
    up: int
    down: int
    marker: int
    fill: int  # FILL_SHADES entries, top to bottom
    line_bg: int  # ramps from the background, and from the fill, to the line: its soft edges
    line_fill: int
    text: int  # ramps
    title: int
    up_text: int
    down_text: int
    marker_text: int


@functools.lru_cache(maxsize=4)
def inks(theme_name: str) -> Inks:
    th = THEMES[theme_name]
    p = Palette()
    bg = p.add(th.bg)
    grid, axis, line = p.add(th.grid), p.add(th.axis), p.add(th.line)
    up, down, marker = p.add(th.up), p.add(th.down), p.add(th.marker)
    fill = len(p.colours)
    for i in range(FILL_SHADES):
        a = i / (FILL_SHADES - 1)
        p.add(
            tuple(  # type: ignore[arg-type]
                round(top + (bot - top) * a)
                for top, bot in zip(th.fill_top, th.fill_bottom, strict=True)
            )
        )
    return Inks(
        p, bg, grid, axis, line, up, down, marker, fill,
        p.ramp(th.bg, th.line), p.ramp(th.fill_top, th.line),
        p.ramp(th.bg, th.text), p.ramp(th.bg, th.title), p.ramp(th.bg, th.up),
        p.ramp(th.bg, th.down), p.ramp(th.marker, th.marker_text),
    )  # fmt: skip


def render_png(spec: ChartSpec, rows: Floats, as_of_ms: int) -> bytes:
    f, ft = font(11), font(13)
    lay = layout(spec, rows, as_of_ms, f, ft)
    ink = inks(spec.theme)
    scanlines, img = canvas(spec.width_px, spec.height_px, ink.bg)
    x0, x1, y0, y1 = lay.x0, lay.x1, lay.y0, lay.y1
    for p, _ in lay.price_ticks:
        img[round(lay.py(p)), x0:x1] = ink.grid
    for t, _ in lay.time_ticks:
        img[y0:y1, round(lay.px(t))] = ink.grid
    plot = img[y0:y1, x0:x1]
    if len(rows):
        if spec.kind == "candles":
            _png_candles(plot, spec, rows, lay, ink)
        else:
            _png_area(plot, spec, rows, as_of_ms, lay, ink)
    else:
        draw_text(img, NO_DATA, (x0 + x1) // 2, (y0 + y1) // 2 - f.height, ink.text, ft, anchor="c")
    img[y1, x0:x1] = ink.axis
    img[y0 : y1 + 1, x1] = ink.axis
    half = f.height // 2
    ym = round(lay.py(lay.last)) if math.isfinite(lay.last) else -999
    for p, label in lay.price_ticks:
        yp = round(lay.py(p))
        if abs(yp - ym) > f.height:  # the last-price box covers it
            draw_text(img, label, x1 + 6, yp - half, ink.text, f)
    for t, label in lay.time_ticks:
        draw_text(img, label, label_x(lay, t, f.width(label)), y1 + 4, ink.text, f, anchor="c")
    if math.isfinite(lay.last):
        row = img[ym, x0:x1]
        row[(np.arange(x1 - x0) % 6) < 3] = ink.marker
        box_w = f.width(lay.last_label) + 8
        top = max(0, ym - half - 2)
        img[top : ym + half + 2, x1 : x1 + box_w + 4] = ink.marker
        draw_text(img, lay.last_label, x1 + 6, top + 2, ink.marker_text, f)
    x = 10 + draw_text(img, lay.title, 10, 6, ink.title, ft)
    if lay.change:
        x += 14 + draw_text(img, lay.last_label, x + 14, 6, ink.title, ft)
        draw_text(img, lay.change, x + 10, 6, ink.up_text if lay.rising else ink.down_text, ft)
    return encode_png(scanlines, ink.palette)


def _png_area(
    plot: Pixels, spec: ChartSpec, rows: Floats, as_of_ms: int, lay: Layout, ink: Inks
) -> None:
    ph, pw = plot.shape
    xs = lay.x(_line_points(spec, rows, as_of_ms)) - lay.x0
    ys = lay.y(rows[:, C]) - lay.y0
    n = len(xs)
    if n == 1:  # one candle: a flat line across its own time
        xs = np.array([max(0.0, xs[0] - pw / 50), xs[0]])
        ys = np.array([ys[0], ys[0]])
        gaps = np.zeros(1, bool)
        n = 2
    else:
        gaps = _gaps(rows, RESOLUTIONS[spec.res])
    # The line's extent in each pixel column: the line at the column's two edges and every
    # point inside it, so no extreme is lost however many points share a column.
    edges = np.arange(pw + 1) - 0.5
    at_edges = np.interp(edges, xs, ys)
    seg = np.searchsorted(xs, edges, side="right") - 1
    inside = (seg >= 0) & (seg < n - 1)
    inside[inside] = ~gaps[seg[inside]]
    at_edges[~inside] = np.nan
    cols = np.clip(np.rint(xs).astype(np.int64), 0, pw - 1)
    uniq, starts = np.unique(cols, return_index=True)
    cmin = np.full(pw, np.nan)
    cmax = np.full(pw, np.nan)
    cmin[uniq] = np.minimum.reduceat(ys, starts)
    cmax[uniq] = np.maximum.reduceat(ys, starts)
    top = np.fmin(np.fmin(at_edges[:-1], at_edges[1:]), cmin)
    bot = np.fmax(np.fmax(at_edges[:-1], at_edges[1:]), cmax)
    valid = ~np.isnan(top)
    # The line is the band [a, b] of each column, 1.2 px wider than the points it joins; its
    # first and last rows are partly covered and get a blend by how much (anti-aliasing): with
    # the background above the line, with the fill below it.
    a = np.where(valid, top - 0.6, ph + 1.0)
    b = np.where(valid, bot + 0.6, ph + 1.0)
    ra, rb = np.floor(a), np.floor(b)
    top_level = np.rint(np.clip(np.minimum(b, ra + 1) - a, 0, 1) * (LEVELS - 1)).astype(np.uint8)
    bot_level = np.rint((b - rb) * (LEVELS - 1)).astype(np.uint8)
    ra_i, rb_i = ra.astype(np.int16), rb.astype(np.int16)
    r = np.arange(ph, dtype=np.int16)[:, None]
    shade = (ink.fill + np.arange(ph) * FILL_SHADES // ph).astype(np.uint8)[:, None]
    np.copyto(plot, shade, where=r > rb_i)
    np.copyto(plot, np.uint8(ink.line), where=(r > ra_i) & (r < rb_i))
    np.copyto(plot, (ink.line_bg + top_level)[None, :], where=r == ra_i)
    np.copyto(plot, (ink.line_fill + bot_level)[None, :], where=(r == rb_i) & (rb_i > ra_i))


def _png_candles(plot: Pixels, spec: ChartSpec, rows: Floats, lay: Layout, ink: Inks) -> None:
    ph, pw = plot.shape
    res_ms = RESOLUTIONS[spec.res]
    span = (lay.t_max - lay.t_min) or 1.0
    px_per_candle = res_ms / span * pw
    k = max(1, math.ceil(MIN_CANDLE_PX / px_per_candle))
    rows = merge_candles(rows, k)
    slot = px_per_candle * k
    half = max(0, int(slot * 0.36))
    cx = lay.x(rows[:, T] + res_ms * k / 2) - lay.x0
    yo, yh = lay.y(rows[:, O]) - lay.y0, lay.y(rows[:, H]) - lay.y0
    yl, yc = lay.y(rows[:, L]) - lay.y0, lay.y(rows[:, C]) - lay.y0
    col = np.arange(pw, dtype=np.float64)
    j = np.clip(np.searchsorted(cx, col), 1, max(1, len(cx) - 1))
    if len(cx) == 1:
        j = np.zeros(pw, np.int64)
    else:
        j = np.where(np.abs(col - cx[j - 1]) <= np.abs(col - cx[j]), j - 1, j)
    d = np.abs(col - np.rint(cx[j]))
    body_col = d <= half
    wick_col = d < 0.5
    bt = np.rint(np.minimum(yo, yc))[j].astype(np.int16)
    bb = np.maximum(np.rint(np.maximum(yo, yc))[j].astype(np.int16), bt)
    wt = np.rint(yh)[j].astype(np.int16)
    wb = np.rint(yl)[j].astype(np.int16)
    # One interval per column: the wick (which spans the body) or the body or nothing.
    lo = np.where(wick_col, wt, np.where(body_col, bt, ph))
    hi = np.where(wick_col, wb, np.where(body_col, bb, -1))
    colour = np.where(rows[:, C] >= rows[:, O], ink.up, ink.down).astype(np.uint8)[j]
    r = np.arange(ph, dtype=np.int16)[:, None]
    np.copyto(plot, colour, where=(r >= lo) & (r <= hi))


# ---------------------------------------------------------------------------------------------
# SVG


def _fmt(values: Floats) -> list[str]:
    return [f"{v:.1f}" for v in values.tolist()]


def render_svg(spec: ChartSpec, rows: Floats, as_of_ms: int) -> bytes:
    f, ft = font(11), font(13)
    lay = layout(spec, rows, as_of_ms, f, ft)
    th = THEMES[spec.theme]
    w, h = spec.width_px, spec.height_px
    x0, x1, y0, y1 = lay.x0, lay.x1, lay.y0, lay.y1
    text, grid = hex_colour(th.text), hex_colour(th.grid)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}" font-family="Helvetica,Arial,sans-serif" font-size="11">'
        f'<rect width="{w}" height="{h}" fill="{hex_colour(th.bg)}"/>'
    ]
    gridlines = [f"M{x0} {lay.py(p):.1f}H{x1}" for p, _ in lay.price_ticks]
    gridlines += [f"M{lay.px(t):.1f} {y0}V{y1}" for t, _ in lay.time_ticks]
    out.append(f'<path d="{"".join(gridlines)}" stroke="{grid}" stroke-width="1"/>')
    if len(rows):
        if spec.kind == "candles":
            out.append(_svg_candles(spec, rows, lay, th))
        else:
            out.append(_svg_area(spec, rows, as_of_ms, lay, th))
    else:
        out.append(
            f'<text x="{(x0 + x1) // 2}" y="{(y0 + y1) // 2}" text-anchor="middle" '
            f'font-size="13" fill="{text}">{NO_DATA}</text>'
        )
    out.append(
        f'<path d="M{x0} {y1}H{x1}V{y0}" fill="none" stroke="{hex_colour(th.axis)}"/>'
        f'<g fill="{text}">'
    )
    ym = lay.py(lay.last) if math.isfinite(lay.last) else -999.0
    out.extend(
        f'<text x="{x1 + 6}" y="{lay.py(p) + 4:.1f}">{label}</text>'
        for p, label in lay.price_ticks
        if abs(lay.py(p) - ym) > 14
    )
    out.extend(
        f'<text x="{label_x(lay, t, f.width(label))}" y="{y1 + 15}" text-anchor="middle">'
        f"{label}</text>"
        for t, label in lay.time_ticks
    )
    out.append("</g>")
    if math.isfinite(lay.last):
        ym = lay.py(lay.last)
        mk = hex_colour(th.marker)
        # The viewer's font may be wider than the one the layout measures with: the tag's
        # text is fitted to the measured width (textLength), so it never runs off the image.
        text_w = f.width(lay.last_label)
        box_w = min(text_w + 10, w - x1)
        out.append(
            f'<path d="M{x0} {ym:.1f}H{x1}" stroke="{mk}" stroke-dasharray="3 3"/>'
            f'<rect x="{x1}" y="{ym - 8:.1f}" width="{box_w}" height="16" rx="2" fill="{mk}"/>'
            f'<text x="{x1 + 5}" y="{ym + 4:.1f}" fill="{hex_colour(th.marker_text)}" '
            f'textLength="{min(text_w, box_w - 6)}" lengthAdjust="spacingAndGlyphs">'
            f"{lay.last_label}</text>"
        )
    tc = hex_colour(th.title)
    out.append(
        f'<text x="10" y="20" font-size="13" fill="{tc}"><tspan font-weight="bold">'
        f"{lay.title}</tspan>"
    )
    if lay.change:
        cc = hex_colour(th.up if lay.rising else th.down)
        out.append(f'<tspan dx="14">{lay.last_label}</tspan><tspan dx="10" fill="{cc}">'
                   f"{lay.change}</tspan>")  # fmt: skip
    out.append("</text></svg>")
    return "".join(out).encode()


def _runs(gaps: npt.NDArray[np.bool_], n: int) -> list[tuple[int, int]]:
    """``[start, end)`` index runs of points joined without a gap."""
    cuts = (np.flatnonzero(gaps) + 1).tolist()
    bounds = [0, *cuts, n]
    return list(itertools.pairwise(bounds))


@functools.cache
def digit_table() -> npt.NDArray[np.uint8]:
    """The integers 0..99,999 as six-byte, right-aligned ASCII rows: a whole coordinate array
    is formatted with one ``take``, ten times faster than %-formatting. The leading spaces are
    the separators SVG path data needs (extra white space is allowed there). Built on first use
    (17 ms): the web process imports this module but never draws."""
    table = np.array([b"%6d" % i for i in range(100_000)], dtype="S6")
    return table.view(np.uint8).reshape(-1, 6)


def _tenths(values: Floats) -> npt.NDArray[np.uint8]:
    """Coordinates in tenths of a pixel as rows of ASCII digits after a space (five bytes each
    below 10,000, else six). Series paths sit in a ``scale(.1)`` group, so their numbers are
    integers; anything off the canvas is clipped to it."""
    table = digit_table()
    tenths = np.rint(values * 10)
    np.maximum(tenths, 0, out=tenths)
    np.minimum(tenths, len(table) - 1, out=tenths)
    index = tenths.astype(np.int64)
    return table[index, 1:] if len(index) and index.max() < 10_000 else table[index]


def _ascii(rows: npt.NDArray[np.uint8]) -> str:
    return rows.tobytes().decode("ascii")


def _svg_area(spec: ChartSpec, rows: Floats, as_of_ms: int, lay: Layout, th: Theme) -> str:
    t = _line_points(spec, rows, as_of_ms)
    gaps = _gaps(rows, RESOLUTIONS[spec.res]) if len(rows) > 1 else np.zeros(0, bool)
    line, fill = [], []
    pw = lay.x1 - lay.x0
    base = lay.y1 * 10
    for s, e in _runs(gaps, len(rows)):
        ts, ps = minmax_downsample(t[s:e], rows[s:e, C], max(1, pw * (e - s) // len(rows)))
        if len(ts) == 1:
            ts = np.array([ts[0] - (lay.t_max - lay.t_min) / 50, ts[0]])
            ps = np.array([ps[0], ps[0]])
        xy = np.empty(2 * len(ts))
        xy[0::2] = lay.x(ts)
        xy[1::2] = lay.y(ps)
        coords = _tenths(xy)
        # After "M x y", further pairs are implicit line-tos.
        pts = _ascii(coords)
        line.append(f"M{pts}")
        fill.append(f"M{_ascii(coords[0])} {base}{pts}{_ascii(coords[-2])} {base}Z")
    grad = f"g{spec.theme}"
    return (
        f'<defs><linearGradient id="{grad}" x1="0" y1="0" x2="0" y2="1">'
        f'<stop offset="0" stop-color="{hex_colour(th.fill_top)}"/>'
        f'<stop offset="1" stop-color="{hex_colour(th.fill_bottom)}"/></linearGradient></defs>'
        f'<g transform="scale(.1)"><path d="{"".join(fill)}" fill="url(#{grad})"/>'
        f'<path d="{"".join(line)}" fill="none" stroke="{hex_colour(th.line)}" '
        f'stroke-width="16" stroke-linejoin="round"/></g>'
    )


#: A candle: the wick from high to low, then the body as a closed rectangle.
_CANDLE = ("M", " ", "V", "M", " ", "h", "v", "H")


def _svg_candles(spec: ChartSpec, rows: Floats, lay: Layout, th: Theme) -> str:
    res_ms = RESOLUTIONS[spec.res]
    span = (lay.t_max - lay.t_min) or 1.0
    px_per_candle = res_ms / span * (lay.x1 - lay.x0)
    k = max(1, math.ceil(MIN_CANDLE_PX / px_per_candle))
    rows = merge_candles(rows, k)
    bw = max(1.0, px_per_candle * k * 0.72)
    cx = lay.x(rows[:, T] + res_ms * k / 2)
    yo, yc = lay.y(rows[:, O]), lay.y(rows[:, C])
    n = len(rows)
    fields = np.empty((n, len(_CANDLE)))
    fields[:, 0] = cx  # M x high V low: the wick
    fields[:, 1] = lay.y(rows[:, H])
    fields[:, 2] = lay.y(rows[:, L])
    fields[:, 3] = cx - bw / 2  # M left top h width v height H left Z: the body
    fields[:, 4] = np.minimum(yo, yc)
    fields[:, 5] = bw
    fields[:, 6] = np.maximum(np.abs(yo - yc), 1.0)
    fields[:, 7] = fields[:, 3]
    digits = _tenths(fields.ravel())
    width = digits.shape[1]
    # Each candle is eight (command, number) cells and a "Z"; a number's first byte is always
    # a space, which the command letter takes over.
    cells = np.empty((n, len(_CANDLE) * width + 1), np.uint8)
    cells[:, :-1] = digits.reshape(n, -1)
    cells[:, 0:-1:width] = np.frombuffer("".join(_CANDLE).encode(), np.uint8)
    cells[:, -1] = ord("Z")
    rising = rows[:, C] >= rows[:, O]
    paths = []
    for mask, colour in ((rising, th.up), (~rising, th.down)):
        c = hex_colour(colour)
        paths.append(f'<path d="{_ascii(cells[mask])}" fill="{c}" stroke="{c}" stroke-width="10"/>')
    return f'<g transform="scale(.1)">{"".join(paths)}</g>'


# ---------------------------------------------------------------------------------------------
# plotly figure (JSON)


def render_plotly(spec: ChartSpec, rows: Floats, as_of_ms: int) -> bytes:
    """A plotly figure (``data`` and ``layout``) for plotly.js, as JSON bytes."""
    th = THEMES[spec.theme]
    lay = layout(spec, rows, as_of_ms, font(11), font(13))
    pw = lay.x1 - lay.x0
    if spec.decimals is not None:  # every price the figure carries, to the symbol's precision
        rows = np.column_stack([rows[:, T], np.round(rows[:, O:], spec.decimals)])
    data: list[dict[str, object]]
    if spec.kind == "candles":
        span = (lay.t_max - lay.t_min) or 1.0
        res_ms = RESOLUTIONS[spec.res]
        k = max(1, math.ceil(MIN_CANDLE_PX / (res_ms / span * pw)))
        merged = merge_candles(rows, k)
        data = [
            {
                "type": "candlestick",
                "name": spec.symbol,
                "x": merged[:, T].astype(np.int64).tolist(),
                "open": merged[:, O].tolist(),
                "high": merged[:, H].tolist(),
                "low": merged[:, L].tolist(),
                "close": merged[:, C].tolist(),
                "increasing": {"line": {"color": hex_colour(th.up)}},
                "decreasing": {"line": {"color": hex_colour(th.down)}},
            }
        ]
    else:
        t = _line_points(spec, rows, as_of_ms)
        gaps = _gaps(rows, RESOLUTIONS[spec.res]) if len(rows) > 1 else np.zeros(0, bool)
        xs: list[float | None] = []
        ys: list[float | None] = []
        for s, e in _runs(gaps, len(rows)) if len(rows) else []:
            ts, ps = minmax_downsample(t[s:e], rows[s:e, C], max(1, pw * (e - s) // len(rows)))
            if xs:
                xs.append(None)
                ys.append(None)
            xs.extend(ts.astype(np.int64).tolist())
            ys.extend(ps.tolist())
        data = [
            {
                "type": "scatter",
                "mode": "lines",
                "name": spec.symbol,
                "x": xs,
                "y": ys,
                "fill": "tozeroy",
                "connectgaps": False,
                "line": {"color": hex_colour(th.line), "width": 1.6},
                "fillcolor": hex_colour(th.fill_top),
            }
        ]
    fg, grid = hex_colour(th.text), hex_colour(th.grid)
    axis = {"gridcolor": grid, "linecolor": hex_colour(th.axis), "zeroline": False}
    fig_layout: dict[str, object] = {
        "width": spec.width_px,
        "height": spec.height_px,
        "title": {"text": f"{lay.title}  {lay.last_label}  {lay.change}".strip(), "x": 0.01},
        "paper_bgcolor": hex_colour(th.bg),
        "plot_bgcolor": hex_colour(th.bg),
        "font": {"color": fg, "size": 11},
        "margin": {"l": 10, "r": 70, "t": 36, "b": 28},
        "showlegend": False,
        "xaxis": {**axis, "type": "date", "range": [lay.t_min, lay.t_max],
                  "rangeslider": {"visible": False}},
        "yaxis": {**axis, "side": "right", "range": [lay.p_min, lay.p_max],
                  "tickformat": ",." + str(price_decimals(_tick_step(lay))) + "f"},
    }  # fmt: skip
    if math.isfinite(lay.last):
        fig_layout["shapes"] = [
            {
                "type": "line",
                "xref": "paper",
                "x0": 0,
                "x1": 1,
                "y0": float(lay.last_label.replace(",", "")),
                "y1": float(lay.last_label.replace(",", "")),
                "line": {"color": hex_colour(th.marker), "width": 1, "dash": "dot"},
            }
        ]
        fig_layout["annotations"] = [
            {
                "xref": "paper",
                "x": 1,
                "y": float(lay.last_label.replace(",", "")),
                "xanchor": "left",
                "text": lay.last_label,
                "showarrow": False,
                "bgcolor": hex_colour(th.marker),
                "font": {"color": hex_colour(th.marker_text)},
            }
        ]
    return orjson.dumps({"data": data, "layout": fig_layout})


def _tick_step(lay: Layout) -> float:
    ticks = [p for p, _ in lay.price_ticks]
    return ticks[1] - ticks[0] if len(ticks) > 1 else 1.0


RENDERERS = {"png": render_png, "svg": render_svg, "json": render_plotly}


def render_chart(spec: ChartSpec, rows: Floats, as_of_ms: int) -> bytes:
    return RENDERERS[spec.fmt](spec, rows, as_of_ms)
