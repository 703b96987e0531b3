"""A metals-rates REST API quoting rates per unit of the base currency (metals-api.com shape).

``GET <url>?…&symbols=XAU,XAG`` answers
``{"success":true,"timestamp":<s>,"base":"USD","rates":{"XAU":0.000247,"XAG":0.0198}}``: how
many ounces one US dollar buys, so the price in dollars is the inverse of the rate. The base
itself (``"USD": 1``) is skipped. An error is ``{"success":false,"error":{"code":…,"info":…}}``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from urllib.parse import quote as urlquote

from ingest.vendors.base import (
    Kind,
    Parsed,
    Profile,
    Quote,
    Reject,
    epoch_ms,
    obj,
    rejecting,
    to_float,
)


@rejecting
def parse(raw: bytes) -> Parsed:
    d = obj(raw)
    if d.get("success") is False:
        error = d.get("error")
        info = (error.get("info") or error.get("type")) if isinstance(error, dict) else error
        return Parsed(Kind.ERROR, (), f"{info!s:.200}")
    rates = d.get("rates")
    if not isinstance(rates, dict):
        raise Reject("missing field: rates")
    when = d.get("timestamp")
    ts_ms = epoch_ms(when, "timestamp", unit="s") if when is not None else None
    base = d.get("base")
    quotes = []
    for symbol, value in rates.items():
        if symbol == base:
            continue
        rate = to_float(value, f"rates.{symbol[:20]}")
        if not (math.isfinite(rate) and rate > 0):
            raise Reject(f"non-positive rate: {symbol[:20]} {rate!r}")
        price = 1.0 / rate
        quotes.append(Quote(symbol, None, None, price, ts_ms))
    if not quotes:
        raise Reject("missing field: rates is empty")
    return Parsed.data(*quotes)


def urls(url: str, symbols: Sequence[str]) -> list[str]:
    sep = "&" if "?" in url else "?"
    return [f"{url}{sep}symbols={urlquote(','.join(symbols), safe=',')}"]


PROFILE = Profile("metals_api", frozenset({"http_poll"}), parse, urls=urls)
