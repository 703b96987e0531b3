"""A gold price REST API answering ``GET <url>/price/<METAL>`` with one metal's spot price.

Body: ``{"name":"Gold","price":4050.1,"symbol":"XAU","updatedAt":"2025-11-20T12:00:00Z"}``
(the shape of gold-api.com); an error is ``{"error":"…"}`` with an HTTP error status. There is
one price, no bid and ask: the tick quotes the price on both sides.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote as urlquote

from ingest.vendors.base import Kind, Parsed, Profile, Quote, iso_ms, number, obj, rejecting, text


@rejecting
def parse(raw: bytes) -> Parsed:
    d = obj(raw)
    if "error" in d and "price" not in d:
        return Parsed(Kind.ERROR, (), f"{d.get('error')!s:.200}")
    when = d.get("updatedAt")
    quote = Quote(
        symbol=text(d, "symbol"),
        bid=None,
        ask=None,
        price=number(d, "price"),
        ts_ms=iso_ms(text(d, "updatedAt"), "updatedAt") if when is not None else None,
    )
    return Parsed.data(quote)


def urls(url: str, symbols: Sequence[str]) -> list[str]:
    return [f"{url.rstrip('/')}/price/{urlquote(s, safe='')}" for s in symbols]


PROFILE = Profile("gold_api", frozenset({"http_poll"}), parse, urls=urls)
