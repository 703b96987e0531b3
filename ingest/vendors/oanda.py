"""OANDA v20 pricing stream: newline-delimited JSON over one long HTTP response.

Lines: ``PRICE`` (``instrument``, ``time`` in RFC 3339 with nanoseconds, ``bids``/``asks`` as
lists of ``{"price": "…", "liquidity": …}``, ``closeoutBid``/``closeoutAsk``) and ``HEARTBEAT``
(every five seconds). An error comes as ``{"errorMessage": "…"}`` (with an HTTP error status).
The stream URL is ``…/v3/accounts/<account>/pricing/stream``; the instruments go in the query.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote as urlquote

from ingest.vendors.base import (
    HEARTBEAT,
    Kind,
    Parsed,
    Profile,
    Quote,
    Reject,
    iso_ms,
    number,
    obj,
    rejecting,
    text,
)


def _best(d: dict[str, object], side: str, closeout: str) -> float | None:
    levels = d.get(side)
    if isinstance(levels, list) and levels:
        top = levels[0]
        if not isinstance(top, dict):
            raise Reject(f"bad field: {side}[0] is not an object")
        return number(top, "price")
    return number(d, closeout, required=False)


@rejecting
def parse(raw: bytes) -> Parsed:
    d = obj(raw)
    kind = d.get("type")
    if kind == "PRICE":
        bid, ask = _best(d, "bids", "closeoutBid"), _best(d, "asks", "closeoutAsk")
        if bid is None or ask is None:
            raise Reject("missing field: bids/asks")
        quote = Quote(text(d, "instrument"), bid, ask, None, iso_ms(text(d, "time"), "time"))
        return Parsed.data(quote)
    if kind == "HEARTBEAT":
        return HEARTBEAT
    if "errorMessage" in d:
        return Parsed(Kind.ERROR, (), f"{d.get('errorMessage')!s:.200}")
    raise Reject(f"unknown message: type {str(kind)[:40]!r}")


def urls(url: str, symbols: Sequence[str]) -> list[str]:
    sep = "&" if "?" in url else "?"
    return [f"{url}{sep}instruments={urlquote(','.join(symbols), safe=',')}"]


PROFILE = Profile("oanda", frozenset({"http_stream"}), parse, urls=urls)
