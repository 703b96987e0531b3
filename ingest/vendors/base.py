"""What every vendor profile's pure ``parse`` returns, and the field helpers they share.

A profile's ``parse(raw)`` turns one vendor message (bytes) into a ``Parsed``: quotes in the
vendor's own symbols, a heartbeat, a subscription status, a vendor error, or a reject with its
reason. It never awaits, never reads the clock and never raises: the helpers below raise
``Reject`` and ``rejecting`` turns it (and undecodable JSON) into ``Parsed.reject``.

Reject reasons start with a short kind before the colon (``unparsable``, ``missing field``,
``bad field``, ``unknown message``); the kind is what the collectors count.
"""

from __future__ import annotations

import calendar
import functools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

import orjson


class Reject(ValueError):
    """A vendor message that cannot be turned into quotes; the text is the reason."""


class Kind(StrEnum):
    DATA = "data"
    HEARTBEAT = "heartbeat"
    STATUS = "status"
    ERROR = "error"
    REJECT = "reject"


class Quote(NamedTuple):  # a tuple: built per message, several times cheaper than a dataclass
    """What a vendor said about one of its symbols; ``None`` where it said nothing."""

    symbol: str
    bid: float | None
    ask: float | None
    price: float | None
    ts_ms: int | None
    size: float | None = None
    seq: int | None = None


class Parsed(NamedTuple):
    kind: Kind
    quotes: tuple[Quote, ...] = ()
    detail: str = ""

    @staticmethod
    def data(*quotes: Quote) -> Parsed:
        return Parsed(Kind.DATA, quotes)

    @staticmethod
    def reject(reason: str) -> Parsed:
        return Parsed(Kind.REJECT, (), reason)


HEARTBEAT = Parsed(Kind.HEARTBEAT)

ParseFn = Callable[[bytes], Parsed]


@dataclass(frozen=True, slots=True)
class Profile:
    """A vendor's message format and what a collector must send it.

    ``kinds`` are the collector kinds that speak its protocol. ``subscribe`` builds the
    messages a websocket collector sends after connecting; ``heartbeat`` is an application
    message sent every ``heartbeat_interval_ms`` (beside websocket pings); ``urls`` builds the
    request URLs of a polling or streaming collector from the configured ``url``. ``gapless``
    says the vendor's sequence numbers rise by exactly one per symbol, so a jump is a gap.
    """

    name: str
    kinds: frozenset[str]
    parse: ParseFn
    subscribe: Callable[[Sequence[str]], list[bytes]] = lambda symbols: []
    heartbeat: bytes | None = None
    heartbeat_interval_ms: int = 0
    urls: Callable[[str, Sequence[str]], list[str]] = lambda url, symbols: [url]
    gapless: bool = False


def rejecting(fn: ParseFn) -> ParseFn:
    """Wrap a parse function: ``Reject`` and undecodable JSON become a reject, nothing else."""

    @functools.wraps(fn)
    def parse(raw: bytes) -> Parsed:
        try:
            return fn(raw)
        except orjson.JSONDecodeError as exc:
            return Parsed.reject(f"unparsable: not JSON ({exc})")
        except Reject as exc:
            return Parsed.reject(str(exc))

    return parse


def obj(raw: bytes | object) -> dict[str, object]:
    """``raw`` decoded (if bytes) and required to be a JSON object."""
    value = orjson.loads(raw) if isinstance(raw, bytes | bytearray | memoryview | str) else raw
    if type(value) is dict:
        return value
    if not isinstance(value, dict):
        raise Reject(f"unparsable: not a JSON object but {type(value).__name__}")
    return value


def text(d: dict[str, object], key: str) -> str:
    value = d.get(key)
    if value is None:
        raise Reject(f"missing field: {key}")
    if not isinstance(value, str):
        raise Reject(f"bad field: {key} is not a string")
    return value


def number(d: dict[str, object], key: str, *, required: bool = True) -> float | None:
    """A price-like field given as a JSON number or a decimal string (as most vendors send)."""
    value = d.get(key)
    if value is None:
        if required:
            raise Reject(f"missing field: {key}")
        return None
    return to_float(value, key)


def to_float(value: object, key: str) -> float:
    kind = type(value)
    if kind is float:
        return value  # type: ignore[return-value]
    if kind is str:
        try:
            return float(value)  # type: ignore[arg-type]
        except ValueError:
            raise Reject(f"bad field: {key} {str(value)[:40]!r} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise Reject(f"bad field: {key} is not a number")
    try:
        return float(value)
    except (ValueError, OverflowError):
        raise Reject(f"bad field: {key} {str(value)[:40]!r} is not a number") from None


def integer(d: dict[str, object], key: str, *, required: bool = True) -> int | None:
    value = d.get(key)
    if value is None:
        if required:
            raise Reject(f"missing field: {key}")
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 20:
        return int(value)
    raise Reject(f"bad field: {key} {str(value)[:40]!r} is not an integer")


def epoch_ms(value: object, key: str, *, unit: str) -> int:
    """A number of ``unit`` (s, ms, us, ns) since the epoch, as integer milliseconds."""
    seconds_per = {"s": 1_000.0, "ms": 1.0, "us": 1e-3, "ns": 1e-6}[unit]
    ms = to_float(value, key) * seconds_per
    if not math.isfinite(ms) or not 0 <= ms < 2**53:
        raise Reject(f"bad field: {key} {str(value)[:40]!r} is not a time")
    return int(ms)


_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})",
    re.ASCII,
)


def iso_ms(value: str, key: str) -> int:
    """An RFC 3339 time (``2016-09-20T15:05:47.960449532Z``, nanoseconds allowed) in ms."""
    m = _ISO.fullmatch(value)
    if m is None:
        raise Reject(f"bad field: {key} {value[:40]!r} is not an RFC 3339 time")
    second, frac, zone = m.group(6, 7, 8)
    s = int(second)
    minute = _minute_s(value[:16])
    if minute is None or s > 60:
        raise Reject(f"bad field: {key} {value[:40]!r} is not a valid time")
    seconds = minute + s
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[-2:]) * 60)
    ms = seconds * 1000 + (int(frac[:3].ljust(3, "0")) if frac else 0)
    if not 0 <= ms < 2**53:
        raise Reject(f"bad field: {key} {value[:40]!r} is before 1970")
    return ms


@functools.lru_cache(maxsize=256)  # a feed's times share their minute for a minute
def _minute_s(prefix: str) -> int | None:
    """Seconds since the epoch at ``YYYY-MM-DDTHH:MM`` (UTC), or None when not a time."""
    year, mo, d, h, mi = (int(prefix[0:4]), int(prefix[5:7]), int(prefix[8:10]),
                          int(prefix[11:13]), int(prefix[14:16]))  # fmt: skip
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60):
        return None
    return calendar.timegm((year, mo, d, h, mi, 0, 0, 0, 0))


def path_get(d: object, path: str) -> object:
    """The value at a dotted ``path`` (``data.0.price``) in decoded JSON, or None."""
    for part in path.split("."):
        if isinstance(d, dict):
            d = d.get(part)
        elif isinstance(d, list) and part.isdigit() and int(part) < len(d):
            d = d[int(part)]
        else:
            return None
    return d
