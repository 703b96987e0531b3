"""Pure text snapshots: the latest quote, the change over the range, high/low and the candles.

``json`` has everything; ``csv`` is the candle table (one header row, parses with any CSV
reader); ``txt`` is a fixed-width report for people and for systems that want a file. Prices are
printed to the symbol's precision (``spec.decimals``), percentages to two places.
"""

from __future__ import annotations

import io
import math
from datetime import UTC, datetime

import numpy as np
import orjson

from render.reduce import Floats, O, T, summary
from render.spec import SnapshotSpec
from stream.contract import Tick

TEXT_DECIMALS = 4  # CSV and TXT places when the spec carries no precision


def _iso(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _num(x: float, decimals: int | None) -> float | None:
    if not math.isfinite(x):
        return None
    return x if decimals is None else round(x, decimals)


def snapshot_dict(
    spec: SnapshotSpec, rows: Floats, latest: Tick | None, as_of_ms: int
) -> dict[str, object]:
    """Every price to ``spec.decimals`` places (the symbol's precision); the change in percent
    to two."""
    d = spec.decimals
    first, last, high, low = summary(rows)
    change = last - first
    prices = rows[:, O:] if d is None else np.round(rows[:, O:], d)
    return {
        "symbol": spec.symbol,
        "range": spec.range,
        "res": spec.res,
        "as_of_ms": as_of_ms,
        "latest": None
        if latest is None
        else {
            "bid": _num(latest.bid, d),
            "ask": _num(latest.ask, d),
            "price": _num(latest.price, d),
            "ts_ms": latest.ts_ms,
            "vendor": latest.vendor,
        },
        "open": _num(first, d),
        "close": _num(last, d),
        "change": _num(change, d),
        "change_pct": _num(change / first * 100, 2) if first else None,
        "high": _num(high, d),
        "low": _num(low, d),
        "candles": [
            {"start_ms": int(t), "open": o, "high": h, "low": lo, "close": c}
            for t, (o, h, lo, c) in zip(rows[:, T].tolist(), prices.tolist(), strict=True)
        ],
    }


def render_snapshot(spec: SnapshotSpec, rows: Floats, latest: Tick | None, as_of_ms: int) -> bytes:
    if spec.fmt == "json":
        return orjson.dumps(snapshot_dict(spec, rows, latest, as_of_ms))
    if spec.fmt == "csv":
        d = TEXT_DECIMALS if spec.decimals is None else spec.decimals
        out = io.StringIO()
        out.write("start_ms,time_utc,open,high,low,close\n")
        for t, o, h, lo, c in rows.tolist():
            out.write(f"{int(t)},{_iso(t)},{o:.{d}f},{h:.{d}f},{lo:.{d}f},{c:.{d}f}\n")
        return out.getvalue().encode()
    return _text(spec, rows, latest, as_of_ms).encode()


def _text(spec: SnapshotSpec, rows: Floats, latest: Tick | None, as_of_ms: int) -> str:
    d = TEXT_DECIMALS if spec.decimals is None else spec.decimals
    first, last, high, low = summary(rows)
    lines = [f"{spec.symbol}  range {spec.range}  candles {spec.res}  as of {_iso(as_of_ms)}"]
    if latest is not None:
        lines.append(
            f"latest  bid {latest.bid:.{d}f}  ask {latest.ask:.{d}f}  price {latest.price:.{d}f}"
            f"  at {_iso(latest.ts_ms)}  from {latest.vendor}"
        )
    if len(rows):
        change = last - first
        pct = change / first * 100 if first else math.nan
        lines.append(f"change  {change:+.{d}f} ({pct:+.2f}%) from {first:.{d}f}")
        lines.append(f"high    {high:.{d}f}")
        lines.append(f"low     {low:.{d}f}")
    lines.append("")
    lines.append(f"{'time (UTC)':<20}  {'open':>12}  {'high':>12}  {'low':>12}  {'close':>12}")
    lines.extend(
        f"{_iso(t):<20}  {o:>12.{d}f}  {h:>12.{d}f}  {lo:>12.{d}f}  {c:>12.{d}f}"
        for t, o, h, lo, c in rows.tolist()
    )
    return "\n".join(lines) + "\n"
