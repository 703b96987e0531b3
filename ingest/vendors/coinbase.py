"""Coinbase Exchange websocket feed, ``ticker`` channel (with ``heartbeat``).

Messages: ``ticker`` (``product_id``, ``price``, ``best_bid``, ``best_ask``, ``time``,
``sequence``, ``last_size``; numbers as decimal strings), ``heartbeat``, ``subscriptions`` (the
answer to a subscribe) and ``error``. The ticker's ``sequence`` is the product's sequence over
every channel, so it rises with jumps: only repeats count (as duplicates), not gaps.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from ingest.vendors.base import (
    HEARTBEAT,
    Kind,
    Parsed,
    Profile,
    Quote,
    Reject,
    integer,
    iso_ms,
    number,
    obj,
    rejecting,
    text,
)


@rejecting
def parse(raw: bytes) -> Parsed:
    d = obj(raw)
    kind = d.get("type")
    if kind == "ticker":
        time = d.get("time")
        quote = Quote(
            symbol=text(d, "product_id"),
            bid=number(d, "best_bid"),
            ask=number(d, "best_ask"),
            price=number(d, "price"),
            ts_ms=iso_ms(text(d, "time"), "time") if time is not None else None,
            size=number(d, "last_size", required=False),
            seq=integer(d, "sequence", required=False),
        )
        return Parsed.data(quote)
    if kind == "heartbeat":
        return HEARTBEAT
    if kind == "subscriptions":
        channels = d.get("channels")
        names = (
            [c.get("name") for c in channels if isinstance(c, dict)]
            if isinstance(channels, list)
            else []
        )
        return Parsed(Kind.STATUS, (), f"subscribed: {names}")
    if kind == "error":
        return Parsed(Kind.ERROR, (), f"{d.get('message')!s:.200} ({d.get('reason')!s:.200})")
    raise Reject(f"unknown message: type {str(kind)[:40]!r}")


def subscribe(symbols: Sequence[str]) -> list[bytes]:
    message = {
        "type": "subscribe",
        "product_ids": list(symbols),
        "channels": ["ticker", "heartbeat"],
    }
    return [orjson.dumps(message)]


PROFILE = Profile("coinbase", frozenset({"websocket"}), parse, subscribe=subscribe)
