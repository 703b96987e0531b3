"""Vendor configuration: one ``VendorConfig`` per ``[[vendors]]`` table, checked per kind.

``parse_vendors(tables)`` turns the decoded TOML array into configs or raises ``VendorConfigError``
naming the table and key (``vendors[2].interval_ms: must be 50..3600000``). Which keys a table may
have depends on its ``kind`` (and ``profile = "generic"`` adds the field-mapping keys); see
``KEYS``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ingest.composite import RULES
from ingest.vendors import PROFILE_NAMES, PROFILES, Profile
from ingest.vendors.generic import FIELDS, FieldMap, make_profile
from stream.contract import InvalidSymbol, check_symbol

KINDS = ("websocket", "http_poll", "http_stream", "replay", "simulator")

_COMMON = ("name", "kind", "stale_after_ms", "spike_bp", "max_future_ms", "max_age_ms")
_NETWORK = ("profile", "url", "symbols", "headers", "backoff_min_ms", "backoff_max_ms")
KEYS: dict[str, tuple[str, ...]] = {
    "websocket": (*_COMMON, *_NETWORK, "ping_interval_ms", "heartbeat_interval_ms",
                  "open_timeout_ms"),
    "http_poll": (*_COMMON, *_NETWORK, "interval_ms", "timeout_ms"),
    "http_stream": (*_COMMON, *_NETWORK, "timeout_ms"),
    "replay": (*_COMMON, "path", "speed", "format", "symbols"),
    "simulator": (*_COMMON, "seed", "rate_hz", "interval_ms", "history_days"),
}  # fmt: skip
GENERIC_KEYS = (
    "fields", "records", "ts_unit", "constant_symbol", "heartbeat_field", "heartbeat_value",
    "subscribe", "gapless",
)  # fmt: skip


class VendorConfigError(ValueError):
    """A ``[[vendors]]`` table that cannot run; the message names the table and key."""


@dataclass(frozen=True, slots=True)
class VendorConfig:
    name: str
    kind: str
    profile: str = ""
    url: str = ""
    symbols: Mapping[str, str] = field(default_factory=dict)  # vendor symbol -> ours
    headers: Mapping[str, str] = field(default_factory=dict)
    stale_after_ms: int = 10_000
    spike_bp: float = 500.0  # 0: no spike limit
    max_future_ms: int = 5_000
    max_age_ms: int = 60_000  # 0: no age limit (replay's default)
    backoff_min_ms: int = 250
    backoff_max_ms: int = 30_000
    # websocket
    ping_interval_ms: int = 20_000
    heartbeat_interval_ms: int = 0  # 0: the profile's own (Twelve Data: 10 s)
    open_timeout_ms: int = 10_000
    # http_poll / http_stream
    interval_ms: int = 1_000
    timeout_ms: int = 10_000
    # replay
    path: Path = Path()
    speed: float = 1.0  # 0: as fast as possible
    format: str = "auto"  # csv, jsonl or auto (from the file's suffix)
    # simulator
    seed: int = 1
    rate_hz: float = 4.0
    history_days: int = 90  # simulated history on a fresh store (simulator); 0: none
    # generic profile
    generic: FieldMap = field(default_factory=FieldMap)

    def make_profile(self) -> Profile:
        if self.profile == "generic":
            return make_profile(self.generic)
        return PROFILES[self.profile]


def parse_vendors(tables: Sequence[object]) -> tuple[VendorConfig, ...]:
    out = [parse_vendor(t, i) for i, t in enumerate(tables)]
    seen: set[str] = set()
    for i, v in enumerate(out):
        if v.name in seen:
            raise VendorConfigError(f"vendors[{i}].name: {v.name!r} is used twice")
        seen.add(v.name)
    return tuple(out)


def parse_vendor(table: object, index: int) -> VendorConfig:
    at = f"vendors[{index}]"
    if not isinstance(table, Mapping):
        raise VendorConfigError(f"{at}: must be a [[vendors]] table")
    kind = table.get("kind")
    if kind not in KINDS:
        raise VendorConfigError(f"{at}.kind: must be one of {', '.join(KINDS)}, got {kind!r}")
    allowed = KEYS[kind] + (GENERIC_KEYS if table.get("profile") == "generic" else ())
    for key in table:
        if key not in allowed:
            raise VendorConfigError(
                f"{at}.{key}: not a key of kind {kind!r}"
                f"{' with this profile' if key in GENERIC_KEYS else ''}; "
                f"allowed: {', '.join(allowed)}"
            )
    types = {f.name: f.type for f in dataclasses.fields(VendorConfig)}
    values: dict[str, object] = {}
    for key, value in table.items():
        if key in GENERIC_KEYS:
            continue
        values[key] = _coerce(f"{at}.{key}", value, str(types[key]))
    if "name" not in values or not values["name"]:
        raise VendorConfigError(f"{at}.name: every vendor needs a name")
    if kind == "replay" and "max_age_ms" not in values:
        values["max_age_ms"] = 0
    if kind == "http_poll" and "stale_after_ms" not in values:
        values["stale_after_ms"] = max(10_000, 3 * int(str(values.get("interval_ms", 1_000))))
    if table.get("profile") == "generic":
        values["generic"] = _generic(at, table)
    cfg = VendorConfig(**values)  # type: ignore[arg-type]
    _check(at, cfg)
    return cfg


def _coerce(key: str, value: object, typ: str) -> object:
    if typ == "str":
        if not isinstance(value, str):
            raise VendorConfigError(f"{key}: must be a string, got {value!r}")
        return value
    if typ == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise VendorConfigError(f"{key}: must be an integer, got {value!r}")
        return value
    if typ == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise VendorConfigError(f"{key}: must be a number, got {value!r}")
        return float(value)
    if typ == "Path":
        if not isinstance(value, str):
            raise VendorConfigError(f"{key}: must be a file path string, got {value!r}")
        return Path(value)
    if typ.startswith("Mapping"):
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise VendorConfigError(f"{key}: must be a table of strings, got {value!r}")
        return dict(value)
    raise VendorConfigError(f"{key}: unsupported setting type {typ}")


def _generic(at: str, table: Mapping[str, object]) -> FieldMap:
    values: dict[str, object] = {}
    for key in GENERIC_KEYS:
        if key not in table:
            continue
        value = table[key]
        if key == "fields":
            value = _coerce(f"{at}.fields", value, "Mapping")
        elif key == "gapless":
            if not isinstance(value, bool):
                raise VendorConfigError(f"{at}.gapless: must be true or false, got {value!r}")
        elif not isinstance(value, str):
            raise VendorConfigError(f"{at}.{key}: must be a string, got {value!r}")
        values[key] = value
    if "fields" not in values:
        raise VendorConfigError(f"{at}.fields: the generic profile needs a field mapping "
                                f"(from {', '.join(FIELDS)} to paths in the message)")  # fmt: skip
    mapping = FieldMap(**values)  # type: ignore[arg-type]
    try:
        mapping.check()
    except ValueError as exc:
        raise VendorConfigError(f"{at}.{exc}") from None
    return mapping


def _check(at: str, v: VendorConfig) -> None:
    network = v.kind in ("websocket", "http_poll", "http_stream")
    if network:
        if v.profile not in PROFILE_NAMES:
            raise VendorConfigError(
                f"{at}.profile: must be one of {', '.join(PROFILE_NAMES)}, got {v.profile!r}"
            )
        profile = v.make_profile()
        if v.kind not in profile.kinds:
            raise VendorConfigError(
                f"{at}.kind: profile {v.profile!r} speaks {', '.join(sorted(profile.kinds))}, "
                f"not {v.kind}"
            )
        schemes = ("ws://", "wss://") if v.kind == "websocket" else ("http://", "https://")
        if not v.url.startswith(schemes):
            raise VendorConfigError(f"{at}.url: must start with {' or '.join(schemes)}")
        if not v.symbols:
            raise VendorConfigError(f"{at}.symbols: map at least one vendor symbol to ours")
    if v.kind == "replay" and v.path == Path():
        raise VendorConfigError(f"{at}.path: a replay needs the file to replay")
    for ours in v.symbols.values():
        try:
            check_symbol(ours)
        except InvalidSymbol as exc:
            raise VendorConfigError(f"{at}.symbols: {exc}") from None
    ranges = [
        ("stale_after_ms", v.stale_after_ms, 10, 86_400_000),
        ("max_future_ms", v.max_future_ms, 0, 86_400_000),
        ("max_age_ms", v.max_age_ms, 0, 10 * 365 * 86_400_000),
        ("backoff_min_ms", v.backoff_min_ms, 1, 3_600_000),
        ("backoff_max_ms", v.backoff_max_ms, v.backoff_min_ms, 3_600_000),
        ("ping_interval_ms", v.ping_interval_ms, 0, 3_600_000),
        ("heartbeat_interval_ms", v.heartbeat_interval_ms, 0, 3_600_000),
        ("open_timeout_ms", v.open_timeout_ms, 1, 600_000),
        ("interval_ms", v.interval_ms, 1, 3_600_000),
        ("timeout_ms", v.timeout_ms, 1, 600_000),
        ("seed", v.seed, 0, 2**63),
        ("history_days", v.history_days, 0, 3_650),
    ]
    for key, value, lo, hi in ranges:
        if not lo <= value <= hi:
            raise VendorConfigError(f"{at}.{key}: must be {lo}..{hi}, got {value}")
    floats = [("spike_bp", v.spike_bp, 0.0, 10_000.0), ("speed", v.speed, 0.0, 1e6),
              ("rate_hz", v.rate_hz, 1e-3, 100_000.0)]  # fmt: skip
    for key, fvalue, flo, fhi in floats:
        if not flo <= fvalue <= fhi:
            raise VendorConfigError(f"{at}.{key}: must be {flo:g}..{fhi:g}, got {fvalue}")
    if v.format not in ("auto", "csv", "jsonl"):
        raise VendorConfigError(f"{at}.format: must be auto, csv or jsonl, got {v.format!r}")
    if v.kind == "http_poll" and v.stale_after_ms <= v.interval_ms:
        raise VendorConfigError(
            f"{at}.stale_after_ms: must be longer than interval_ms ({v.interval_ms})"
        )


@dataclass(frozen=True, slots=True)
class CompositeConfig:
    enabled: bool = True
    vendor: str = "composite"
    rule: str = "median"
    priority: tuple[str, ...] = ()

    def check(self) -> None:
        if self.rule not in RULES:
            raise VendorConfigError(f"composite.rule: must be one of {', '.join(RULES)}")
