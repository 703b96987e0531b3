"""Colour themes: the colours of every part of a chart, light and dark."""

from __future__ import annotations

import functools
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Theme:
    bg: tuple[int, int, int]
    grid: tuple[int, int, int]
    axis: tuple[int, int, int]
    text: tuple[int, int, int]
    title: tuple[int, int, int]
    line: tuple[int, int, int]
    fill_top: tuple[int, int, int]
    fill_bottom: tuple[int, int, int]
    up: tuple[int, int, int]
    down: tuple[int, int, int]
    marker: tuple[int, int, int]
    marker_text: tuple[int, int, int]


THEMES = {
    "light": Theme(
        bg=(255, 255, 255),
        grid=(234, 237, 242),
        axis=(196, 202, 210),
        text=(96, 104, 116),
        title=(20, 24, 31),
        line=(33, 110, 220),
        fill_top=(196, 219, 250),
        fill_bottom=(248, 251, 255),
        up=(22, 163, 106),
        down=(220, 53, 69),
        marker=(33, 110, 220),
        marker_text=(255, 255, 255),
    ),
    "dark": Theme(
        bg=(17, 20, 26),
        grid=(35, 40, 49),
        axis=(70, 78, 90),
        text=(150, 158, 170),
        title=(236, 239, 243),
        line=(77, 163, 255),
        fill_top=(33, 68, 118),
        fill_bottom=(19, 23, 31),
        up=(38, 194, 129),
        down=(240, 82, 92),
        marker=(77, 163, 255),
        marker_text=(10, 12, 16),
    ),
}


@functools.lru_cache(maxsize=64)
def hex_colour(rgb: tuple[int, int, int]) -> str:
    return f"#{rgb[0]:02x}{rgb[1]:02x}{rgb[2]:02x}"
