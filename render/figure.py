"""A chart as a plotly figure (``data`` and ``layout``) for plotly.js, as JSON bytes."""

from __future__ import annotations

import math

import numpy as np
import orjson

from render.axes import Layout, layout, price_decimals
from render.raster import font
from render.reduce import C, Floats, H, L, O, T, line_runs, merge_candles, merge_factor
from render.spec import ChartSpec
from render.theme import THEMES, hex_colour
from stream.contract import RESOLUTIONS


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
        k = merge_factor(res_ms / span * pw)
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
        xs: list[float | None] = []
        ys: list[float | None] = []
        for ts, ps in line_runs(spec, rows, as_of_ms, width_px=pw):
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
