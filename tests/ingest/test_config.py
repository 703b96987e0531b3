"""``[[vendors]]`` tables: every kind loads, and a bad table is refused naming its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pricestream.settings import ConfigError, Settings

EXAMPLE = """
[composite]
rule = "primary"
priority = "oanda, twelvedata"

[[vendors]]
name = "coinbase"
kind = "websocket"
profile = "coinbase"
url = "wss://ws-feed.exchange.coinbase.com"
symbols = { "BTC-USD" = "BTC-USD" }

[[vendors]]
name = "gold"
kind = "http_poll"
profile = "gold_api"
url = "https://api.gold-api.com"
symbols = { XAU = "XAU-USD" }
interval_ms = 5000

[[vendors]]
name = "oanda"
kind = "http_stream"
profile = "oanda"
url = "https://stream-fxpractice.oanda.com/v3/accounts/101-001-1-001/pricing/stream"
symbols = { XAU_USD = "XAU-USD" }
headers = { Authorization = "Bearer token" }

[[vendors]]
name = "mine"
kind = "websocket"
profile = "generic"
url = "ws://127.0.0.1:9000/"
symbols = { AU = "XAU-USD" }
fields = { symbol = "s", price = "p", ts = "t" }
ts_unit = "s"

[[vendors]]
name = "history"
kind = "replay"
path = "ticks.csv"
speed = 0

[[vendors]]
name = "demo"
kind = "simulator"
rate_hz = 2.0
"""


def load(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "p.toml"
    path.write_text(text)
    return Settings.load(path, {})


def test_every_kind_loads_with_its_own_keys(tmp_path: Path) -> None:
    s = load(tmp_path, EXAMPLE)
    assert [(v.name, v.kind) for v in s.collectors] == [
        ("coinbase", "websocket"), ("gold", "http_poll"), ("oanda", "http_stream"),
        ("mine", "websocket"), ("history", "replay"), ("demo", "simulator"),
    ]  # fmt: skip
    gold, oanda, mine, history = s.vendors[1], s.vendors[2], s.vendors[3], s.vendors[4]
    assert (gold.interval_ms, gold.stale_after_ms) == (5000, 15_000)  # 3 polls by default
    assert oanda.headers == {"Authorization": "Bearer token"}
    assert mine.make_profile().parse(b'{"s":"AU","p":2.5,"t":7}').quotes[0].ts_ms == 7000
    assert (history.speed, history.max_age_ms) == (0.0, 0)  # history has no age limit
    assert s.composite_config.priority == ("oanda", "twelvedata")


def test_without_vendors_the_simulator_runs_unless_disabled(tmp_path: Path) -> None:
    assert [v.kind for v in Settings.load(None, {}).collectors] == ["simulator"]
    off = Settings.load(None, {}, {"simulator": {"enabled": False}})
    assert off.collectors == ()


BASE = '[[vendors]]\nname = "a"\nkind = "http_poll"\nprofile = "gold_api"\nurl = "http://x"\n'
BASE += 'symbols = { XAU = "XAU-USD" }\n'


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ("interval_ms = 'fast'\n", "vendors[0].interval_ms: must be an integer"),
        ("interval_ms = 0\n", "vendors[0].interval_ms: must be 1..3600000"),
        ("ping_interval_ms = 5\n", "vendors[0].ping_interval_ms: not a key of kind 'http_poll'"),
        ("fields = {}\n", "vendors[0].fields: not a key of kind 'http_poll' with this profile"),
        ("stale_after_ms = 500\n", "vendors[0].stale_after_ms: must be longer than interval_ms"),
        ('[[vendors]]\nname = "a"\nkind = "simulator"\n', "vendors[1].name: 'a' is used twice"),
        ('[[vendors]]\nname = "b"\nkind = "ftp"\n', "vendors[1].kind: must be one of"),
        ('[[vendors]]\nname = "b"\nkind = "replay"\n', "vendors[1].path: a replay needs"),
        ('[[vendors]]\nname = "b"\nkind = "websocket"\nprofile = "gold_api"\nurl = "ws://x"\n'
         'symbols = { XAU = "XAU-USD" }\n', "vendors[1].kind: profile 'gold_api' speaks http_poll"),
        ('[[vendors]]\nname = "b"\nkind = "websocket"\nprofile = "coinbase"\nurl = "http://x"\n'
         'symbols = { A = "A-B" }\n', "vendors[1].url: must start with ws:// or wss://"),
        ('[[vendors]]\nname = "b"\nkind = "websocket"\nprofile = "coinbase"\nurl = "ws://x"\n',
         "vendors[1].symbols: map at least one"),
        ('[[vendors]]\nname = "b"\nkind = "websocket"\nprofile = "kraken"\nurl = "ws://x"\n'
         'symbols = { A = "A-B" }\n', "vendors[1].profile: must be one of coinbase"),
        ('[[vendors]]\nname = "b"\nkind = "websocket"\nprofile = "coinbase"\nurl = "ws://x"\n'
         'symbols = { A = "gold" }\n', "vendors[1].symbols: symbol 'gold'"),
        ('[[vendors]]\nname = "b"\nkind = "websocket"\nprofile = "generic"\nurl = "ws://x"\n'
         'symbols = { A = "A-B" }\nfields = { symbol = "s" }\n',
         "vendors[1].fields: map 'price', or both 'bid' and 'ask'"),
        ("[composite]\nrule = 'mean'\n", "composite.rule must be median or primary"),
    ],
)  # fmt: skip
def test_a_bad_vendor_table_is_refused_naming_the_key(
    tmp_path: Path, extra: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, BASE + extra)
    assert fragment in str(err.value)


def test_vendors_must_be_an_array_of_tables(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[\[vendors\]\] tables"):
        load(tmp_path, "[vendors]\nname = 'a'\n")


def test_replay_from_the_command_line_replaces_the_vendors(tmp_path: Path) -> None:
    ticks = tmp_path / "t.jsonl"
    ticks.write_text("")
    s = load(tmp_path, EXAMPLE).replay(ticks, speed=0)
    assert [(v.kind, v.path, v.speed) for v in s.collectors] == [("replay", ticks, 0.0)]
    with pytest.raises(ConfigError, match="no such file"):
        s.replay(tmp_path / "missing.csv", speed=0)
