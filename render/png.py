"""A chart as a PNG: the plot drawn column by column into a palette image.

Faithful at any length: an area chart is drawn from the minimum and maximum of every data point
falling in each pixel column (and the line between neighbours), so a five-year chart of
one-minute candles keeps every extreme; candlesticks are merged into OHLC buckets of at least
three pixels.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from render.axes import NO_DATA, Layout, label_x, layout
from render.raster import LEVELS, Palette, Pixels, canvas, draw_text, encode_png, font
from render.reduce import C, Floats, H, L, O, T, find_gaps, line_points, merge_candles, merge_factor
from render.spec import ChartSpec
from render.theme import THEMES
from stream.contract import RESOLUTIONS

FILL_SHADES = 24


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
    xs = lay.x(line_points(spec, rows, as_of_ms)) - lay.x0
    ys = lay.y(rows[:, C]) - lay.y0
    n = len(xs)
    if n == 1:  # one candle: a flat line across its own time
        xs = np.array([max(0.0, xs[0] - pw / 50), xs[0]])
        ys = np.array([ys[0], ys[0]])
        gaps = np.zeros(1, bool)
        n = 2
    else:
        gaps = find_gaps(rows, RESOLUTIONS[spec.res])
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
    k = merge_factor(px_per_candle)
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
