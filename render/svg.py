"""A chart as SVG: paths MinMax-downsampled to two points per pixel, numbers formatted in bulk."""

from __future__ import annotations

import functools
import math

import numpy as np
import numpy.typing as npt

from render.axes import NO_DATA, Layout, label_x, layout
from render.raster import font
from render.reduce import C, Floats, H, L, O, T, line_runs, merge_candles, merge_factor
from render.spec import ChartSpec
from render.theme import THEMES, Theme, hex_colour
from stream.contract import RESOLUTIONS


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
    line, fill = [], []
    base = lay.y1 * 10
    for ts, ps in line_runs(spec, rows, as_of_ms, width_px=lay.x1 - lay.x0):
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
    k = merge_factor(px_per_candle)
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
