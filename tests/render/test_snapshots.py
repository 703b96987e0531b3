"""Text snapshots: the summary and the candles, in JSON, CSV and text."""

from __future__ import annotations

import io

import numpy as np
import orjson
import pandas as pd

from render.snapshots import render_snapshot
from render.spec import SnapshotSpec
from stream.contract import Tick

ROWS = np.array(
    [
        [1_795_219_200_000, 10.0, 12.0, 9.0, 11.0],
        [1_795_219_260_000, 11.0, 14.0, 10.5, 13.5],
    ]
)
TICK = Tick("XAU-USD", "sim-alpha", 13.4, 13.6, 13.5, 1_795_219_290_000, 1_795_219_290_001)


def test_json_has_the_quote_the_change_and_the_range() -> None:
    spec = SnapshotSpec("XAU-USD", "1h", "1m", "json")
    snap = orjson.loads(render_snapshot(spec, ROWS, TICK, TICK.ts_ms))
    assert snap["latest"] == {"bid": 13.4, "ask": 13.6, "price": 13.5,
                              "ts_ms": TICK.ts_ms, "vendor": "sim-alpha"}  # fmt: skip
    assert (snap["open"], snap["close"], snap["change"]) == (10.0, 13.5, 3.5)
    assert snap["change_pct"] == 35.0
    assert (snap["high"], snap["low"]) == (14.0, 9.0)
    assert snap["candles"][1] == {"start_ms": 1_795_219_260_000, "open": 11.0, "high": 14.0,
                                  "low": 10.5, "close": 13.5}  # fmt: skip


def test_csv_is_the_candle_table() -> None:
    spec = SnapshotSpec("XAU-USD", "1h", "1m", "csv")
    frame = pd.read_csv(io.BytesIO(render_snapshot(spec, ROWS, TICK, TICK.ts_ms)))
    assert frame["close"].tolist() == [11.0, 13.5]
    assert frame["time_utc"].tolist() == ["2026-11-21T00:00:00Z", "2026-11-21T00:01:00Z"]


def test_text_report() -> None:
    spec = SnapshotSpec("XAU-USD", "1h", "1m", "txt")
    text = render_snapshot(spec, ROWS, TICK, TICK.ts_ms).decode()
    assert "change  +3.5000 (+35.00%) from 10.0000" in text
    assert "high    14.0000" in text
    assert text.splitlines()[-1].split() == ["2026-11-21T00:01:00Z", "11.0000", "14.0000",
                                             "10.5000", "13.5000"]  # fmt: skip


def test_no_candles_gives_an_empty_table_and_null_summary() -> None:
    spec = SnapshotSpec("XAU-USD", "1h", "1m", "json")
    snap = orjson.loads(render_snapshot(spec, np.empty((0, 5)), None, TICK.ts_ms))
    assert (snap["latest"], snap["change"], snap["candles"]) == (None, None, [])
