"""Bucket arithmetic: every resolution, the configurable daily boundary, DST days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.contract import (
    RESOLUTIONS,
    DailyBoundary,
    UnknownResolution,
    bucket_bounds,
    check_resolution,
)

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
UTC_MIDNIGHT = DailyBoundary()
UTC_17 = DailyBoundary(17, 0, "UTC")
NY_17 = DailyBoundary(17, 0, "America/New_York")


def ms(iso: str) -> int:
    """Milliseconds since the epoch of an ISO 8601 time with an explicit offset."""
    return (datetime.fromisoformat(iso) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
        milliseconds=1
    )


@pytest.mark.parametrize(
    ("res", "boundary", "ts", "start", "end"),
    [
        # sub-daily buckets are aligned to the epoch, whatever the daily boundary
        (
            "1s",
            UTC_MIDNIGHT,
            "2026-03-08T12:00:00.999Z",
            "2026-03-08T12:00:00Z",
            "2026-03-08T12:00:01Z",
        ),
        (
            "1s",
            UTC_MIDNIGHT,
            "2026-03-08T12:00:01Z",
            "2026-03-08T12:00:01Z",
            "2026-03-08T12:00:02Z",
        ),
        ("1m", UTC_MIDNIGHT, "2026-03-08T12:00:59.999Z", "2026-03-08T12:00Z", "2026-03-08T12:01Z"),
        ("5m", UTC_MIDNIGHT, "2026-03-08T12:04:59.999Z", "2026-03-08T12:00Z", "2026-03-08T12:05Z"),
        ("5m", UTC_MIDNIGHT, "2026-03-08T12:05:00Z", "2026-03-08T12:05Z", "2026-03-08T12:10Z"),
        ("15m", UTC_MIDNIGHT, "2026-03-08T12:44:59.999Z", "2026-03-08T12:30Z", "2026-03-08T12:45Z"),
        ("1h", NY_17, "2026-03-08T06:30:00Z", "2026-03-08T06:00Z", "2026-03-08T07:00Z"),
        ("4h", UTC_MIDNIGHT, "2026-03-08T03:59:59.999Z", "2026-03-08T00:00Z", "2026-03-08T04:00Z"),
        ("4h", NY_17, "2026-03-08T04:00:00Z", "2026-03-08T04:00Z", "2026-03-08T08:00Z"),
        # the default daily boundary is midnight UTC
        ("1d", UTC_MIDNIGHT, "2026-03-07T23:59:59.999Z", "2026-03-07T00:00Z", "2026-03-08T00:00Z"),
        ("1d", UTC_MIDNIGHT, "2026-03-08T00:00:00Z", "2026-03-08T00:00Z", "2026-03-09T00:00Z"),
        ("1d", UTC_17, "2026-03-08T16:59:59.999Z", "2026-03-07T17:00Z", "2026-03-08T17:00Z"),
        ("1d", UTC_17, "2026-03-08T17:00:00Z", "2026-03-08T17:00Z", "2026-03-09T17:00Z"),
        # 17:00 New York on an ordinary summer day (EDT, UTC-4)
        (
            "1d",
            NY_17,
            "2026-06-15T12:00:00-04:00",
            "2026-06-14T17:00-04:00",
            "2026-06-15T17:00-04:00",
        ),
        # 2026-03-08: clocks spring forward, the daily bucket is 23 hours long
        (
            "1d",
            NY_17,
            "2026-03-07T17:00:00-05:00",
            "2026-03-07T17:00-05:00",
            "2026-03-08T17:00-04:00",
        ),
        (
            "1d",
            NY_17,
            "2026-03-08T03:00:00-04:00",
            "2026-03-07T17:00-05:00",
            "2026-03-08T17:00-04:00",
        ),
        (
            "1d",
            NY_17,
            "2026-03-08T16:59:59.999-04:00",
            "2026-03-07T17:00-05:00",
            "2026-03-08T17:00-04:00",
        ),
        (
            "1d",
            NY_17,
            "2026-03-08T17:00:00-04:00",
            "2026-03-08T17:00-04:00",
            "2026-03-09T17:00-04:00",
        ),
        # 2026-11-01: clocks fall back, the daily bucket is 25 hours long
        (
            "1d",
            NY_17,
            "2026-10-31T17:00:00-04:00",
            "2026-10-31T17:00-04:00",
            "2026-11-01T17:00-05:00",
        ),
        (
            "1d",
            NY_17,
            "2026-11-01T01:30:00-04:00",
            "2026-10-31T17:00-04:00",
            "2026-11-01T17:00-05:00",
        ),
        (
            "1d",
            NY_17,
            "2026-11-01T01:30:00-05:00",
            "2026-10-31T17:00-04:00",
            "2026-11-01T17:00-05:00",
        ),
        (
            "1d",
            NY_17,
            "2026-11-01T16:59:59.999-05:00",
            "2026-10-31T17:00-04:00",
            "2026-11-01T17:00-05:00",
        ),
        (
            "1d",
            NY_17,
            "2026-11-01T17:00:00-05:00",
            "2026-11-01T17:00-05:00",
            "2026-11-02T17:00-05:00",
        ),
        # before the epoch
        (
            "1s",
            UTC_MIDNIGHT,
            "1969-12-31T23:59:59.999Z",
            "1969-12-31T23:59:59Z",
            "1970-01-01T00:00Z",
        ),
        ("1d", UTC_MIDNIGHT, "1969-12-31T23:59:59.999Z", "1969-12-31T00:00Z", "1970-01-01T00:00Z"),
    ],
)
def test_bucket_bounds_contain_the_tick(
    res: str, boundary: DailyBoundary, ts: str, start: str, end: str
) -> None:
    assert bucket_bounds(res, ms(ts), boundary) == (ms(start), ms(end))


@pytest.mark.parametrize(
    ("day", "hours"),
    [("2026-03-08", 23), ("2026-06-15", 24), ("2026-11-01", 25), ("2026-12-25", 24)],
)
def test_new_york_daily_bucket_is_as_long_as_the_local_day(day: str, hours: int) -> None:
    start, end = bucket_bounds("1d", ms(f"{day}T12:00:00Z"), NY_17)
    assert end - start == hours * HOUR_MS


BOUNDARIES = [
    UTC_MIDNIGHT,
    UTC_17,
    NY_17,
    DailyBoundary(9, 30, "Asia/Tokyo"),
    DailyBoundary(0, 0, "Europe/London"),
    # 02:30 does not exist on spring-forward days, and 01:30 happens twice on fall-back days
    DailyBoundary(2, 30, "America/New_York"),
    DailyBoundary(1, 30, "America/New_York"),
    # half-hour DST shift
    DailyBoundary(2, 0, "Australia/Lord_Howe"),
]


@settings(max_examples=300)
@given(
    res=st.sampled_from(list(RESOLUTIONS)),
    boundary=st.sampled_from(BOUNDARIES),
    ts=st.integers(ms("1990-01-01T00:00Z"), ms("2060-01-01T00:00Z")),
)
def test_buckets_tile_the_time_line(res: str, boundary: DailyBoundary, ts: int) -> None:
    start, end = bucket_bounds(res, ts, boundary)
    assert start <= ts < end
    assert bucket_bounds(res, start, boundary) == (start, end)
    assert bucket_bounds(res, end - 1, boundary) == (start, end)
    assert bucket_bounds(res, end, boundary)[0] == end
    assert bucket_bounds(res, start - 1, boundary)[1] == start


@settings(max_examples=200)
@given(
    res=st.sampled_from([r for r in RESOLUTIONS if r != "1d"]),
    ts=st.integers(-(2**45), 2**45),
)
def test_sub_daily_buckets_are_epoch_aligned_and_fixed_length(res: str, ts: int) -> None:
    start, end = bucket_bounds(res, ts, NY_17)
    assert start % RESOLUTIONS[res] == 0
    assert end - start == RESOLUTIONS[res]


@settings(max_examples=200)
@given(ts=st.integers(ms("1990-01-01T00:00Z"), ms("2060-01-01T00:00Z")))
def test_new_york_daily_bucket_runs_from_17_00_to_17_00_local(ts: int) -> None:
    zone = ZoneInfo("America/New_York")
    start, end = bucket_bounds("1d", ts, NY_17)
    for edge in (start, end):
        local = datetime.fromtimestamp(edge / 1000, tz=UTC).astimezone(zone)
        assert (local.hour, local.minute, local.second, local.microsecond) == (17, 0, 0, 0)
    assert end - start in (23 * HOUR_MS, 24 * HOUR_MS, 25 * HOUR_MS)


@pytest.mark.parametrize("name", list(RESOLUTIONS))
def test_check_resolution_accepts_every_kept_resolution(name: str) -> None:
    assert check_resolution(name) == name


@pytest.mark.parametrize("name", ["", "2m", "1D", "1min", "1h ", "x" * 1000])
def test_check_resolution_rejects_unknown_names_with_a_lookup_error(name: str) -> None:
    with pytest.raises(UnknownResolution) as info:
        check_resolution(name)
    assert isinstance(info.value, LookupError)
    assert len(str(info.value)) < 200


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("00:00", DailyBoundary(0, 0, "UTC")),
        ("17:00 America/New_York", DailyBoundary(17, 0, "America/New_York")),
        ("  9:30   Asia/Tokyo ", DailyBoundary(9, 30, "Asia/Tokyo")),
        ("23:59 UTC", DailyBoundary(23, 59, "UTC")),
    ],
)
def test_daily_boundary_parses_time_and_zone(text: str, expected: DailyBoundary) -> None:
    assert DailyBoundary.parse(text) == expected
    assert DailyBoundary.parse(str(expected)) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "17",
        "17:0",
        "1700",
        "24:00",
        "12:60",
        "-1:00",
        "17:00 Nowhere/City",
        "17:00 America",  # a directory of the zone database, not a zone
        "17:00 ../etc/passwd",
        f"17:00 {'A' * 300}",
        "17:00 America/New_York extra",
    ],
)
def test_daily_boundary_rejects_bad_text_with_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="daily boundary"):
        DailyBoundary.parse(text)


@pytest.mark.parametrize(
    ("boundary", "fixed"),
    [
        (DailyBoundary(), True),
        (DailyBoundary(17, 0, "UTC"), True),
        (DailyBoundary(0, 0, "Etc/UTC"), True),
        (NY_17, False),
        (DailyBoundary(0, 0, "Europe/London"), False),
    ],
)
def test_only_utc_boundaries_are_fixed(boundary: DailyBoundary, fixed: bool) -> None:
    assert boundary.is_fixed is fixed
