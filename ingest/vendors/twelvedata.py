"""Twelve Data real-time price websocket (``/v1/quotes/price``), e.g. ``XAU/USD``.

Messages: ``{"event":"price","symbol":"XAU/USD","timestamp":<s>,"price":…,"bid":…,"ask":…}``,
``subscribe-status`` (``status``, ``success`` and ``fails`` lists), ``heartbeat`` (the answer to
our ``{"action":"heartbeat"}``, which Twelve Data asks for every 10 seconds) and errors as
``{"status":"error","message":…}``. Bid and ask are absent for some instruments: the price is
then the quote on both sides.
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
    epoch_ms,
    number,
    obj,
    rejecting,
    text,
)


def _names(items: object) -> list[str]:
    if not isinstance(items, list):
        return []
    return [str(i.get("symbol"))[:20] if isinstance(i, dict) else str(i)[:20] for i in items]


@rejecting
def parse(raw: bytes) -> Parsed:
    d = obj(raw)
    event = d.get("event")
    if event == "price":
        when = d.get("timestamp")
        quote = Quote(
            symbol=text(d, "symbol"),
            bid=number(d, "bid", required=False),
            ask=number(d, "ask", required=False),
            price=number(d, "price"),
            ts_ms=epoch_ms(when, "timestamp", unit="s") if when is not None else None,
        )
        return Parsed.data(quote)
    if event == "heartbeat":
        return HEARTBEAT
    if event in ("subscribe-status", "unsubscribe-status", "reset-status"):
        ok, failed = _names(d.get("success")), _names(d.get("fails"))
        detail = f"{event} {d.get('status')!s:.20}: ok {ok}, failed {failed}"
        return Parsed(
            Kind.ERROR if failed or d.get("status") == "error" else Kind.STATUS, (), detail
        )
    if d.get("status") == "error":
        return Parsed(Kind.ERROR, (), f"{d.get('code')!s:.10}: {d.get('message')!s:.200}")
    raise Reject(f"unknown message: event {str(event)[:40]!r}")


def subscribe(symbols: Sequence[str]) -> list[bytes]:
    message = {"action": "subscribe", "params": {"symbols": ",".join(symbols)}}
    return [orjson.dumps(message)]


PROFILE = Profile(
    "twelvedata",
    frozenset({"websocket"}),
    parse,
    subscribe=subscribe,
    heartbeat=b'{"action":"heartbeat"}',
    heartbeat_interval_ms=10_000,
)
