"""Codecs: every contract value survives a round trip, and bad bytes raise only DecodeError."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.contract import (
    Candle,
    DeadLetter,
    DecodeError,
    PricestreamError,
    Tick,
    Update,
    decode_candle,
    decode_deadletter,
    decode_tick,
    decode_update,
    encode_candle,
    encode_deadletter,
    encode_tick,
    encode_update,
    encode_update_raw,
)
from stream.contract.codec import Format

TICK = Tick("XAU-USD", "oanda", 2400.5, 2401.0, 2400.75, 1_772_000_000_123, 1_772_000_000_150)
TICK_FULL = Tick("EUR-USD", "lmax", 1.08, 1.09, 1.085, 1, 2, size=3.5, seq=99)
CANDLE = Candle("XAU-USD", "1m", 60_000, 120_000, 1.5, 2.5, 1.0, 2.0, 7, 60_001, 119_999, True)
FORMATS: list[Format] = ["json", "msgpack"]

# a valid JSON tick, field by field, to break one field at a time
TICK_FIELDS: dict[str, object] = {
    "v": 1,
    "symbol": "XAU-USD",
    "vendor": "oanda",
    "bid": 1.0,
    "ask": 2.0,
    "price": 1.5,
    "ts_ms": 10,
    "recv_ms": 11,
}


def with_field(name: str, value: object) -> dict[str, object]:
    return {**TICK_FIELDS, name: value}


def without_field(name: str) -> dict[str, object]:
    return {k: v for k, v in TICK_FIELDS.items() if k != name}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("tick", [TICK, TICK_FULL])
def test_tick_round_trips(tick: Tick, fmt: Format) -> None:
    assert decode_tick(encode_tick(tick, fmt=fmt)) == tick


def test_json_tick_is_a_versioned_object_without_unset_optionals() -> None:
    raw = encode_tick(TICK)
    assert raw.startswith(b'{"v":1,')
    assert b"size" not in raw
    assert b"seq" not in raw


@pytest.mark.parametrize("fmt", FORMATS)
def test_candle_round_trips(fmt: Format) -> None:
    assert decode_candle(encode_candle(CANDLE, fmt=fmt)) == CANDLE


def test_update_round_trips() -> None:
    update = Update("XAU-USD", [(1, TICK), (2, TICK_FULL)], [(5, CANDLE)])
    assert decode_update(encode_update(update)) == update


@pytest.mark.parametrize("raw", [b"", b"\x00\xff{}", b'{"x":"\xff"}', bytes(range(256))])
def test_dead_letter_round_trips_any_raw_bytes(raw: bytes) -> None:
    letter = DeadLetter("late tick", "oanda", 1_772_000_000_000, raw)
    assert decode_deadletter(encode_deadletter(letter)) == letter


symbols = st.from_regex(r"[A-Z0-9]{2,12}(-[A-Z0-9]{2,12}){1,2}", fullmatch=True)
prices = st.floats(allow_nan=False, allow_infinity=False)
int64 = st.integers(-(2**63), 2**63 - 1)
ticks = st.builds(
    Tick,
    symbol=symbols,
    vendor=st.text(max_size=20),
    bid=prices,
    ask=prices,
    price=prices,
    ts_ms=int64,
    recv_ms=int64,
    size=st.none() | prices,
    seq=st.none() | int64,
)


@settings(max_examples=200)
@given(tick=ticks, fmt=st.sampled_from(FORMATS))
def test_any_valid_tick_round_trips(tick: Tick, fmt: Format) -> None:
    assert decode_tick(encode_tick(tick, fmt=fmt)) == tick


def json(fields: dict[str, object]) -> bytes:
    return msgspec.json.encode(fields)


def pack(fields: dict[str, object]) -> bytes:
    return msgspec.msgpack.encode(fields)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"{", id="truncated json"),
        pytest.param(b"{}", id="empty object"),
        pytest.param(b"not a tick", id="text"),
        pytest.param(b"\xc1", id="invalid msgpack opcode"),
        pytest.param(b"[1, 2]", id="json array"),
        pytest.param(json(TICK_FIELDS) + b"xx", id="trailing garbage"),
        pytest.param(json(with_field("v", 2)), id="json version 2"),
        pytest.param(json(with_field("v", "1")), id="json version as text"),
        pytest.param(pack(with_field("v", 2)), id="msgpack version 2"),
        pytest.param(json(with_field("price", "2400.5")), id="price as text"),
        pytest.param(json(with_field("price", None)), id="price null"),
        pytest.param(json(with_field("ts_ms", 1.5)), id="time as float"),
        pytest.param(json(with_field("ts_ms", True)), id="time as bool"),
        pytest.param(json(with_field("symbol", 5)), id="symbol as number"),
        pytest.param(pack(with_field("recv_ms", "11")), id="msgpack time as text"),
        pytest.param(json(without_field("price")), id="price missing"),
        pytest.param(json(without_field("symbol")), id="symbol missing"),
        pytest.param(json(with_field("symbol", "xau-usd")), id="lower-case symbol"),
        pytest.param(json(with_field("symbol", "XAUUSD")), id="symbol without dash"),
        pytest.param(json(with_field("symbol", "X-USD")), id="symbol part too short"),
        pytest.param(json(with_field("symbol", "")), id="empty symbol"),
        pytest.param(json(with_field("symbol", "XAU-USD\n")), id="symbol with trailing newline"),
        pytest.param(pack(with_field("price", float("nan"))), id="msgpack NaN price"),
        pytest.param(pack(with_field("bid", float("inf"))), id="msgpack infinite bid"),
        pytest.param(pack(with_field("symbol", "XAU/USD")), id="msgpack symbol with slash"),
    ],
)
def test_bad_tick_bytes_raise_decode_error_chained_to_the_cause(raw: bytes) -> None:
    with pytest.raises(DecodeError, match="bad tick") as info:
        decode_tick(raw)
    assert isinstance(info.value, PricestreamError)
    assert isinstance(info.value, ValueError)
    assert info.value.__cause__ is not None


def test_decode_error_message_shows_at_most_80_bytes_of_the_input() -> None:
    with pytest.raises(DecodeError) as info:
        decode_tick(b"{" + b"x" * 10_000)
    assert len(str(info.value)) < 400


CANDLE_FIELDS = msgspec.json.decode(encode_candle(CANDLE))


@pytest.mark.parametrize(
    ("decode", "raw"),
    [
        (decode_candle, b""),
        (decode_candle, b"{}"),
        (decode_candle, json({**CANDLE_FIELDS, "v": 2})),
        (decode_candle, json({**CANDLE_FIELDS, "ticks": "7"})),
        (decode_candle, json({**CANDLE_FIELDS, "closed": "yes"})),
        (decode_candle, pack({**CANDLE_FIELDS, "start_ms": 1.5})),
        (decode_update, b""),
        (decode_update, b"\x93\x01\x02\x03"),  # msgpack is not an update format
        (decode_update, json({"v": 1, "symbol": "XAU-USD", "ticks": [[1]], "candles": []})),
        (decode_update, json({"v": 1, "symbol": "XAU-USD", "ticks": [], "candles": [[1, {}]]})),
        (decode_update, json({"v": 2, "symbol": "XAU-USD", "ticks": [], "candles": []})),
        (decode_deadletter, b"[]"),
        (decode_deadletter, json({"v": 1, "reason": "r", "source": "s", "ts_ms": 1, "raw": "*"})),
        (decode_deadletter, json({"v": 1, "reason": "r", "source": "s", "ts_ms": "1", "raw": ""})),
    ],
)
def test_bad_candle_update_or_dead_letter_bytes_raise_decode_error(
    decode: Callable[[bytes], object], raw: bytes
) -> None:
    with pytest.raises(DecodeError) as info:
        decode(raw)
    assert info.value.__cause__ is not None


@pytest.mark.parametrize(
    ("decode", "raw"),
    [
        pytest.param(decode_tick, encode_tick(TICK).replace(b"oanda", b"oand\x80"), id="json tick"),
        pytest.param(
            decode_tick,
            encode_tick(TICK, fmt="msgpack").replace(b"oanda", b"oand\x80"),
            id="msgpack tick",
        ),
        pytest.param(
            decode_candle, encode_candle(CANDLE).replace(b'"1m"', b'"1\x80"'), id="json candle"
        ),
        pytest.param(
            decode_candle,
            encode_candle(CANDLE, fmt="msgpack").replace(b"\xa21m", b"\xa21\x80"),
            id="msgpack candle",
        ),
        pytest.param(
            decode_update,
            encode_update(Update("XAU-USD", [(1, TICK)], [])).replace(b"oanda", b"\x80"),
            id="update",
        ),
        pytest.param(
            decode_deadletter,
            encode_deadletter(DeadLetter("late", "oanda", 1, b"")).replace(b"late", b"\x80"),
            id="dead letter",
        ),
    ],
)
def test_invalid_utf8_in_a_string_raises_decode_error(
    decode: Callable[[bytes], object], raw: bytes
) -> None:
    with pytest.raises(DecodeError):
        decode(raw)


@settings(max_examples=300)
@given(raw=st.binary(max_size=200) | st.binary(max_size=200).map(lambda b: b"{" + b))
def test_arbitrary_bytes_either_decode_to_a_tick_or_raise_decode_error(raw: bytes) -> None:
    try:
        tick = decode_tick(raw)
    except DecodeError:
        return
    assert isinstance(tick, Tick)


@settings(max_examples=300)
@given(
    fmt=st.sampled_from(FORMATS),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_corrupted_tick_bytes_either_decode_to_a_tick_or_raise_decode_error(
    fmt: Format, edits: list[tuple[int, int]]
) -> None:
    raw = bytearray(encode_tick(TICK_FULL, fmt=fmt))
    for at, byte in edits:
        raw[at % len(raw)] = byte
    try:
        tick = decode_tick(bytes(raw))
    except DecodeError:
        return
    assert isinstance(tick, Tick)


def test_update_with_ticks_spliced_in_as_bytes_is_the_same_json_as_encode_update() -> None:
    candle_pairs = [(3, CANDLE)]
    tick_pairs = [(1, TICK), (2, TICK_FULL)]
    raw_pairs = [(seq, encode_tick(t)) for seq, t in tick_pairs]
    expected = encode_update(Update("XAU-USD", tick_pairs, candle_pairs))
    assert encode_update_raw("XAU-USD", raw_pairs, candle_pairs) == expected
