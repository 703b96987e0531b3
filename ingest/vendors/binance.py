"""Binance ``<symbol>@bookTicker`` stream: the best bid and ask of a symbol in real time.

Messages: ``{"u":…, "s":"BTCUSDT", "b":"…", "B":"…", "a":"…", "A":"…"}`` (futures streams add
the event time ``E`` and transaction time ``T``), or the same wrapped as
``{"stream":"…","data":{…}}`` on a combined stream; ``{"result":null,"id":1}`` answers a
SUBSCRIBE and ``{"error":{"code":…,"msg":…},"id":…}`` (or ``{"code":…,"msg":…}``) reports an
error. Binance's own heartbeat is a websocket ping, answered by the client library. ``u`` is
the order book update id: it rises with jumps, so a repeat is a duplicate but a jump no gap.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from ingest.vendors.base import (
    Kind,
    Parsed,
    Profile,
    Quote,
    epoch_ms,
    integer,
    number,
    obj,
    rejecting,
    text,
)


@rejecting
def parse(raw: bytes) -> Parsed:
    d = obj(raw)
    if "data" in d and "stream" in d:
        d = obj(d["data"])
    if "s" in d and ("b" in d or "a" in d):
        bid, ask = number(d, "b"), number(d, "a")
        when = d.get("T") if d.get("T") is not None else d.get("E")
        quote = Quote(
            symbol=text(d, "s"),
            bid=bid,
            ask=ask,
            price=None,
            ts_ms=epoch_ms(when, "E", unit="ms") if when is not None else None,
            seq=integer(d, "u", required=False),
        )
        return Parsed.data(quote)
    if "id" in d and "result" in d:
        return Parsed(Kind.STATUS, (), f"request {str(d.get('id'))[:20]} acknowledged")
    error = d.get("error") if isinstance(d.get("error"), dict) else d
    if isinstance(error, dict) and "msg" in error:
        return Parsed(Kind.ERROR, (), f"{error.get('code')!s:.20}: {error.get('msg')!s:.200}")
    return Parsed.reject("unknown message: no bookTicker fields")


def subscribe(symbols: Sequence[str]) -> list[bytes]:
    params = [f"{s.lower()}@bookTicker" for s in symbols]
    return [orjson.dumps({"method": "SUBSCRIBE", "params": params, "id": 1})]


PROFILE = Profile("binance", frozenset({"websocket"}), parse, subscribe=subscribe)
