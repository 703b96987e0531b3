"""Versioned codecs for the bus: ``encode_x``/``decode_x`` pairs that raise only ``DecodeError``.

Every message carries a version tag ``"v"``. JSON is the wire format on the bus (readable by any
Kafka consumer); MessagePack is the compact binary alternative. ``decode_*`` accepts either and
tells them apart by the first byte (a JSON message is an object and starts with ``{``).
"""

from __future__ import annotations

import math
from typing import Literal

import msgspec

from stream.contract.errors import DecodeError
from stream.contract.model import Candle, DeadLetter, Tick, VendorStatus, check_symbol

Format = Literal["json", "msgpack"]

_tick_json = msgspec.json.Decoder(Tick)
_tick_pack = msgspec.msgpack.Decoder(Tick)
_candle_json = msgspec.json.Decoder(Candle)
_candle_pack = msgspec.msgpack.Decoder(Candle)
_json_enc = msgspec.json.Encoder()
# msgspec raises UnicodeDecodeError, not its own DecodeError, for invalid UTF-8 in a string.
_FAILURES = (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError)
_pack_enc = msgspec.msgpack.Encoder()


def encode_tick(tick: Tick, *, fmt: Format = "json") -> bytes:
    return _json_enc.encode(tick) if fmt == "json" else _pack_enc.encode(tick)


def decode_tick(raw: bytes) -> Tick:
    """Decode one tick; raise ``DecodeError`` naming what is wrong with ``raw``."""
    try:
        tick = _tick_json.decode(raw) if raw[:1] == b"{" else _tick_pack.decode(raw)
    except _FAILURES as exc:
        raise DecodeError(f"bad tick ({exc}): {bytes(raw[:80])!r}") from exc
    try:
        check_symbol(tick.symbol)
        if not (math.isfinite(tick.bid) and math.isfinite(tick.ask) and math.isfinite(tick.price)):
            raise ValueError("a price is not finite")
    except ValueError as exc:
        raise DecodeError(f"bad tick ({exc}): {bytes(raw[:80])!r}") from exc
    return tick


def encode_candle(candle: Candle, *, fmt: Format = "json") -> bytes:
    return _json_enc.encode(candle) if fmt == "json" else _pack_enc.encode(candle)


def decode_candle(raw: bytes) -> Candle:
    try:
        return _candle_json.decode(raw) if raw[:1] == b"{" else _candle_pack.decode(raw)
    except _FAILURES as exc:
        raise DecodeError(f"bad candle ({exc}): {bytes(raw[:80])!r}") from exc


class Update(msgspec.Struct, frozen=True, gc=False, tag_field="v", tag=1):
    """What the stream publishes on the ``updates`` topic for one symbol after one batch.

    ``ticks`` and ``candles`` are ``(seq, value)`` pairs: ``seq`` is the per-channel sequence
    number (channel ``ticks:SYMBOL`` or ``candles:SYMBOL:RES``), assigned by the stream worker
    that owns the symbol so that every web node numbers a channel the same way.
    """

    symbol: str
    ticks: list[tuple[int, Tick]]
    candles: list[tuple[int, Candle]]


_update_json = msgspec.json.Decoder(Update)


def encode_update(update: Update) -> bytes:
    return _json_enc.encode(update)


class _UpdateWire(msgspec.Struct, frozen=True, gc=False, tag_field="v", tag=1):
    """``Update`` as written by ``encode_update_raw``: the same JSON, ticks spliced in as bytes."""

    symbol: str
    ticks: list[tuple[int, msgspec.Raw]]
    candles: list[tuple[int, Candle]]


def encode_update_raw(
    symbol: str, ticks: list[tuple[int, bytes]], candles: list[tuple[int, Candle]]
) -> bytes:
    """``encode_update`` for ticks still in the JSON bytes ``decode_tick`` accepted them from.

    Re-encoding a tick costs more than the rest of the update; its bus bytes, once decoded and
    checked, are already a valid JSON tick, so they are copied in as they are.
    """
    raw = [(seq, msgspec.Raw(tick)) for seq, tick in ticks]
    return _json_enc.encode(_UpdateWire(symbol, raw, candles))


def decode_update(raw: bytes) -> Update:
    try:
        return _update_json.decode(raw)
    except _FAILURES as exc:
        raise DecodeError(f"bad update ({exc}): {bytes(raw[:80])!r}") from exc


_deadletter_json = msgspec.json.Decoder(DeadLetter)


def encode_deadletter(letter: DeadLetter) -> bytes:
    """JSON with the raw bytes in base64, so any bytes survive the round trip."""
    return _json_enc.encode(letter)


def decode_deadletter(raw: bytes) -> DeadLetter:
    try:
        return _deadletter_json.decode(raw)
    except _FAILURES as exc:
        raise DecodeError(f"bad dead letter ({exc}): {bytes(raw[:80])!r}") from exc


_status_json = msgspec.json.Decoder(VendorStatus)


def encode_vendor_status(status: VendorStatus) -> bytes:
    return _json_enc.encode(status)


def decode_vendor_status(raw: bytes) -> VendorStatus:
    try:
        return _status_json.decode(raw)
    except _FAILURES as exc:
        raise DecodeError(f"bad vendor status ({exc}): {bytes(raw[:80])!r}") from exc
