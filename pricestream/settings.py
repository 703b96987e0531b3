"""Settings: read once at the entry point from a TOML file and an environment mapping.

Every key has a default; a TOML file overrides them and ``PRICESTREAM_<SECTION>_<KEY>``
variables override the file (``PRICESTREAM_SERVER_PORT=9000``). Anything unknown or of the wrong
type is refused at start with a message that names the key.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, cast, get_args, get_origin, get_type_hints

from ingest.config import CompositeConfig, VendorConfig, VendorConfigError, parse_vendors
from render.service import DISK_FORMATS, RenderConfig
from render.spec import parse_path
from stream.contract import METAL_DECIMALS, RESOLUTIONS, DailyBoundary, Precision, check_symbol
from stream.contract.resolutions import DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS
from stream.store import DEFAULT_RETENTION_MS
from stream.store.mongo import READ_PREFERENCES
from web.app import ServerLimits
from web.auth import AuthConfig
from web.live import LiveConfig
from web.middleware import HttpOptions

ENV_PREFIX = "PRICESTREAM_"


class ConfigError(ValueError):
    """A setting that is unknown, of the wrong type or out of range; the message names it."""


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

    def checks(self) -> list[tuple[str, bool, str]]:
        return [
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

    def checks(self) -> list[tuple[str, bool, str]]:
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


@dataclass(frozen=True, slots=True)
class Stream:
    grace_ms: int = 2_000
    daily_boundary: str = "00:00 UTC"
    flush_interval_ms: int = 100
    max_batch: int = 5_000
    bus_capacity: int = 65_536


@dataclass(frozen=True, slots=True)
class Simulator:
    enabled: bool = True
    seed: int = 1
    rate_hz: float = 4.0
    interval_ms: int = 20
    #: days of simulated history on a fresh store; 0: none
    history_days: int = 90


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

    def checks(self) -> list[tuple[str, bool, str]]:
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

    def checks(self) -> list[tuple[str, bool, str]]:
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


@dataclass(frozen=True, slots=True)
class Composite:
    enabled: bool = True
    vendor: str = "composite"
    rule: str = "median"
    priority: str = ""  # vendor names, comma-separated, for rule "primary"


@dataclass(frozen=True, slots=True)
class Log:
    level: str = "info"
    format: str = "text"
    access: bool = True  # one web.access line per HTTP request (about 35 µs each)


def _default_retention() -> dict[str, str]:
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

    def checks(self) -> list[tuple[str, bool, str]]:
        return [
            ("prices.default_decimals", 0 <= self.default_decimals <= 10, "must be 0..10"),
            ("prices.decimals", all(0 <= d <= 10 for d in self.decimals.values()),
             "must give each symbol 0..10 decimals"),
        ]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Settings:
    server: Server = field(default_factory=Server)
    http: Http = field(default_factory=Http)
    storage: Storage = field(default_factory=Storage)
    bus: Bus = field(default_factory=Bus)
    stream: Stream = field(default_factory=Stream)
    simulator: Simulator = field(default_factory=Simulator)
    log: Log = field(default_factory=Log)
    render: Render = field(default_factory=Render)
    live: Live = field(default_factory=Live)
    auth: Auth = field(default_factory=Auth)
    retention: dict[str, str] = field(default_factory=_default_retention)
    composite: Composite = field(default_factory=Composite)
    prices: Prices = field(default_factory=Prices)
    vendors: tuple[VendorConfig, ...] = ()

    @property
    def collectors(self) -> tuple[VendorConfig, ...]:
        """The vendors to run: those configured, else the simulator unless it is disabled."""
        if self.vendors:
            return self.vendors
        if not self.simulator.enabled:
            return ()
        sim = self.simulator
        return (
            VendorConfig(
                "simulator", "simulator", seed=sim.seed, rate_hz=sim.rate_hz,
                interval_ms=sim.interval_ms, stale_after_ms=3_000, history_days=sim.history_days,
            ),
        )  # fmt: skip

    @property
    def composite_config(self) -> CompositeConfig:
        c = self.composite
        priority = tuple(p.strip() for p in c.priority.split(",") if p.strip())
        return CompositeConfig(c.enabled, c.vendor, c.rule, priority)

    def replay(self, path: Path, *, speed: float) -> Settings:
        """These settings with one vendor, a replay of ``path`` (the simulator off)."""
        try:
            vendor = parse_vendors([{"name": "replay", "kind": "replay", "path": str(path),
                                     "speed": speed}])  # fmt: skip
        except VendorConfigError as exc:
            raise ConfigError(f"--replay: {exc}") from None
        if not path.is_file():
            raise ConfigError(f"--replay: no such file: {path}")
        return dataclasses.replace(self, vendors=vendor)

    @property
    def boundary(self) -> DailyBoundary:
        return DailyBoundary.parse(self.stream.daily_boundary)

    @property
    def retention_ms(self) -> dict[str, int | None]:
        return {res: parse_duration_ms(text) for res, text in self.retention.items()}

    @classmethod
    def load(
        cls,
        path: Path | None,
        environ: Mapping[str, str],
        overrides: Mapping[str, Mapping[str, object]] | None = None,
    ) -> Settings:
        """Defaults, then the TOML file at ``path``, then ``environ``, then ``overrides``."""
        data: dict[str, dict[str, object]] = {}
        where: dict[str, str] = {}
        vendor_tables: list[object] = []
        if path is not None:
            try:
                raw = tomllib.loads(path.read_text())
            except OSError as exc:
                raise ConfigError(f"cannot read config file {path}: {exc}") from exc
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
            for section, values in raw.items():
                if section == "vendors":
                    if not isinstance(values, list):
                        raise ConfigError(f"{path}: 'vendors' must be [[vendors]] tables")
                    vendor_tables = values
                    continue
                if not isinstance(values, dict):
                    raise ConfigError(f"{path}: '{section}' must be a [table]")
                for key, value in values.items():
                    data.setdefault(section, {})[key] = value
                    where[f"{section}.{key}"] = str(path)
        sections = {f.name for f in dataclasses.fields(cls)} - {"vendors"}
        for name, value in environ.items():
            if not name.startswith(ENV_PREFIX):
                continue
            rest = name[len(ENV_PREFIX) :].lower()
            found = next((s for s in sections if rest.startswith(s + "_")), None)
            if found is None:
                raise ConfigError(
                    f"environment variable {name} names no section; use "
                    f"{ENV_PREFIX}<{'|'.join(sorted(sections)).upper()}>_<KEY>"
                )
            key = rest[len(found) + 1 :]
            data.setdefault(found, {})[key] = value
            where[f"{found}.{key}"] = f"environment variable {name}"
        for section, values in (overrides or {}).items():
            for key, value in values.items():
                data.setdefault(section, {})[key] = value
                where[f"{section}.{key}"] = "command line"
        settings = _build(cls, data, where)
        try:
            settings = dataclasses.replace(settings, vendors=parse_vendors(vendor_tables))
        except VendorConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        settings.validate(where)
        return settings

    def validate(self, where: Mapping[str, str] | None = None) -> None:
        """Check every value; a ``ConfigError`` names the key, the rule, the value (secrets
        aside) and, from ``where`` (key -> file, variable or command line), where it was set."""
        try:
            self.boundary  # noqa: B018 - parse to validate
        except ValueError as exc:
            raise ConfigError(f"stream.daily_boundary: {exc}") from exc
        for res, text in self.retention.items():
            if res not in RESOLUTIONS:
                raise ConfigError(
                    f"retention.{res}: unknown resolution; use {', '.join(RESOLUTIONS)}"
                )
            try:
                parse_duration_ms(text)
            except ValueError as exc:
                raise ConfigError(f"retention.{res}: {exc}") from exc
        if self.storage.tick_archive != "off":
            try:
                if parse_duration_ms(self.storage.tick_archive) is None:
                    raise ValueError("the archive must be bounded: use 'off' or a duration")
            except ValueError as exc:
                raise ConfigError(f"storage.tick_archive: {exc}") from exc
        for topic in ("ticks", "updates", "deadletter"):
            key = f"bus.{topic}_retention"
            try:
                parse_duration_ms(getattr(self.bus, f"{topic}_retention"))
            except ValueError as exc:
                raise ConfigError(f"{key}: {exc}") from exc
        for symbol, number in self.bus.partition_map.items():
            try:
                check_symbol(symbol)
            except ValueError as exc:
                raise ConfigError(f"bus.partition_map: {exc}") from exc
            if isinstance(number, bool) or not isinstance(number, int) or number < 0:
                raise ConfigError(
                    f"bus.partition_map.{symbol} must be a partition number >= 0, got {number!r}"
                )
        checks = [
            ("server.port", 0 <= self.server.port <= 65_535, "must be 0..65535"),
            ("storage.kind", self.storage.kind in ("sqlite", "mongo"), "must be sqlite or mongo"),
            ("storage.read_preference", self.storage.read_preference in READ_PREFERENCES,
             f"must be one of {', '.join(READ_PREFERENCES)}"),
            ("storage.timeout_ms", 100 <= self.storage.timeout_ms <= 600_000,
             "must be 100..600000"),
            ("storage.max_deadletters", self.storage.max_deadletters >= 1, "must be >= 1"),
            ("bus.kind", self.bus.kind in ("memory", "kafka"), "must be memory or kafka"),
            ("bus.bootstrap", bool(self.bus.bootstrap.strip()), "must name host:port"),
            ("bus.replication_factor", 1 <= self.bus.replication_factor <= 32, "must be 1..32"),
            ("bus.ticks_partitions", 1 <= self.bus.ticks_partitions <= 10_000,
             "must be 1..10000"),
            ("bus.updates_partitions", 1 <= self.bus.updates_partitions <= 10_000,
             "must be 1..10000"),
            ("bus.deadletter_partitions", 1 <= self.bus.deadletter_partitions <= 10_000,
             "must be 1..10000"),
            ("bus.linger_ms", 0 <= self.bus.linger_ms <= 10_000, "must be 0..10000"),
            ("bus.request_timeout_ms", 1_000 <= self.bus.request_timeout_ms <= 600_000,
             "must be 1000..600000"),
            ("bus.delivery_timeout_ms", 1_000 <= self.bus.delivery_timeout_ms <= 3_600_000,
             "must be 1000..3600000"),
            ("bus.session_timeout_ms", 1_000 <= self.bus.session_timeout_ms <= 600_000,
             "must be 1000..600000"),
            ("stream.grace_ms", 0 <= self.stream.grace_ms <= 3_600_000, "must be 0..3600000"),
            ("stream.flush_interval_ms", 1 <= self.stream.flush_interval_ms <= 60_000,
             "must be 1..60000"),
            ("stream.max_batch", 1 <= self.stream.max_batch <= 1_000_000, "must be 1..1000000"),
            ("stream.bus_capacity", self.stream.bus_capacity >= 1, "must be >= 1"),
            ("simulator.rate_hz", 0 < self.simulator.rate_hz <= 100_000,
             "must be > 0 and <= 100000"),
            ("simulator.interval_ms", 1 <= self.simulator.interval_ms <= 10_000,
             "must be 1..10000"),
            ("simulator.history_days", 0 <= self.simulator.history_days <= 3_650,
             "must be 0..3650 (0: no history)"),
            ("log.level", self.log.level.lower() in ("debug", "info", "warning", "error"),
             "must be debug, info, warning or error"),
            ("log.format", self.log.format in ("text", "json"), "must be text or json"),
            ("composite.rule", self.composite.rule in ("median", "primary"),
             "must be median or primary"),
            ("composite.vendor", bool(self.composite.vendor), "must not be empty"),
        ]  # fmt: skip
        # every section that checks its own values ([server], [http], [render], [live], ...)
        for section in dataclasses.fields(self):
            own = getattr(getattr(self, section.name), "checks", None)
            if own is not None:
                checks += own()
        for symbol in auth_config(self).private_symbols:
            try:
                check_symbol(symbol)
            except ValueError as exc:
                raise ConfigError(f"auth.private_symbols: {exc}") from exc
        checks += [
            ("auth.leeway_s", 0 <= self.auth.leeway_s <= 3_600, "must be 0..3600"),
            ("auth.jwt_secret", self.auth.jwt_secret == "" or len(self.auth.jwt_secret) >= 32,
             "must be at least 32 characters (or empty: no tokens)"),
        ]  # fmt: skip
        for symbol in self.prices.decimals:
            try:
                check_symbol(symbol)
            except ValueError as exc:
                raise ConfigError(f"prices.decimals: {exc}") from exc
        for path in self.render.pregenerate_paths:
            try:
                parse_path(path)
            except ValueError as exc:
                raise ConfigError(f"render.pregenerate: {path!r}: {exc}") from exc
        for key, ok, rule in checks:
            if not ok:
                raise ConfigError(self._bad(key, rule, where or {}))

    def _bad(self, key: str, rule: str, where: Mapping[str, str]) -> str:
        section, _, name = key.partition(".")
        origin = f" (set in {where[key]})" if key in where else ""
        if any(word in name for word in ("secret", "key", "password", "token")):
            return f"{key} {rule}{origin}"  # never echo a secret
        value = getattr(getattr(self, section, None), name, None)
        return f"{key} {rule}, got {value!r}{origin}"


def precision(settings: Settings) -> Precision:
    """The ``[prices]`` section as the ``Precision`` every output applies."""
    p = settings.prices
    return Precision(dict(p.decimals), p.default_decimals)


def live_config(settings: Settings) -> LiveConfig:
    """The ``[live]`` section as the web role's ``LiveConfig`` (it is one)."""
    return settings.live


def auth_config(settings: Settings) -> AuthConfig:
    """The ``[auth]`` section as the web role's ``AuthConfig``."""
    a = settings.auth
    return AuthConfig(
        api_keys=tuple(k.strip() for k in a.api_keys.split(",") if k.strip()),
        jwt_secret=a.jwt_secret,
        private_symbols=frozenset(p.strip() for p in a.private_symbols.split(",") if p.strip()),
        leeway_s=a.leeway_s,
    )


def server_limits(settings: Settings) -> ServerLimits:
    """The ``[server]`` section's limits on each connection, for ``web.app.GuardedSite``."""
    s = settings.server
    return ServerLimits(
        header_timeout_s=s.header_timeout_s,
        keepalive_timeout_s=s.keepalive_timeout_s,
        max_connections_per_address=s.max_connections_per_address,
    )


def http_options(settings: Settings) -> HttpOptions:
    h = settings.http
    return HttpOptions(
        rate_limit_per_s=h.rate_limit_per_s,
        rate_limit_burst=h.rate_limit_burst,
        rate_limit_clients=h.rate_limit_clients,
        cors_origins=h.origins,
        trust_forwarded_for=h.trust_forwarded_for,
    )


def render_config(settings: Settings) -> RenderConfig | None:
    """The render pool's configuration, or None when ``render.enabled`` is off."""
    r = settings.render
    if not r.enabled:
        return None
    if r.cache_dir.lower() == "none":
        cache_dir = None
    else:
        cache_dir = Path(r.cache_dir) if r.cache_dir else settings.storage.data_dir / "render-cache"
    fields = dataclasses.asdict(r)
    for name in ("enabled", "cache_dir", "disk_formats", "pregenerate"):
        del fields[name]
    return RenderConfig(**fields, cache_dir=cache_dir, disk_formats=r.disk_format_names,
                        pregenerate=r.pregenerate_paths,
                        precision=precision(settings))  # fmt: skip


_UNITS = {"ms": 1, "s": SECOND_MS, "m": MINUTE_MS, "h": HOUR_MS, "d": DAY_MS}


def parse_duration_ms(text: str) -> int | None:
    """``"90d"``, ``"12h"``, ``"30m"``, ``"10s"``, ``"500ms"`` or ``"forever"`` (None)."""
    text = text.strip().lower()
    if text == "forever":
        return None
    for unit in ("ms", "s", "m", "h", "d"):
        number = text.removesuffix(unit)
        if number != text and number.isdigit():
            return int(number) * _UNITS[unit]
    raise ValueError(f"duration {text!r} is not like 90d, 12h, 30m, 10s, 500ms or 'forever'")


def _build(
    cls: type[Settings], data: dict[str, dict[str, object]], where: dict[str, str]
) -> Settings:
    hints = get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, values in data.items():
        if name not in hints:
            known = ", ".join(f.name for f in dataclasses.fields(cls))
            origin = where[f"{name}.{next(iter(values))}"]
            raise ConfigError(f"unknown section [{name}] (from {origin}); known sections: {known}")
        section_type = hints[name]
        if get_origin(section_type) is dict:
            kwargs[name] = {**_default_retention(), **{k: str(v) for k, v in values.items()}}
            continue
        field_types = get_type_hints(section_type)
        section_kwargs = {}
        for key, value in values.items():
            if key not in field_types:
                known = ", ".join(field_types)
                raise ConfigError(
                    f"unknown key {name}.{key} (from {where[f'{name}.{key}']}); "
                    f"known keys in [{name}]: {known}"
                )
            section_kwargs[key] = _coerce(
                f"{name}.{key}", where[f"{name}.{key}"], value, field_types[key]
            )
        kwargs[name] = section_type(**section_kwargs)
    return cls(**kwargs)


def _coerce(key: str, origin: str, value: object, typ: object) -> object:
    if get_origin(typ) in (Union, types.UnionType):
        typ = next(t for t in get_args(typ) if t is not type(None))
    if get_origin(typ) is dict:  # bus.partition_map
        return _int_table(key, origin, value)
    try:
        if typ is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in (
                "1",
                "true",
                "yes",
                "on",
                "0",
                "false",
                "no",
                "off",
            ):
                return value.lower() in ("1", "true", "yes", "on")
            raise ValueError("not a boolean")
        if typ is int:
            if isinstance(value, bool | float):
                raise ValueError("not an integer")
            return int(str(value).replace("_", ""))
        if typ is float:
            if isinstance(value, bool):
                raise ValueError("not a number")
            return float(str(value))
        if typ is Path:
            return Path(str(value))
        if typ is str:
            if not isinstance(value, str):
                raise ValueError("not a string")
            return value
    except ValueError:
        name = getattr(typ, "__name__", str(typ))
        raise ConfigError(f"{key} (from {origin}) must be {name}, got {value!r}") from None
    raise ConfigError(f"{key}: unsupported setting type {typ!r}")


def _int_table(key: str, origin: str, value: object) -> dict[str, int]:
    """A TOML table of integers, or the same as text: ``"XAU-USD=0, XAG-USD=1"``."""
    if isinstance(value, str):
        items: dict[str, object] = {}
        for item in value.split(","):
            if not item.strip():
                continue
            name, sep, number = item.partition("=")
            if not sep or not name.strip():
                raise ConfigError(f"{key} (from {origin}): {item.strip()!r} is not like XAU-USD=0")
            items[name.strip()] = number.strip()
        value = items
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{key} (from {origin}) must be a table like {{ XAU-USD = 0 }}, got {value!r}"
        )
    return {
        str(name): cast(int, _coerce(f"{key}.{name}", origin, number, int))
        for name, number in value.items()
    }
