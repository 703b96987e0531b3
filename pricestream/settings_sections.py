"""The settings' sections: one frozen dataclass per TOML table, its defaults and its rules.

A section's ``checks()`` lists ``(key, ok, rule)``: ``pricestream.settings`` refuses the first
that is not ok with a message naming the key, the rule, the value and where it was set. The
values that must parse (durations, symbols, the daily boundary) are checked there too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pricestream.settings_sources import parse_duration_ms
from render.service import DISK_FORMATS, RenderConfig
from stream.contract import METAL_DECIMALS
from stream.contract.resolutions import DAY_MS
from stream.store import DEFAULT_RETENTION_MS
from stream.store.mongo import READ_PREFERENCES
from web.live import LiveConfig

#: one rule of a section: the key, whether its value keeps the rule, and the rule in words
Check = tuple[str, bool, str]


@dataclass(frozen=True, slots=True)
class Server:
    host: str = "127.0.0.1"
    port: int = 8080
    #: seconds between freezes of long-lived objects out of the garbage collector's full
    #: passes (``pricestream.gcpolicy``); 0 leaves the collector alone
    gc_freeze_interval_s: float = 10.0
    #: the longest a request's line and headers may take to arrive (from the connection's
    #: start, or from the first byte of a later request on a kept-alive connection)
    header_timeout_s: float = 10.0
    #: how long an idle connection waits for its next request (longer than a proxy's own)
    keepalive_timeout_s: float = 75.0
    #: open connections from one client address; 0: no limit (behind a proxy, leave it at 0)
    max_connections_per_address: int = 0

    def checks(self) -> list[Check]:
        return [
            ("server.port", 0 <= self.port <= 65_535, "must be 0..65535"),
            ("server.gc_freeze_interval_s", 0 <= self.gc_freeze_interval_s <= 3_600,
             "must be 0..3600 (0: off)"),
            ("server.header_timeout_s", 0.1 <= self.header_timeout_s <= 600, "must be 0.1..600"),
            ("server.keepalive_timeout_s", 0.1 <= self.keepalive_timeout_s <= 3_600,
             "must be 0.1..3600"),
            ("server.max_connections_per_address",
             0 <= self.max_connections_per_address <= 1_000_000,
             "must be 0..1000000 (0: no limit)"),
        ]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Http:
    """Per-client HTTP rate limits and the origins whose pages may call the API (CORS)."""

    rate_limit_per_s: float = 50.0  # per client address; 0 turns the limit off
    rate_limit_burst: int = 200
    rate_limit_clients: int = 100_000  # client buckets kept
    cors_origins: str = ""  # comma-separated, e.g. "https://shop.example.com"; "*" for any
    trust_forwarded_for: bool = False  # behind nginx: the client is X-Forwarded-For's last

    def checks(self) -> list[Check]:
        origins = self.origins
        return [
            ("http.rate_limit_per_s", 0 <= self.rate_limit_per_s <= 1_000_000,
             "must be 0..1000000 (0: no limit)"),
            ("http.rate_limit_burst", 1 <= self.rate_limit_burst <= 1_000_000,
             "must be 1..1000000"),
            ("http.rate_limit_clients", 1 <= self.rate_limit_clients <= 10_000_000,
             "must be 1..10000000"),
            ("http.cors_origins",
             all(o == "*" or o.startswith(("http://", "https://")) for o in origins),
             "must be '*' or origins like https://shop.example.com, comma-separated"),
        ]  # fmt: skip

    @property
    def origins(self) -> tuple[str, ...]:
        return tuple(o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip())


@dataclass(frozen=True, slots=True)
class Storage:
    kind: str = "sqlite"  # or "mongo"
    data_dir: Path = Path("data")  # sqlite: where the file lives
    mongo_uri: str = "mongodb://127.0.0.1:27017"
    mongo_database: str = "pricestream"
    read_preference: str = "primary"  # where reads go: primary, secondaryPreferred, ...
    timeout_ms: int = 5_000  # how long one store call waits for an unreachable server
    max_deadletters: int = 100_000
    tick_archive: str = "off"  # or how long to keep raw ticks: "7d", "12h", ...

    def checks(self) -> list[Check]:
        return [
            ("storage.kind", self.kind in ("sqlite", "mongo"), "must be sqlite or mongo"),
            ("storage.read_preference", self.read_preference in READ_PREFERENCES,
             f"must be one of {', '.join(READ_PREFERENCES)}"),
            ("storage.timeout_ms", 100 <= self.timeout_ms <= 600_000, "must be 100..600000"),
            ("storage.max_deadletters", self.max_deadletters >= 1, "must be >= 1"),
        ]  # fmt: skip

    @property
    def tick_archive_ms(self) -> int | None:
        return None if self.tick_archive == "off" else parse_duration_ms(self.tick_archive)


def _default_partition_map() -> dict[str, int]:
    # murmur2 puts the four metals on partitions 1, 3, 3 and 3 of six: one stream worker of two
    # would get them all.
    return {"XAU-USD": 0, "XAG-USD": 1, "XPT-USD": 2, "XPD-USD": 3}


@dataclass(frozen=True, slots=True)
class Bus:
    kind: str = "memory"  # or "kafka"
    bootstrap: str = "127.0.0.1:9092"
    client_id: str = "pricestream"
    group: str = "stream"  # the stream workers' consumer group
    replication_factor: int = 1
    ticks_topic: str = "ticks"
    ticks_partitions: int = 6
    ticks_retention: str = "7d"
    updates_topic: str = "updates"
    updates_partitions: int = 3
    updates_retention: str = "1d"
    deadletter_topic: str = "deadletter"
    deadletter_partitions: int = 1
    deadletter_retention: str = "30d"
    linger_ms: int = 5
    request_timeout_ms: int = 30_000  # consumers and the admin client: one request's limit
    #: how long a producer keeps retrying a batch while no broker takes it (and how long a send
    #: waits for room meanwhile); past it the delivery fails and the next flush says so
    delivery_timeout_ms: int = 300_000
    session_timeout_ms: int = 10_000  # how soon the group notices a dead stream worker
    #: symbol -> partition number (modulo the topic's partitions) on every keyed topic; other
    #: symbols are placed by murmur2 hash, as the Java client does. A table in TOML; in the
    #: environment "XAU-USD=0, XAG-USD=1". Given, it replaces the default map as a whole.
    partition_map: dict[str, int] = field(default_factory=_default_partition_map)

    def checks(self) -> list[Check]:
        return [
            ("bus.kind", self.kind in ("memory", "kafka"), "must be memory or kafka"),
            ("bus.bootstrap", bool(self.bootstrap.strip()), "must name host:port"),
            ("bus.replication_factor", 1 <= self.replication_factor <= 32, "must be 1..32"),
            ("bus.ticks_partitions", 1 <= self.ticks_partitions <= 10_000, "must be 1..10000"),
            ("bus.updates_partitions", 1 <= self.updates_partitions <= 10_000,
             "must be 1..10000"),
            ("bus.deadletter_partitions", 1 <= self.deadletter_partitions <= 10_000,
             "must be 1..10000"),
            ("bus.linger_ms", 0 <= self.linger_ms <= 10_000, "must be 0..10000"),
            ("bus.request_timeout_ms", 1_000 <= self.request_timeout_ms <= 600_000,
             "must be 1000..600000"),
            ("bus.delivery_timeout_ms", 1_000 <= self.delivery_timeout_ms <= 3_600_000,
             "must be 1000..3600000"),
            ("bus.session_timeout_ms", 1_000 <= self.session_timeout_ms <= 600_000,
             "must be 1000..600000"),
        ]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Stream:
    grace_ms: int = 2_000
    daily_boundary: str = "00:00 UTC"
    flush_interval_ms: int = 100
    max_batch: int = 5_000
    bus_capacity: int = 65_536

    def checks(self) -> list[Check]:
        return [
            ("stream.grace_ms", 0 <= self.grace_ms <= 3_600_000, "must be 0..3600000"),
            ("stream.flush_interval_ms", 1 <= self.flush_interval_ms <= 60_000,
             "must be 1..60000"),
            ("stream.max_batch", 1 <= self.max_batch <= 1_000_000, "must be 1..1000000"),
            ("stream.bus_capacity", self.bus_capacity >= 1, "must be >= 1"),
        ]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Simulator:
    enabled: bool = True
    seed: int = 1
    rate_hz: float = 4.0
    interval_ms: int = 20
    #: days of simulated history on a fresh store; 0: none
    history_days: int = 90

    def checks(self) -> list[Check]:
        return [
            ("simulator.rate_hz", 0 < self.rate_hz <= 100_000, "must be > 0 and <= 100000"),
            ("simulator.interval_ms", 1 <= self.interval_ms <= 10_000, "must be 1..10000"),
            ("simulator.history_days", 0 <= self.history_days <= 3_650,
             "must be 0..3650 (0: no history)"),
        ]  # fmt: skip


_RENDER = RenderConfig()  # the render pool's defaults


@dataclass(frozen=True, slots=True)
class Render:
    enabled: bool = True
    # The pool's own defaults, from RenderConfig; the strings below become its other fields.
    chart_workers: int = _RENDER.chart_workers
    text_workers: int = _RENDER.text_workers
    chart_queue: int = _RENDER.chart_queue
    text_queue: int = _RENDER.text_queue
    max_batch: int = _RENDER.max_batch
    timeout_ms: int = _RENDER.timeout_ms
    retry_after_s: int = _RENDER.retry_after_s
    memory_bytes: int = _RENDER.memory_bytes
    data_bytes: int = _RENDER.data_bytes  # candle arrays kept for rendering, per process
    #: "none" keeps no files (one render node gains nothing from them: see README); "" is
    #: <data_dir>/render-cache; else the directory several render nodes share
    cache_dir: str = "none"
    disk_max_age_s: int = _RENDER.disk_max_age_s
    disk_min_fresh_ms: int = _RENDER.disk_min_fresh_ms
    disk_formats: str = ",".join(_RENDER.disk_formats)  # of png, svg, json and snapshots
    pregenerate: str = ""  # comma-separated: "XAU-USD.png?range=1d, snapshots/XAU-USD.csv"
    pregenerate_interval_ms: int = _RENDER.pregenerate_interval_ms

    def checks(self) -> list[Check]:
        return [
            ("render.chart_workers", 1 <= self.chart_workers <= 64, "must be 1..64"),
            ("render.text_workers", 1 <= self.text_workers <= 64, "must be 1..64"),
            ("render.chart_queue", 0 <= self.chart_queue <= 100_000, "must be 0..100000"),
            ("render.text_queue", 0 <= self.text_queue <= 100_000, "must be 0..100000"),
            ("render.max_batch", 1 <= self.max_batch <= 1_000, "must be 1..1000"),
            ("render.timeout_ms", 10 <= self.timeout_ms <= 600_000, "must be 10..600000"),
            ("render.retry_after_s", 1 <= self.retry_after_s <= 3_600, "must be 1..3600"),
            ("render.memory_bytes", self.memory_bytes >= 0, "must be >= 0"),
            ("render.data_bytes", self.data_bytes >= 0, "must be >= 0"),
            ("render.disk_max_age_s", self.disk_max_age_s >= 1, "must be >= 1"),
            ("render.disk_formats", set(self.disk_format_names) <= set(DISK_FORMATS),
             f"must list some of {', '.join(DISK_FORMATS)}"),
            ("render.pregenerate_interval_ms", self.pregenerate_interval_ms >= 10,
             "must be >= 10"),
        ]  # fmt: skip

    @property
    def disk_format_names(self) -> tuple[str, ...]:
        return tuple(f.strip() for f in self.disk_formats.split(",") if f.strip())

    @property
    def pregenerate_paths(self) -> tuple[str, ...]:
        return tuple(p.strip() for p in self.pregenerate.split(",") if p.strip())


@dataclass(frozen=True, slots=True)
class Live(LiveConfig):
    """The ``[live]`` section: ``web.live.LiveConfig`` itself (its fields and defaults, written
    once), with the checks of its values."""

    def checks(self) -> list[Check]:
        return [
            ("live.history_messages", 0 <= self.history_messages <= 1_000_000,
             "must be 0..1000000"),
            ("live.history_age_ms", self.history_age_ms >= 0, "must be >= 0"),
            ("live.send_buffer_messages", self.send_buffer_messages >= 1, "must be >= 1"),
            ("live.send_buffer_bytes", self.send_buffer_bytes >= 4_096, "must be >= 4096"),
            ("live.stall_timeout_ms", self.stall_timeout_ms >= 100, "must be >= 100"),
            ("live.heartbeat_ms", self.heartbeat_ms >= 100, "must be >= 100"),
            ("live.max_channels", 1 <= self.max_channels <= 10_000, "must be 1..10000"),
            ("live.max_message_bytes", 256 <= self.max_message_bytes <= 16_777_216,
             "must be 256..16777216"),
            ("live.max_channels_per_message", 1 <= self.max_channels_per_message <= 10_000,
             "must be 1..10000"),
            ("live.max_messages_per_s", 0 <= self.max_messages_per_s <= 100_000,
             "must be 0..100000 (0: no limit)"),
            ("live.message_burst", 1 <= self.message_burst <= 100_000, "must be 1..100000"),
            ("live.socket_send_buffer_bytes",
             self.socket_send_buffer_bytes == 0
             or 4_096 <= self.socket_send_buffer_bytes <= 67_108_864,
             "must be 0 (the system's own) or 4096..67108864"),
        ]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Auth:
    # Secrets: kept out of repr, so a logged or printed Settings never shows them.
    api_keys: str = field(default="", repr=False)  # comma-separated
    jwt_secret: str = field(default="", repr=False)  # HS256 tokens are accepted when set
    private_symbols: str = ""  # comma-separated: their channels need credentials
    leeway_s: int = 30

    def checks(self) -> list[Check]:
        return [
            ("auth.leeway_s", 0 <= self.leeway_s <= 3_600, "must be 0..3600"),
            ("auth.jwt_secret", self.jwt_secret == "" or len(self.jwt_secret) >= 32,
             "must be at least 32 characters (or empty: no tokens)"),
        ]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Composite:
    enabled: bool = True
    vendor: str = "composite"
    rule: str = "median"
    priority: str = ""  # vendor names, comma-separated, for rule "primary"

    def checks(self) -> list[Check]:
        return [
            ("composite.rule", self.rule in ("median", "primary"), "must be median or primary"),
            ("composite.vendor", bool(self.vendor), "must not be empty"),
        ]


@dataclass(frozen=True, slots=True)
class Log:
    level: str = "info"
    format: str = "text"
    access: bool = True  # one web.access line per HTTP request (about 35 µs each)

    def checks(self) -> list[Check]:
        return [
            ("log.level", self.level.lower() in ("debug", "info", "warning", "error"),
             "must be debug, info, warning or error"),
            ("log.format", self.format in ("text", "json"), "must be text or json"),
        ]  # fmt: skip


def default_retention() -> dict[str, str]:
    out = {}
    for res, ms in DEFAULT_RETENTION_MS.items():
        out[res] = "forever" if ms is None else f"{ms // DAY_MS}d"
    return out


def _default_decimals() -> dict[str, int]:
    return dict(METAL_DECIMALS)


@dataclass(frozen=True, slots=True)
class Prices:
    """The decimals each symbol's prices are printed with on output (its tick size); a symbol
    not listed gets ``default_decimals``."""

    decimals: dict[str, int] = field(default_factory=_default_decimals)
    default_decimals: int = 4

    def checks(self) -> list[Check]:
        return [
            ("prices.default_decimals", 0 <= self.default_decimals <= 10, "must be 0..10"),
            ("prices.decimals", all(0 <= d <= 10 for d in self.decimals.values()),
             "must give each symbol 0..10 decimals"),
        ]  # fmt: skip
