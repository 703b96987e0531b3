"""Pure chart drawing, dispatched by format: candles (as an array) -> PNG, SVG or plotly JSON.

Nothing here awaits or reads the clock: the chart's end time (``as_of_ms``, the symbol's newest
tick) comes in with the data.
"""

from __future__ import annotations

from render.figure import render_plotly
from render.png import render_png
from render.reduce import Floats
from render.spec import ChartSpec
from render.svg import render_svg

RENDERERS = {"png": render_png, "svg": render_svg, "json": render_plotly}


def render_chart(spec: ChartSpec, rows: Floats, as_of_ms: int) -> bytes:
    return RENDERERS[spec.fmt](spec, rows, as_of_ms)
