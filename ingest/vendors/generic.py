"""A generic JSON profile: the field mapping comes from the configuration.

``fields`` maps our names (``symbol``, ``bid``, ``ask``, ``price``, ``ts``, ``seq``, ``size``) to
dotted paths in the vendor's JSON (``data.px``, ``quotes.0.bid``). ``records`` is the dotted path
to a list of records when one message carries several (empty: the message is one record, or a
list of them). ``symbol`` may be omitted when ``constant_symbol`` is set. Times are ``ts_unit``
(``ms``, ``s``, ``us``, ``ns`` since the epoch, or ``iso`` for RFC 3339). A message whose
``heartbeat_field`` equals ``heartbeat_value`` is a heartbeat. A record needs a price, or a bid
and an ask.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import orjson

from ingest.vendors.base import (
    HEARTBEAT,
    Parsed,
    ParseFn,
    Profile,
    Quote,
    Reject,
    epoch_ms,
    iso_ms,
    obj,
    path_get,
    rejecting,
    to_float,
)

FIELDS = ("symbol", "bid", "ask", "price", "ts", "seq", "size")
TS_UNITS = ("ms", "s", "us", "ns", "iso")


@dataclass(frozen=True, slots=True)
class FieldMap:
    fields: Mapping[str, str] = field(default_factory=dict)
    records: str = ""
    ts_unit: str = "ms"
    constant_symbol: str = ""
    heartbeat_field: str = ""
    heartbeat_value: str = ""
    subscribe: str = ""
    gapless: bool = False

    def check(self) -> None:
        """Raise ``ValueError`` naming the first wrong option."""
        unknown = set(self.fields) - set(FIELDS)
        if unknown:
            raise ValueError(
                f"fields: unknown field {sorted(unknown)[0]!r}; use {', '.join(FIELDS)}"
            )
        if "price" not in self.fields and not {"bid", "ask"} <= set(self.fields):
            raise ValueError("fields: map 'price', or both 'bid' and 'ask'")
        if "symbol" not in self.fields and not self.constant_symbol:
            raise ValueError("fields: map 'symbol' or set constant_symbol")
        if self.ts_unit not in TS_UNITS:
            raise ValueError(f"ts_unit must be one of {', '.join(TS_UNITS)}")
        if self.subscribe:
            try:
                orjson.loads(self.subscribe)
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"subscribe is not JSON: {exc}") from None


def _value(record: object, mapping: FieldMap, name: str) -> object:
    path = mapping.fields.get(name)
    return None if path is None else path_get(record, path)


def _record(record: object, m: FieldMap) -> Quote:
    if not isinstance(record, dict):
        raise Reject("unparsable: a record is not a JSON object")
    raw_symbol = _value(record, m, "symbol") if "symbol" in m.fields else m.constant_symbol
    if raw_symbol is None:
        raise Reject(f"missing field: {m.fields['symbol']}")
    if not isinstance(raw_symbol, str):
        raise Reject(f"bad field: {m.fields['symbol']} is not a string")
    nums: dict[str, float | None] = {}
    for name in ("bid", "ask", "price", "size"):
        value = _value(record, m, name)
        nums[name] = None if value is None else to_float(value, m.fields[name])
    if nums["price"] is None and (nums["bid"] is None or nums["ask"] is None):
        raise Reject(f"missing field: {m.fields.get('price') or m.fields.get('bid')}")
    when = _value(record, m, "ts")
    ts_ms: int | None = None
    if when is not None:
        if m.ts_unit == "iso":
            if not isinstance(when, str):
                raise Reject(f"bad field: {m.fields['ts']} is not a string")
            ts_ms = iso_ms(when, m.fields["ts"])
        else:
            ts_ms = epoch_ms(when, m.fields["ts"], unit=m.ts_unit)
    seq = _value(record, m, "seq")
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int)):
        raise Reject(f"bad field: {m.fields['seq']} is not an integer")
    return Quote(raw_symbol, nums["bid"], nums["ask"], nums["price"], ts_ms, nums["size"], seq)


def make_parse(m: FieldMap) -> ParseFn:
    @rejecting
    def parse(raw: bytes) -> Parsed:
        message = orjson.loads(raw)
        if m.heartbeat_field and isinstance(message, dict):
            beat = path_get(message, m.heartbeat_field)
            if beat is not None and str(beat) == m.heartbeat_value:
                return HEARTBEAT
        records = path_get(message, m.records) if m.records else message
        if records is None:
            raise Reject(f"missing field: {m.records}")
        if not isinstance(records, list):
            records = [obj(records)]
        if not records:
            raise Reject("missing field: no records")
        return Parsed.data(*(_record(r, m) for r in records))

    return parse


def make_profile(m: FieldMap) -> Profile:
    message = [m.subscribe.encode()] if m.subscribe else []

    def subscribe(symbols: Sequence[str]) -> list[bytes]:
        return list(message)

    kinds = frozenset({"websocket", "http_poll", "http_stream"})
    return Profile("generic", kinds, make_parse(m), subscribe=subscribe, gapless=m.gapless)
