"""Settings: defaults, TOML, environment and flags, with errors that name the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pricestream.roles import kafka_options
from pricestream.settings import (
    ConfigError,
    Settings,
    auth_config,
    http_options,
    live_config,
    parse_duration_ms,
    render_config,
    server_limits,
)
from stream.contract import DailyBoundary
from web.app import ServerLimits


def test_defaults_need_no_file_and_no_environment() -> None:
    s = Settings.load(None, {})
    assert (s.server.host, s.server.port, s.storage.data_dir) == ("127.0.0.1", 8080, Path("data"))
    assert s.boundary == DailyBoundary(0, 0, "UTC")
    assert s.retention_ms["1d"] is None


def test_file_then_environment_then_flags_each_override_the_one_before(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        '[server]\nport = 9000\nhost = "0.0.0.0"\n'
        '[stream]\ndaily_boundary = "17:00 America/New_York"\n'
        '[retention]\n"1s" = "12h"\n'
    )
    s = Settings.load(
        path, {"PRICESTREAM_SERVER_PORT": "9100", "HOME": "/x"}, {"server": {"host": "::1"}}
    )
    assert (s.server.host, s.server.port) == ("::1", 9100)
    assert s.boundary == DailyBoundary(17, 0, "America/New_York")
    assert s.retention_ms["1s"] == 12 * 3_600_000


@pytest.mark.parametrize(
    ("toml", "environ", "fragment"),
    [
        ("[server]\nprot = 1\n", {}, "unknown key server.prot"),
        ("[sever]\nport = 1\n", {}, "unknown section [sever]"),
        ("[server]\nport = 'x'\n", {}, "server.port"),
        ("[server]\nport = 70000\n", {}, "server.port must be 0..65535"),
        ("", {"PRICESTREAM_SIMULATOR_RATE_HZ": "fast"}, "PRICESTREAM_SIMULATOR_RATE_HZ"),
        ("", {"PRICESTREAM_NOPE": "1"}, "names no section"),
        ("[stream]\ndaily_boundary = '17:00 Mars/Olympus'\n", {}, "stream.daily_boundary"),
        ("[retention]\n'1s' = 'a while'\n", {}, "retention.1s"),
        ("[retention]\n'2s' = '1d'\n", {}, "retention.2s"),
        ("[log]\nlevel = 'loud'\n", {}, "log.level"),
        ("server = 1\n", {}, "must be a [table]"),
        ("[server\n", {}, "not valid TOML"),
        ("", {"PRICESTREAM_STORAGE_TICK_ARCHIVE": "forever"}, "storage.tick_archive: the archive"),
        ("", {"PRICESTREAM_STORAGE_KIND": "postgres"}, "storage.kind must be sqlite or mongo"),
        ("", {"PRICESTREAM_BUS_KIND": "redis"}, "bus.kind must be memory or kafka"),
        ("", {"PRICESTREAM_STORAGE_READ_PREFERENCE": "any"}, "storage.read_preference"),
        ("", {"PRICESTREAM_BUS_TICKS_RETENTION": "1w"}, "bus.ticks_retention"),
        ("[bus.partition_map]\ngold = 0\n", {},
         "bus.partition_map: symbol 'gold' is not of the form XAU-USD"),
        ("[bus.partition_map]\nXAU-USD = -1\n", {},
         "bus.partition_map.XAU-USD must be a partition number >= 0, got -1"),
        ("[bus.partition_map]\nXAU-USD = 'first'\n", {},
         "bus.partition_map.XAU-USD (from "),
        ("[bus.partition_map]\nXAU-USD = 1.5\n", {}, "bus.partition_map.XAU-USD (from "),
        ("[bus]\npartition_map = 3\n", {}, "bus.partition_map (from "),
        ("", {"PRICESTREAM_BUS_PARTITION_MAP": "XAU-USD=0, XAG-USD"},
         "'XAG-USD' is not like XAU-USD=0"),
        ("", {"PRICESTREAM_BUS_PARTITION_MAP": "XAU-USD=zero"},
         "bus.partition_map.XAU-USD (from environment variable PRICESTREAM_BUS_PARTITION_MAP)"),
        ("", {"PRICESTREAM_BUS_DELIVERY_TIMEOUT_MS": "500"},
         "bus.delivery_timeout_ms must be 1000..3600000"),
    ],
)  # fmt: skip
def test_a_bad_setting_is_refused_naming_it(
    tmp_path: Path, toml: str, environ: dict[str, str], fragment: str
) -> None:
    path = tmp_path / "p.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=None) as err:
        Settings.load(path, environ)
    assert fragment in str(err.value)


def test_the_partition_map_pins_the_metals_unless_a_file_or_the_environment_replaces_it(
    tmp_path: Path,
) -> None:
    metals = {"XAU-USD": 0, "XAG-USD": 1, "XPT-USD": 2, "XPD-USD": 3}
    default = Settings.load(None, {})
    assert default.bus.partition_map == metals
    assert kafka_options(default).partition_map == metals
    path = tmp_path / "p.toml"
    path.write_text("[bus.partition_map]\nXAU-USD = 5\nEUR-USD = 7\n")
    assert Settings.load(path, {}).bus.partition_map == {"XAU-USD": 5, "EUR-USD": 7}
    env = {"PRICESTREAM_BUS_PARTITION_MAP": " XAG-USD=2, XAU-USD = 4,"}
    assert Settings.load(path, env).bus.partition_map == {"XAG-USD": 2, "XAU-USD": 4}
    assert Settings.load(None, {"PRICESTREAM_BUS_PARTITION_MAP": ""}).bus.partition_map == {}
    off = Settings.load(None, {}, {"bus": {"partition_map": {}}})
    assert kafka_options(off).partition_map == {}


def test_the_producers_delivery_timeout_is_its_own_setting() -> None:
    opts = kafka_options(Settings.load(None, {}))
    assert (opts.delivery_timeout_ms, opts.request_timeout_ms) == (300_000, 30_000)
    env = {"PRICESTREAM_BUS_DELIVERY_TIMEOUT_MS": "60_000"}
    opts = kafka_options(Settings.load(None, env))
    assert (opts.delivery_timeout_ms, opts.request_timeout_ms) == (60_000, 30_000)


@pytest.mark.parametrize(
    ("text", "ms"),
    [("500ms", 500), ("10s", 10_000), ("30m", 1_800_000), ("12h", 43_200_000), ("2d", 172_800_000),
     ("forever", None)],
)  # fmt: skip
def test_durations(text: str, ms: int | None) -> None:
    assert parse_duration_ms(text) == ms


def test_a_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        Settings.load(tmp_path / "missing.toml", {})


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"chart_workers": 0}, "render.chart_workers must be 1..64"),
        ({"timeout_ms": 1}, "render.timeout_ms must be 10..600000"),
        ({"pregenerate": "XAU-USD.png?range=2h"}, "render.pregenerate: 'XAU-USD.png?range=2h'"),
    ],
)
def test_render_settings_are_checked(overrides: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        Settings.load(None, {}, {"render": overrides})


def test_render_settings_become_the_pool_configuration(tmp_path: Path) -> None:
    s = Settings.load(
        None,
        {"PRICESTREAM_RENDER_PREGENERATE": "XAU-USD.png, snapshots/XAG-USD.csv?range=1w"},
        {"storage": {"data_dir": str(tmp_path)}, "render": {"chart_workers": 3}},
    )
    config = render_config(s)
    assert config is not None
    assert config.chart_workers == 3
    assert config.cache_dir is None  # by default: no shared directory
    shared = render_config(Settings.load(None, {"PRICESTREAM_RENDER_CACHE_DIR": ""},
                                         {"storage": {"data_dir": str(tmp_path)}}))  # fmt: skip
    assert shared is not None
    assert shared.cache_dir == tmp_path / "render-cache"
    assert config.pregenerate == ("XAU-USD.png", "snapshots/XAG-USD.csv?range=1w")
    off = Settings.load(None, {}, {"render": {"enabled": False}})
    assert render_config(off) is None


def test_live_and_auth_sections_reach_the_web_role() -> None:
    env = {
        "PRICESTREAM_LIVE_HISTORY_MESSAGES": "5",
        "PRICESTREAM_LIVE_STALL_TIMEOUT_MS": "2000",
        "PRICESTREAM_LIVE_MAX_MESSAGES_PER_S": "2.5",
        "PRICESTREAM_LIVE_SOCKET_SEND_BUFFER_BYTES": "0",
        "PRICESTREAM_AUTH_API_KEYS": "k-one, k-two",
        "PRICESTREAM_AUTH_JWT_SECRET": "z" * 32,
        "PRICESTREAM_AUTH_PRIVATE_SYMBOLS": "XPD-USD",
    }
    s = Settings.load(None, env)
    live = live_config(s)
    assert (live.history_messages, live.stall_timeout_ms, live.max_channels) == (5, 2000, 64)
    limits = (live.max_messages_per_s, live.message_burst, live.max_channels_per_message)
    assert limits == (2.5, 40, 100)
    assert live.socket_send_buffer_bytes == 0
    auth = auth_config(s)
    assert auth.api_keys == ("k-one", "k-two")
    assert auth.private_symbols == frozenset({"XPD-USD"})
    for shown in (repr(s), repr(s.auth), repr(auth)):  # what a log line or traceback would show
        assert "k-one" not in shown
        assert "z" * 32 not in shown


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"PRICESTREAM_AUTH_JWT_SECRET": "short"}, "auth.jwt_secret must be at least 32"),
        ({"PRICESTREAM_AUTH_PRIVATE_SYMBOLS": "gold"}, "auth.private_symbols"),
        ({"PRICESTREAM_LIVE_MAX_CHANNELS": "0"}, "live.max_channels must be 1..10000"),
        ({"PRICESTREAM_LIVE_SEND_BUFFER_BYTES": "10"}, "live.send_buffer_bytes must be >= 4096"),
        (
            {"PRICESTREAM_LIVE_MAX_CHANNELS_PER_MESSAGE": "0"},
            "live.max_channels_per_message must be 1..10000",
        ),
        (
            {"PRICESTREAM_LIVE_MAX_MESSAGES_PER_S": "-1"},
            "live.max_messages_per_s must be 0..100000",
        ),
        ({"PRICESTREAM_LIVE_MESSAGE_BURST": "0"}, "live.message_burst must be 1..100000"),
        (
            {"PRICESTREAM_LIVE_SOCKET_SEND_BUFFER_BYTES": "100"},
            "live.socket_send_buffer_bytes must be 0 (the system's own) or 4096..67108864",
        ),
    ],
)
def test_bad_live_or_auth_settings_are_refused_by_name(env: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(words)):
        Settings.load(None, env)


def test_http_settings_become_the_apps_options() -> None:
    env = {
        "PRICESTREAM_HTTP_CORS_ORIGINS": "https://shop.example.com/, http://localhost:3000",
        "PRICESTREAM_HTTP_RATE_LIMIT_PER_S": "2.5",
        "PRICESTREAM_HTTP_TRUST_FORWARDED_FOR": "yes",
    }
    options = http_options(Settings.load(None, env))
    assert options.cors_origins == ("https://shop.example.com", "http://localhost:3000")
    assert options.rate_limit_per_s == 2.5
    assert options.rate_limit_burst == 200
    assert options.trust_forwarded_for


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"cors_origins": "shop.example.com"}, "http.cors_origins must be '*' or origins"),
        ({"rate_limit_per_s": -1}, "http.rate_limit_per_s must be 0..1000000"),
        ({"rate_limit_burst": 0}, "http.rate_limit_burst must be 1..1000000"),
    ],
)
def test_bad_http_settings_are_refused(overrides: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        Settings.load(None, {}, {"http": overrides})


def test_server_connection_limits_reach_the_site() -> None:
    assert server_limits(Settings.load(None, {})) == ServerLimits(
        header_timeout_s=10.0, keepalive_timeout_s=75.0, max_connections_per_address=0
    )
    env = {
        "PRICESTREAM_SERVER_HEADER_TIMEOUT_S": "2.5",
        "PRICESTREAM_SERVER_KEEPALIVE_TIMEOUT_S": "30",
        "PRICESTREAM_SERVER_MAX_CONNECTIONS_PER_ADDRESS": "64",
    }
    limits = server_limits(Settings.load(None, env))
    assert (limits.header_timeout_s, limits.keepalive_timeout_s) == (2.5, 30.0)
    assert limits.max_connections_per_address == 64


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"header_timeout_s": 0}, "server.header_timeout_s must be 0.1..600"),
        ({"header_timeout_s": 601}, "server.header_timeout_s must be 0.1..600"),
        ({"keepalive_timeout_s": 0}, "server.keepalive_timeout_s must be 0.1..3600"),
        ({"max_connections_per_address": -1}, "server.max_connections_per_address must be 0.."),
        ({"max_connections_per_address": "many"}, "server.max_connections_per_address (from "),
    ],
)
def test_bad_server_limits_are_refused(overrides: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        Settings.load(None, {}, {"server": overrides})
