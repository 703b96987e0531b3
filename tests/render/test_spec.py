"""Request parsing: defaults, bounds and messages that say what is allowed."""

from __future__ import annotations

import pytest

from render.spec import (
    ChartSpec,
    SnapshotSpec,
    SpecError,
    allowed_resolutions,
    parse_chart,
    parse_path,
    parse_snapshot,
)


def test_defaults_choose_the_resolution_from_the_range() -> None:
    assert parse_chart("XAU-USD", "png", {}) == ChartSpec("XAU-USD", "1d", "5m", "png")
    assert parse_chart("XAU-USD", "svg", {"range": "5y"}).res == "1d"
    assert parse_snapshot("XAG-USD", "csv", {"range": "1w"}) == SnapshotSpec(
        "XAG-USD", "1w", "1h", "csv"
    )


def test_the_same_chart_asked_two_ways_has_one_key() -> None:
    explicit = {"range": "1d", "res": "5m", "w": "600", "h": "300", "type": "area"}
    assert parse_chart("XAU-USD", "png", explicit).key == parse_chart("XAU-USD", "png", {}).key
    assert parse_chart("XAU-USD", "png", {}).key != parse_chart("XAU-USD", "svg", {}).key


@pytest.mark.parametrize(
    ("rng", "allowed"),
    [
        ("1h", ("1s", "1m", "5m", "15m")),
        ("1d", ("1s", "1m", "5m", "15m", "1h", "4h")),
        ("5y", ("1m", "5m", "15m", "1h", "4h", "1d")),
    ],
)
def test_resolutions_allowed_per_range(rng: str, allowed: tuple[str, ...]) -> None:
    assert allowed_resolutions(rng) == allowed


@pytest.mark.parametrize(
    ("fmt", "query", "message"),
    [
        ("bmp", {}, "format must be one of png, svg, json, got 'bmp'"),
        ("png", {"range": "3d"}, "range must be one of 1h, 1d, 1w, 1m, 1y, 5y, got '3d'"),
        ("png", {"res": "2m"}, "res for range 1d must be one of 1s, 1m, 5m, 15m, 1h, 4h"),
        ("png", {"range": "5y", "res": "1s"}, "res for range 5y must be one of 1m,"),
        ("png", {"w": "199"}, "w must be an integer from 200 to 2000, got 199"),
        ("png", {"h": "1201"}, "h must be an integer from 100 to 1200, got 1201"),
        ("png", {"w": "1e3"}, "w must be an integer from 200 to 2000, got '1e3'"),
        ("png", {"type": "ohlc"}, "type must be one of area, candles"),
        ("png", {"theme": "neon"}, "theme must be one of light, dark"),
    ],
)
def test_bad_requests_say_what_is_allowed(fmt: str, query: dict[str, str], message: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_chart("XAU-USD", fmt, query)
    assert message in str(err.value)


def test_a_bad_symbol_is_refused() -> None:
    with pytest.raises(SpecError, match="XAU-USD"):
        parse_chart("gold", "png", {})


@pytest.mark.parametrize(
    ("path", "spec"),
    [
        ("XAU-USD.png?range=1w&theme=dark", ChartSpec("XAU-USD", "1w", "1h", "png", theme="dark")),
        ("charts/XAG-USD.svg", ChartSpec("XAG-USD", "1d", "5m", "svg")),
        ("snapshots/XPT-USD.csv?range=1h", SnapshotSpec("XPT-USD", "1h", "1m", "csv")),
    ],
)
def test_pre_generation_paths(path: str, spec: ChartSpec | SnapshotSpec) -> None:
    assert parse_path(path) == spec


def test_a_pre_generation_path_without_a_format_is_refused() -> None:
    with pytest.raises(SpecError, match="is not like"):
        parse_path("XAU-USD")
