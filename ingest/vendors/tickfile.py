"""Recorded ticks for replay: JSON lines or CSV, one tick per line, in our own field names.

A record has ``symbol``, ``ts_ms`` and ``price`` or both ``bid`` and ``ask``; ``bid``, ``ask``,
``size`` and ``seq`` are optional. CSV files start with a header line naming the columns (any
order, unknown columns ignored). Symbols are ours (``XAU-USD``).
"""

from __future__ import annotations

import csv

from ingest.vendors.base import (
    Parsed,
    ParseFn,
    Quote,
    Reject,
    epoch_ms,
    integer,
    number,
    obj,
    rejecting,
)


def _quote(d: dict[str, object]) -> Quote:
    symbol = d.get("symbol")
    if not isinstance(symbol, str) or not symbol:
        raise Reject("missing field: symbol")
    bid, ask = number(d, "bid", required=False), number(d, "ask", required=False)
    price = number(d, "price", required=bid is None or ask is None)
    when = d.get("ts_ms")
    if when is None:
        raise Reject("missing field: ts_ms")
    return Quote(
        symbol,
        bid,
        ask,
        price,
        epoch_ms(when, "ts_ms", unit="ms"),
        number(d, "size", required=False),
        integer(d, "seq", required=False),
    )


@rejecting
def parse_jsonl(raw: bytes) -> Parsed:
    return Parsed.data(_quote(obj(raw)))


def csv_header(line: bytes) -> list[str]:
    """The column names of a CSV header line; ``ValueError`` when it names no tick fields."""
    names = [n.strip() for n in next(csv.reader([line.decode("utf-8", "replace")]), [])]
    if "symbol" not in names or "ts_ms" not in names:
        raise ValueError(f"CSV header {line[:120]!r} must name at least symbol and ts_ms")
    return names


def make_csv_parse(columns: list[str]) -> ParseFn:
    width = len(columns)

    @rejecting
    def parse(raw: bytes) -> Parsed:
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Reject("unparsable: not UTF-8") from None
        try:
            cells = next(csv.reader([line]), [])
        except csv.Error as exc:
            raise Reject(f"unparsable: {exc}") from None
        if len(cells) != width:
            raise Reject(f"unparsable: {len(cells)} columns, the header has {width}")
        d: dict[str, object] = {k: (v.strip() or None) for k, v in zip(columns, cells, strict=True)}
        return Parsed.data(_quote(d))

    return parse
