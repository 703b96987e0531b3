"""Pure drawing: scales and ticks, downsampling that keeps extremes, gaps, decodable output."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET

import numpy as np
import plotly.io
import pytest
from PIL import Image

from render.axes import label_x, layout, nice_step, time_ticks
from render.charts import render_chart
from render.png import inks, render_png
from render.raster import LEVELS, Palette, canvas, encode_png, font
from render.reduce import merge_candles, minmax_downsample
from render.spec import ChartSpec
from render.svg import render_svg
from render.theme import THEMES
from stream.contract.resolutions import DAY_MS, HOUR_MS, MINUTE_MS

END_MS = 1_795_244_930_000  # 2026-11-21 01:08:50 UTC


def rows_of(close: np.ndarray, *, res_ms: int = MINUTE_MS, end_ms: int = END_MS) -> np.ndarray:
    n = len(close)
    t = end_ms - end_ms % res_ms - (n - 1) * res_ms + np.arange(n) * res_ms
    open_ = np.r_[close[0], close[:-1]]
    return np.column_stack(
        [t, open_, np.maximum(open_, close) + 0.1, np.minimum(open_, close) - 0.1, close]
    ).astype(np.float64)


@pytest.mark.parametrize(
    ("raw", "step"), [(0.7, 1.0), (1.0, 1.0), (1.1, 2.0), (2.2, 2.5), (3.0, 5.0), (7, 10.0),
                      (0.013, 0.02), (420, 500.0)]
)  # fmt: skip
def test_nice_step(raw: float, step: float) -> None:
    assert nice_step(raw) == pytest.approx(step)


@pytest.mark.parametrize(
    ("span_ms", "max_ticks", "first_labels"),
    [
        (HOUR_MS, 6, ["23:00", "23:10"]),
        (DAY_MS, 6, ["Nov 20", "06:00"]),  # midnight shows the date
        (30 * DAY_MS, 6, ["Oct 26", "Nov 2"]),  # weeks start on Monday
        (365 * DAY_MS, 6, ["2026", "Mar"]),  # January shows the year
        (5 * 365 * DAY_MS, 6, ["2022", "2023"]),
    ],
)
def test_time_ticks_are_round_utc_times(
    span_ms: int, max_ticks: int, first_labels: list[str]
) -> None:
    end = 1_795_219_200_000  # 2026-11-21 00:00 UTC
    ticks = time_ticks(end - span_ms, end, max_ticks)
    assert [label for _, label in ticks[:2]] == first_labels
    assert len(ticks) <= max_ticks + 1
    assert all(end - span_ms <= t <= end for t, _ in ticks)


def test_minmax_downsampling_keeps_every_bucket_extreme() -> None:
    rng = np.random.default_rng(3)
    x = np.arange(100_000, dtype=np.float64)
    y = rng.normal(size=100_000).cumsum()
    xs, ys = minmax_downsample(x, y, 300)
    assert len(xs) <= 2 * 300 + 2
    assert ys.max() == y.max()
    assert ys.min() == y.min()
    assert np.all(np.diff(xs) > 0)  # in time order
    bucket = np.minimum((x / x[-1] * 300).astype(int), 299)
    for b in (0, 17, 299):
        assert y[bucket == b].max() in ys
        assert y[bucket == b].min() in ys


def test_merged_candles_keep_open_high_low_close() -> None:
    rows = rows_of(np.array([10.0, 12.0, 9.0, 11.0, 15.0]))
    merged = merge_candles(rows, 2)
    assert merged[:, 0].tolist() == rows[[0, 2, 4], 0].tolist()
    assert merged[0, 1:].tolist() == [10.0, 12.1, 9.9, 12.0]
    assert merged[1, 1:].tolist() == [12.0, 12.1, 8.9, 11.0]
    assert merged[2, 1:].tolist() == [11.0, 15.1, 10.9, 15.0]


def _decode(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    return np.asarray(image.convert("RGB"))


def test_a_single_spike_among_130k_candles_is_drawn() -> None:
    close = np.full(130_000, 2_000.0)
    close[77_777] = 2_100.0  # one minute out of three months
    spec = ChartSpec("XAU-USD", "5y", "1m", "png")
    pixels = _decode(render_png(spec, rows_of(close), END_MS))
    line = np.array(THEMES["light"].line)
    rows_with_line = np.flatnonzero(np.all(pixels == line, axis=2).any(axis=1))
    # The line reaches the top of the plot (the spike), not just the flat level.
    assert rows_with_line.min() < 60
    assert rows_with_line.max() > 200


def test_a_gap_breaks_the_line() -> None:
    close = 2_000 + np.sin(np.arange(300) / 10.0)
    rows = rows_of(close)
    rows = np.delete(rows, slice(100, 160), axis=0)  # an hour without candles
    svg = render_svg(ChartSpec("XAU-USD", "1d", "1m", "svg"), rows, END_MS).decode()
    root = ET.fromstring(svg)
    paths = [p.get("d") or "" for p in root.iter("{http://www.w3.org/2000/svg}path")]
    line = next(d for p, d in zip(root.iter("{http://www.w3.org/2000/svg}path"), paths, strict=True)
                if p.get("fill") == "none" and p.get("stroke-width") == "16")  # fmt: skip
    assert line.count("M") == 2
    pixels = _decode(render_png(ChartSpec("XAU-USD", "1d", "1m", "png"), rows, END_MS))
    blue = np.all(pixels == np.array(THEMES["light"].line), axis=2).sum(axis=0)
    columns = np.flatnonzero(blue >= 2)  # the dashed last-price marker is one row
    assert np.diff(columns).max() > 10  # an empty stretch inside the line


@pytest.mark.parametrize("fmt", ["png", "svg", "json"])
@pytest.mark.parametrize("kind", ["area", "candles"])
@pytest.mark.parametrize("n", [0, 1, 2, 500])
def test_every_format_renders_any_number_of_candles(fmt: str, kind: str, n: int) -> None:
    rows = rows_of(2_000 + np.arange(n, dtype=np.float64)) if n else np.empty((0, 5))
    spec = ChartSpec("XAU-USD", "1d", "1m", fmt, 640, 320, kind, "dark")
    body = render_chart(spec, rows, END_MS)
    if fmt == "png":
        assert Image.open(io.BytesIO(body)).size == (640, 320)
    elif fmt == "svg":
        assert ET.fromstring(body).get("width") == "640"
    else:
        figure = plotly.io.from_json(body.decode())
        assert len(figure.data) == 1


def test_themes_have_their_own_palettes() -> None:
    assert inks("light").palette.colours[0] == THEMES["light"].bg
    assert inks("dark").palette.colours[0] == THEMES["dark"].bg


def test_png_encoding_round_trips_palette_indices() -> None:
    palette = Palette()
    for i in range(3):
        palette.add((i * 100, 0, 255 - i * 100))
    rows, img = canvas(40, 30, 0)
    img[:] = (np.arange(40 * 30).reshape(30, 40) % 3).astype(np.uint8)
    image = Image.open(io.BytesIO(encode_png(rows, palette)))
    assert image.mode == "P"
    assert np.array_equal(np.asarray(image), img)


@pytest.mark.parametrize("fmt", ["png", "svg"])
def test_the_open_candle_keeps_its_whole_slot_inside_the_plot(fmt: str) -> None:
    rows = rows_of(4_000 + np.sin(np.arange(60) / 5))  # the last candle opened at END_MS - 50 s
    spec = ChartSpec("XAU-USD", "1h", "1m", fmt, kind="candles")
    lay = layout(spec, rows, END_MS, font(11), font(13))
    assert lay.px(rows[-1, 0] + MINUTE_MS) <= lay.x1  # the slot's end, not the newest tick
    if fmt == "svg":
        svg = render_svg(spec, rows, END_MS).decode()
        numbers = [float(v) for v in re.findall(r"M(\d+) \d+V", svg.split("scale(.1)")[1])]
        assert max(numbers) / 10 < lay.x1  # every wick is left of the price axis


def test_time_labels_stay_on_the_image() -> None:
    rows = rows_of(4_000 + np.sin(np.arange(600) / 5), res_ms=1_000)
    spec = ChartSpec("XAU-USD", "1h", "1s", "svg")
    lay = layout(spec, rows, END_MS, font(11), font(13))
    for t, label in [(lay.t_min, "02:53:00"), (lay.t_max, "03:03:00")]:
        x, half = label_x(lay, t, font(11).width(label)), font(11).width(label) / 2
        assert x - half >= 0
        assert x + half <= lay.width


def test_the_svg_last_price_tag_is_fitted_inside_the_image() -> None:
    rows = rows_of(4_283.65 + np.zeros(30))
    svg = render_svg(ChartSpec("XAU-USD", "1h", "1m", "svg"), rows, END_MS).decode()
    rect = re.search(r'<rect x="(\d+)" y="[\d.]+" width="(\d+)" height="16"', svg)
    assert rect is not None
    assert int(rect.group(1)) + int(rect.group(2)) <= 600
    assert re.search(r'textLength="\d+" lengthAdjust="spacingAndGlyphs">4,283.65<', svg)


def test_the_png_area_line_has_soft_edges_in_blends_of_its_own_colour() -> None:
    rows = rows_of(4_000 + np.cumsum(np.random.default_rng(1).normal(0, 0.5, 60)))
    png = render_png(ChartSpec("XAU-USD", "1h", "1m", "png"), rows, END_MS)
    indices = np.asarray(Image.open(io.BytesIO(png)))  # the palette index of every pixel
    ink = inks("light")
    edges = {"from the background": ink.line_bg, "from the fill": ink.line_fill}
    for name, base in edges.items():
        blends = ((indices > base) & (indices < base + LEVELS - 1)).sum()
        assert blends > 100, f"no blends {name}: the line is stair-stepped"
