"""Where settings come from: file, environment and flags, typed and noted with their origin.

The sources are a TOML file, ``PRICESTREAM_*`` variables and command-line overrides.
``read_sources`` gathers the raw values by section and key, later sources overriding earlier
ones, and notes where each was set (``where``: ``"server.port"`` -> the file, the variable or
"command line"); ``build`` makes the typed sections of them. ``ConfigError`` is the one error of
the settings: anything unknown or of the wrong type is refused here with a message that names
the key and where it was set; ``pricestream.settings`` refuses values out of range the same way.
``parse_duration_ms`` reads the durations some settings are written in (``"90d"``, ``"500ms"``).
"""

from __future__ import annotations

import tomllib
import types
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, Union, cast, get_args, get_origin, get_type_hints

from stream.contract.resolutions import DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS

ENV_PREFIX = "PRICESTREAM_"

T = TypeVar("T")


class ConfigError(ValueError):
    """A setting that is unknown, of the wrong type or out of range; the message names it."""


@dataclass(slots=True)
class Sources:
    """The raw values of the sources, by section and key, and where each was set."""

    values: dict[str, dict[str, object]] = field(default_factory=dict)
    #: "section.key" -> the file, the environment variable or "command line" that set it
    where: dict[str, str] = field(default_factory=dict)
    #: the file's [[vendors]] tables, as they are (``ingest.config.parse_vendors`` reads them)
    vendor_tables: list[object] = field(default_factory=list)

    def set(self, section: str, key: str, value: object, origin: str) -> None:
        self.values.setdefault(section, {})[key] = value
        self.where[f"{section}.{key}"] = origin


def read_sources(
    path: Path | None,
    environ: Mapping[str, str],
    overrides: Mapping[str, Mapping[str, object]] | None,
    *,
    sections: Collection[str],
) -> Sources:
    """The TOML file at ``path``, then ``environ``'s ``PRICESTREAM_<SECTION>_<KEY>`` variables
    (of ``sections``), then ``overrides`` (section -> key -> value, from the command line)."""
    found = Sources()
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
                found.vendor_tables = values
                continue
            if not isinstance(values, dict):
                raise ConfigError(f"{path}: '{section}' must be a [table]")
            for key, value in values.items():
                found.set(section, key, value, str(path))
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        named = next((s for s in sections if rest.startswith(s + "_")), None)
        if named is None:
            raise ConfigError(
                f"environment variable {name} names no section; use "
                f"{ENV_PREFIX}<{'|'.join(sorted(sections)).upper()}>_<KEY>"
            )
        found.set(named, rest[len(named) + 1 :], value, f"environment variable {name}")
    for section, values in (overrides or {}).items():
        for key, value in values.items():
            found.set(section, key, value, "command line")
    return found


def build(cls: type[T], sources: Sources) -> T:
    """A ``cls`` (a dataclass of sections) with the defaults and the values of ``sources``.

    A section is a dataclass whose fields' types say how to read each value; a section that is a
    ``dict`` (``[retention]``) takes its keys as text, over its default's."""
    where = sources.where
    hints = get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, values in sources.values.items():
        if name not in hints:
            known = ", ".join(hints)  # the fields of cls, in order
            origin = where[f"{name}.{next(iter(values))}"]
            raise ConfigError(f"unknown section [{name}] (from {origin}); known sections: {known}")
        section_type = hints[name]
        if get_origin(section_type) is dict:
            default = getattr(cls(), name)
            kwargs[name] = {**default, **{k: str(v) for k, v in values.items()}}
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
