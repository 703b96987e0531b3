"""Settings: read once at the entry point from a TOML file and an environment mapping.

Every key has a default; a TOML file overrides them and ``PRICESTREAM_<SECTION>_<KEY>``
variables override the file (``PRICESTREAM_SERVER_PORT=9000``). Anything unknown, of the wrong
type or out of range is refused at start with a ``ConfigError`` that names the key.

``Settings`` holds the sections (``pricestream.settings_sections``), is loaded from its sources
(``pricestream.settings_sources``) and checks every value. ``precision``, ``auth_config`` and
the other functions below hand each part its own configuration.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ingest.config import CompositeConfig, VendorConfig, VendorConfigError, parse_vendors
from pricestream.settings_sections import (
    Auth,
    Bus,
    Check,
    Composite,
    Http,
    Live,
    Log,
    Prices,
    Render,
    Server,
    Simulator,
    Storage,
    Stream,
    default_retention,
)
from pricestream.settings_sources import (
    ENV_PREFIX,
    ConfigError,
    build,
    parse_duration_ms,
    read_sources,
)
from render.service import RenderConfig
from render.spec import parse_path
from stream.contract import RESOLUTIONS, DailyBoundary, Precision, check_symbol
from web.app import ServerLimits
from web.auth import AuthConfig
from web.live import LiveConfig
from web.middleware import HttpOptions

__all__ = [
    "ENV_PREFIX",
    "ConfigError",
    "Settings",
    "auth_config",
    "http_options",
    "live_config",
    "parse_duration_ms",
    "precision",
    "render_config",
    "server_limits",
]


@dataclass(frozen=True, slots=True)
class Settings:
    """Every section, with its defaults; ``load`` reads them once at the entry point."""

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
    retention: dict[str, str] = field(default_factory=default_retention)
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
        sections = {f.name for f in dataclasses.fields(cls)} - {"vendors"}
        sources = read_sources(path, environ, overrides, sections=sections)
        settings = build(cls, sources)
        try:
            settings = dataclasses.replace(settings, vendors=parse_vendors(sources.vendor_tables))
        except VendorConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        settings.validate(sources.where)
        return settings

    def validate(self, where: Mapping[str, str] | None = None) -> None:
        """Check every value; a ``ConfigError`` names the key, the rule, the value (secrets
        aside) and, from ``where`` (key -> file, variable or command line), where it was set.

        First the values that must parse (the daily boundary, durations, symbols, paths), then
        the rules each section keeps of its own values (its ``checks()``)."""
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
        for symbol in auth_config(self).private_symbols:
            try:
                check_symbol(symbol)
            except ValueError as exc:
                raise ConfigError(f"auth.private_symbols: {exc}") from exc
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
        checks: list[Check] = []
        for section in dataclasses.fields(self):
            own = getattr(getattr(self, section.name), "checks", None)
            if own is not None:
                checks += own()
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
