"""Pure text snapshots: the latest quote, the change over the range, high/low and the candles.

``json`` has everything; ``csv`` is the candle table (one header row, parses with any CSV
reader); ``txt`` is a fixed-width report for people and for systems that want a file.
"""

from __future__ import annotations

import io
import math
from datetime import UTC, datetime

import orjson

from render.charts import C, Floats, H, L, O, T, summary
from render.spec import SnapshotSpec
from stream.contract import Tick


def _iso(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None


def snapshot_dict(
    spec: SnapshotSpec, rows: Floats, latest: Tick | None, as_of_ms: int
) -> dict[str, object]:
    first, last, high, low = summary(rows)
    change = last - first
    return {
        "symbol": spec.symbol,
        "range": spec.range,
        "res": spec.res,
        "as_of_ms": as_of_ms,
        "latest": None
        if latest is None
        else {
            "bid": latest.bid,
            "ask": latest.ask,
            "price": latest.price,
            "ts_ms": latest.ts_ms,
            "vendor": latest.vendor,
        },
        "open": _num(first),
        "close": _num(last),
        "change": _num(change),
        "change_pct": _num(change / first * 100) if first else None,
        "high": _num(high),
        "low": _num(low),
        "candles": [
            {"start_ms": int(r[T]), "open": r[O], "high": r[H], "low": r[L], "close": r[C]}
            for r in rows.tolist()
        ],
    }


def render_snapshot(spec: SnapshotSpec, rows: Floats, latest: Tick | None, as_of_ms: int) -> bytes:
    if spec.fmt == "json":
        return orjson.dumps(snapshot_dict(spec, rows, latest, as_of_ms))
    if spec.fmt == "csv":
        out = io.StringIO()
        out.write("start_ms,time_utc,open,high,low,close\n")
        for t, o, h, lo, c in rows.tolist():
            out.write(f"{int(t)},{_iso(t)},{o!r},{h!r},{lo!r},{c!r}\n")
        return out.getvalue().encode()
    return _text(spec, rows, latest, as_of_ms).encode()


def _text(spec: SnapshotSpec, rows: Floats, latest: Tick | None, as_of_ms: int) -> str:
    first, last, high, low = summary(rows)
    lines = [f"{spec.symbol}  range {spec.range}  candles {spec.res}  as of {_iso(as_of_ms)}"]
    if latest is not None:
        lines.append(
            f"latest  bid {latest.bid:.4f}  ask {latest.ask:.4f}  price {latest.price:.4f}"
            f"  at {_iso(latest.ts_ms)}  from {latest.vendor}"
        )
    if len(rows):
        change = last - first
        pct = change / first * 100 if first else math.nan
        lines.append(f"change  {change:+.4f} ({pct:+.2f}%) from {first:.4f}")
        lines.append(f"high    {high:.4f}")
        lines.append(f"low     {low:.4f}")
    lines.append("")
    lines.append(f"{'time (UTC)':<20}  {'open':>12}  {'high':>12}  {'low':>12}  {'close':>12}")
    lines.extend(
        f"{_iso(t):<20}  {o:>12.4f}  {h:>12.4f}  {lo:>12.4f}  {c:>12.4f}"
        for t, o, h, lo, c in rows.tolist()
    )
    return "\n".join(lines) + "\n"
