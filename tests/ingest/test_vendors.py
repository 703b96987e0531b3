"""Vendor profiles: each pure parser against its documented message shapes, then fuzzed.

The fuzz tests run 150 examples each; `FUZZ_EXAMPLES=3000 pytest tests/ingest/test_vendors.py`
searches harder (about two minutes).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.vendors import PROFILES, Kind, Parsed
from ingest.vendors.base import ParseFn, iso_ms
from ingest.vendors.generic import FieldMap, make_profile
from ingest.vendors.tickfile import csv_header, make_csv_parse, parse_jsonl
from tests.ingest import messages as m

T = 1_795_000_000_123  # 2026-11-18T...Z
GENERIC = FieldMap(
    fields={"symbol": "sym", "bid": "q.b", "ask": "q.a", "ts": "t", "seq": "n"},
    records="data",
    heartbeat_field="type",
    heartbeat_value="hb",
)
CSV = make_csv_parse(csv_header(b"symbol,ts_ms,bid,ask,price,seq"))


def parse(profile: str) -> ParseFn:
    if profile == "generic":
        return make_profile(GENERIC).parse
    return PROFILES[profile].parse


def quote(parsed: Parsed) -> tuple[object, ...]:
    assert parsed.kind is Kind.DATA, parsed
    [q] = parsed.quotes
    return (q.symbol, q.bid, q.ask, q.price, q.ts_ms, q.seq)


@pytest.mark.parametrize(
    ("profile", "raw", "expected"),
    [
        ("coinbase", m.coinbase_ticker("BTC-USD", 100.5, 100.7, T, 77),
         ("BTC-USD", 100.5, 100.7, 100.6, T, 77)),
        ("binance", m.binance_book("BNBUSDT", 25.3519, 25.3652, 400900217),
         ("BNBUSDT", 25.3519, 25.3652, None, None, 400900217)),
        ("binance", m.binance_combined("BTCUSDT", 9.5, 9.75, 5),
         ("BTCUSDT", 9.5, 9.75, None, None, 5)),
        ("oanda", m.oanda_price("XAU_USD", 4050.1, 4050.5, T),
         ("XAU_USD", 4050.1, 4050.5, None, T, None)),
        ("twelvedata", m.twelvedata_price("XAU/USD", 4050.0, T),
         ("XAU/USD", 4049.85, 4050.15, 4050.0, T // 1000 * 1000, None)),
        ("gold_api", m.gold_api_price("XAU", 4051.25, T),
         ("XAU", None, None, 4051.25, T, None)),
        ("generic", b'{"type":"px","data":[{"sym":"AU","q":{"b":"1.5","a":1.75},"t":5,"n":9}]}',
         ("AU", 1.5, 1.75, None, 5, 9)),
    ],
)  # fmt: skip
def test_each_profile_reads_its_documented_price_message(
    profile: str, raw: bytes, expected: tuple[object, ...]
) -> None:
    assert quote(parse(profile)(raw)) == expected


def test_metals_api_quotes_the_inverse_of_each_rate_and_skips_the_base() -> None:
    parsed = parse("metals_api")(m.metals_api_latest({"XAU": 0.00025, "XAG": 0.02}, T))
    assert {q.symbol: q.price for q in parsed.quotes} == {"XAU": 4000.0, "XAG": 50.0}
    assert {q.ts_ms for q in parsed.quotes} == {T // 1000 * 1000}


@pytest.mark.parametrize(
    ("profile", "raw", "kind", "detail"),
    [
        ("coinbase", m.coinbase_heartbeat(T), Kind.HEARTBEAT, ""),
        ("coinbase", m.COINBASE_SUBSCRIPTIONS, Kind.STATUS, "subscribed"),
        ("coinbase", m.COINBASE_ERROR, Kind.ERROR, "Failed to subscribe"),
        ("coinbase", b'{"type":"l2update"}', Kind.REJECT, "unknown message"),
        ("coinbase", b'{"type":"ticker","product_id":"BTC-USD","best_bid":"1","best_ask":"2"}',
         Kind.REJECT, "missing field: price"),
        ("coinbase", b'{"type":"ticker","product_id":"BTC-USD","price":"x","best_bid":"1",'
         b'"best_ask":"2"}', Kind.REJECT, "bad field: price"),
        ("binance", m.BINANCE_ACK, Kind.STATUS, "acknowledged"),
        ("binance", m.BINANCE_ERROR, Kind.ERROR, "Invalid request"),
        ("binance", b'{"code":-1121,"msg":"Invalid symbol."}', Kind.ERROR, "Invalid symbol"),
        ("binance", b'{"s":"BTCUSDT","b":"1"}', Kind.REJECT, "missing field: a"),
        ("oanda", m.oanda_heartbeat(T), Kind.HEARTBEAT, ""),
        ("oanda", m.OANDA_ERROR, Kind.ERROR, "accountID"),
        ("oanda", b'{"type":"PRICE","instrument":"XAU_USD","time":"2026-13-01T00:00:00Z",'
         b'"bids":[{"price":"1"}],"asks":[{"price":"2"}]}', Kind.REJECT, "bad field: time"),
        ("twelvedata", m.TWELVEDATA_SUBSCRIBED, Kind.STATUS, "XAU/USD"),
        ("twelvedata", m.TWELVEDATA_FAILED, Kind.ERROR, "XYZ/USD"),
        ("twelvedata", m.TWELVEDATA_HEARTBEAT, Kind.HEARTBEAT, ""),
        ("twelvedata", m.TWELVEDATA_ERROR, Kind.ERROR, "apikey is invalid"),
        ("gold_api", b'{"error":"Symbol not found"}', Kind.ERROR, "Symbol not found"),
        ("gold_api", b'{"symbol":"XAU"}', Kind.REJECT, "missing field: price"),
        ("metals_api", m.METALS_API_ERROR, Kind.ERROR, "valid API Access Key"),
        ("metals_api", b'{"success":true,"rates":{"XAU":0}}', Kind.REJECT, "non-positive rate"),
        ("metals_api", b'{"success":true}', Kind.REJECT, "missing field: rates"),
        ("generic", b'{"type":"hb"}', Kind.HEARTBEAT, ""),
        ("generic", b'{"data":[{"sym":"AU","q":{"b":1}}]}', Kind.REJECT, "missing field"),
        ("generic", b'{"data":[{"sym":"AU","q":{"b":1,"a":2},"n":1.5}]}', Kind.REJECT,
         "bad field: n"),
        ("coinbase", b"\xff\xfe", Kind.REJECT, "unparsable"),
        ("binance", b"[1,2]", Kind.REJECT, "unparsable"),
        ("oanda", b"", Kind.REJECT, "unparsable"),
    ],
)  # fmt: skip
def test_heartbeats_statuses_errors_and_bad_messages_are_told_apart(
    profile: str, raw: bytes, kind: Kind, detail: str
) -> None:
    parsed = parse(profile)(raw)
    assert parsed.kind is kind, parsed
    assert detail in parsed.detail


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("2016-09-20T15:05:47.960449532Z", 1_474_383_947_960),
        ("2016-09-20T17:05:47.5+02:00", 1_474_383_947_500),
        ("2016-09-20 15:05:47Z", 1_474_383_947_000),
    ],
)
def test_rfc3339_times_with_nanoseconds_and_offsets(text: str, ms: int) -> None:
    assert iso_ms(text, "time") == ms


def test_replay_lines_in_json_and_csv_read_the_same() -> None:
    a = parse_jsonl(b'{"symbol":"XAU-USD","ts_ms":5,"bid":1.5,"ask":1.75,"price":1.6,"seq":3}')
    b = CSV(b"XAU-USD,5,1.5,1.75,1.6,3")
    assert quote(a) == quote(b) == ("XAU-USD", 1.5, 1.75, 1.6, 5, 3)
    assert "missing field: price" in CSV(b"XAU-USD,5,,,,").detail
    assert "columns" in CSV(b"XAU-USD,5").detail
    with pytest.raises(ValueError, match="symbol and ts_ms"):
        csv_header(b"a,b,c")


# --- fuzzing: no input makes a parser raise; it returns a Parsed whatever it gets ------------

VALID: dict[str, list[bytes]] = {
    "coinbase": [m.coinbase_ticker("BTC-USD", 1.0, 2.0, T, 1), m.coinbase_heartbeat(T),
                 m.COINBASE_SUBSCRIPTIONS, m.COINBASE_ERROR],
    "binance": [m.binance_book("A", 1.0, 2.0, 1), m.binance_combined("A", 1, 2, 1),
                m.BINANCE_ACK, m.BINANCE_ERROR],
    "oanda": [m.oanda_price("XAU_USD", 1.0, 2.0, T), m.oanda_heartbeat(T), m.OANDA_ERROR],
    "twelvedata": [m.twelvedata_price("XAU/USD", 2.0, T), m.TWELVEDATA_SUBSCRIBED,
                   m.TWELVEDATA_FAILED, m.TWELVEDATA_HEARTBEAT, m.TWELVEDATA_ERROR],
    "gold_api": [m.gold_api_price("XAU", 2.0, T)],
    "metals_api": [m.metals_api_latest({"XAU": 0.5}, T), m.METALS_API_ERROR],
    "generic": [b'{"type":"x","data":[{"sym":"AU","q":{"b":1,"a":2},"t":5,"n":9}]}'],
    "jsonl": [b'{"symbol":"XAU-USD","ts_ms":5,"bid":1.5,"ask":1.75,"price":1.6,"seq":3}'],
    "csv": [b"XAU-USD,5,1.5,1.75,1.6,3"],
}  # fmt: skip
PARSERS: dict[str, Callable[[bytes], Parsed]] = {
    **{name: parse(name) for name in (*PROFILES, "generic")},
    "jsonl": parse_jsonl,
    "csv": CSV,
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=30) | st.sampled_from(["1e400", "nan", "-1", "2026-11-21T00:00:00Z"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)  # fmt: skip


def _replace(value: object, path: list[int], new: object) -> object:
    """``value`` with the node chosen by ``path`` (indices into its containers) replaced."""
    if not path or not isinstance(value, dict | list) or not value:
        return new
    if isinstance(value, dict):
        keys = list(value)
        k = keys[path[0] % len(keys)]
        return {**value, k: _replace(value[k], path[1:], new)}
    i = path[0] % len(value)
    return [*value[:i], _replace(value[i], path[1:], new), *value[i + 1 :]]


def check_total(fn: Callable[[bytes], Parsed], raw: bytes) -> None:
    parsed = fn(raw)  # must not raise
    assert isinstance(parsed, Parsed)
    for q in parsed.quotes:
        assert isinstance(q.symbol, str)
        for value in (q.bid, q.ask, q.price, q.size):
            assert value is None or isinstance(value, float)
        assert q.ts_ms is None or (isinstance(q.ts_ms, int) and q.ts_ms >= 0)
    if parsed.kind is Kind.REJECT:
        assert parsed.detail


FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.mark.parametrize("name", sorted(PARSERS))
@FUZZ
@given(raw=st.binary(max_size=300))
def test_fuzz_arbitrary_bytes_never_raise(name: str, raw: bytes) -> None:
    check_total(PARSERS[name], raw)


@pytest.mark.parametrize("name", sorted(PARSERS))
@FUZZ
@given(value=json_values)
def test_fuzz_arbitrary_json_never_raises(name: str, value: object) -> None:
    check_total(PARSERS[name], json.dumps(value).encode())


@pytest.mark.parametrize("name", sorted(PARSERS))
@FUZZ
@given(data=st.data(), path=st.lists(st.integers(0, 50), max_size=4), new=json_values)
def test_fuzz_documented_messages_with_one_field_mangled_never_raise(
    name: str, data: st.DataObject, path: list[int], new: object
) -> None:
    raw = data.draw(st.sampled_from(VALID[name]))
    if name == "csv":
        cells = raw.split(b",")
        i = path[0] % len(cells) if path else 0
        cells[i] = json.dumps(new).encode()
        check_total(PARSERS[name], b",".join(cells))
        return
    check_total(PARSERS[name], json.dumps(_replace(orjson.loads(raw), path, new)).encode())


def test_fuzzing_reaches_prices_not_just_rejects() -> None:
    """The valid corpus itself parses to data, so mangling it exercises the price paths."""
    for name, raws in VALID.items():
        kinds = {PARSERS[name](raw).kind for raw in raws}
        assert Kind.REJECT not in kinds, name
    assert math.isclose(quote(PARSERS["csv"](VALID["csv"][0]))[1], 1.5)  # type: ignore[arg-type]


def test_a_replayed_time_before_1970_is_a_reject_not_a_tick() -> None:
    """Found by the fuzzer: a negative ``ts_ms`` used to pass as a time."""
    parsed = parse_jsonl(b'{"symbol":"XAU-USD","ts_ms":-1,"price":1}')
    assert parsed.kind is Kind.REJECT
    assert parsed.detail.startswith("bad field: ts_ms")
