"""Candle resolutions and bucket arithmetic: pure functions of integer milliseconds.

Sub-daily buckets are aligned to the Unix epoch (so a 4h bucket starts at 00:00, 04:00, ... UTC).
The daily bucket starts at a configurable wall-clock time in a configurable time zone, the
metals/FX convention being 17:00 America/New_York; on days when that zone changes its clocks the
daily bucket is 23 or 25 hours long.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from stream.contract.errors import UnknownResolution

SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

#: Every resolution the service keeps, finest first, with its nominal length.
RESOLUTIONS: dict[str, int] = {
    "1s": SECOND_MS,
    "1m": MINUTE_MS,
    "5m": 5 * MINUTE_MS,
    "15m": 15 * MINUTE_MS,
    "1h": HOUR_MS,
    "4h": 4 * HOUR_MS,
    "1d": DAY_MS,
}

_BOUNDARY = re.compile(r"^(\d{1,2}):(\d{2})(?:\s+(\S+))?$")


def check_resolution(name: str) -> str:
    """Return ``name`` if it is a kept resolution; raise ``UnknownResolution`` otherwise."""
    if name not in RESOLUTIONS:
        allowed = ", ".join(RESOLUTIONS)
        raise UnknownResolution(f"unknown resolution {name[:20]!r}; use one of {allowed}")
    return name


@dataclass(frozen=True, slots=True)
class DailyBoundary:
    """When the daily candle starts: ``hour:minute`` wall-clock time in ``tz``."""

    hour: int = 0
    minute: int = 0
    tz: str = "UTC"

    def __post_init__(self) -> None:
        if not (0 <= self.hour < 24 and 0 <= self.minute < 60):
            raise ValueError(
                f"daily boundary {self.hour:02d}:{self.minute:02d} is not a time of day"
            )
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
            raise ValueError(f"daily boundary time zone {self.tz!r} is unknown") from exc

    @classmethod
    def parse(cls, text: str) -> DailyBoundary:
        """Parse ``"17:00 America/New_York"`` or ``"00:00"`` (UTC)."""
        match = _BOUNDARY.match(text.strip())
        if match is None:
            raise ValueError(f"daily boundary {text!r} is not 'HH:MM [Area/City]'")
        hour, minute, tz = match.groups()
        return cls(int(hour), int(minute), tz or "UTC")

    def __str__(self) -> str:
        return f"{self.hour:02d}:{self.minute:02d} {self.tz}"

    @property
    def is_fixed(self) -> bool:
        """True when every day is exactly 24 hours long (a zone without clock changes)."""
        return self.tz in ("UTC", "Etc/UTC", "GMT")


def bucket_bounds(res: str, ts_ms: int, boundary: DailyBoundary) -> tuple[int, int]:
    """The ``[start_ms, end_ms)`` bucket of resolution ``res`` that contains ``ts_ms``."""
    step = RESOLUTIONS[res]
    if res != "1d":
        start = ts_ms - ts_ms % step
        return start, start + step
    if boundary.is_fixed:
        offset = (boundary.hour * 60 + boundary.minute) * MINUTE_MS
        start = ts_ms - (ts_ms - offset) % DAY_MS
        return start, start + DAY_MS
    return _zoned_day(ts_ms, boundary)


def _zoned_day(ts_ms: int, boundary: DailyBoundary) -> tuple[int, int]:
    zone = ZoneInfo(boundary.tz)
    local = datetime.fromtimestamp(ts_ms / 1000, tz=UTC).astimezone(zone)
    day = local.date()
    start = _wall(day.year, day.month, day.day, boundary, zone)
    if start > ts_ms:
        prev = day - timedelta(days=1)
        start = _wall(prev.year, prev.month, prev.day, boundary, zone)
        day = prev
    nxt = day + timedelta(days=1)
    return start, _wall(nxt.year, nxt.month, nxt.day, boundary, zone)


def _wall(year: int, month: int, day: int, boundary: DailyBoundary, zone: ZoneInfo) -> int:
    wall = datetime(year, month, day, boundary.hour, boundary.minute, tzinfo=zone)
    return int(wall.timestamp()) * 1000
