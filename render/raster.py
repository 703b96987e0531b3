"""A small indexed-colour raster: palette, anti-aliased text from a glyph atlas, PNG encoding.

Charts are drawn straight into a ``uint8`` array of palette indices with numpy and encoded as an
8-bit palette PNG, deflated by ISA-L (``isal``) at level 1: measured several times cheaper
than drawing with Pillow or cairo and encoding RGB (see BENCHMARKS.md). Glyphs are rasterised
once per process by Pillow's FreeType binding; text is blended onto its background through
palette ramps (8 coverage levels per text colour), exact because chart text never overlaps other
ink.
"""

from __future__ import annotations

import functools
import struct
import zlib

import numpy as np
import numpy.typing as npt
from isal import isal_zlib
from PIL import Image, ImageDraw, ImageFont

Pixels = npt.NDArray[np.uint8]
RGB = tuple[int, int, int]

#: Coverage levels per text ramp (index 0 is the background itself).
LEVELS = 8


class Palette:
    """Up to 256 colours; ``ramp(bg, fg)`` adds ``LEVELS`` blends from ``bg`` to ``fg``."""

    def __init__(self) -> None:
        self.colours: list[RGB] = []

    def add(self, colour: RGB) -> int:
        if len(self.colours) >= 256:
            raise ValueError("a palette holds at most 256 colours")
        self.colours.append(colour)
        return len(self.colours) - 1

    def ramp(self, bg: RGB, fg: RGB) -> int:
        """Add the blends and return the index of level 0 (the plain background)."""
        base = len(self.colours)
        for level in range(LEVELS):
            a = level / (LEVELS - 1)
            self.add(
                (
                    round(bg[0] + (fg[0] - bg[0]) * a),
                    round(bg[1] + (fg[1] - bg[1]) * a),
                    round(bg[2] + (fg[2] - bg[2]) * a),
                )
            )
        return base

    def plte(self) -> bytes:
        return b"".join(bytes(c) for c in self.colours)


class Font:
    """Glyph coverage masks of printable ASCII at one pixel size, all one line high."""

    def __init__(self, size_px: int) -> None:
        font = ImageFont.load_default(size=size_px)
        if not isinstance(font, ImageFont.FreeTypeFont):
            raise RuntimeError("Pillow was built without FreeType: chart text needs it")
        ascent, descent = font.getmetrics()
        self.height = ascent + descent
        self.ascent = ascent
        self.glyphs: dict[str, npt.NDArray[np.uint8]] = {}
        for code in range(32, 127):
            ch = chr(code)
            advance = max(1, round(font.getlength(ch)))
            cell = Image.new("L", (advance + 2, self.height), 0)
            ImageDraw.Draw(cell).text((0, 0), ch, font=font, fill=255)
            levels = (np.asarray(cell, dtype=np.uint16) * (LEVELS - 1) + 127) // 255
            self.glyphs[ch] = levels[:, :advance].astype(np.uint8)
        self._missing = self.glyphs["?"]
        self._advances = {ch: int(glyph.shape[1]) for ch, glyph in self.glyphs.items()}

    def width(self, text: str) -> int:
        advances = self._advances
        try:
            return sum([advances[ch] for ch in text])
        except KeyError:  # a character without a glyph is drawn as "?"
            return sum([advances.get(ch, advances["?"]) for ch in text])

    @functools.lru_cache(maxsize=4_096)  # noqa: B019 - one Font per size per process, kept
    def mask(self, text: str) -> npt.NDArray[np.uint8]:
        """Coverage levels (0..LEVELS-1) of ``text``, ``height`` rows high."""
        parts = [self.glyphs.get(ch, self._missing) for ch in text]
        if not parts:
            return np.zeros((self.height, 0), np.uint8)
        return np.concatenate(parts, axis=1)


@functools.lru_cache(maxsize=8)
def font(size_px: int) -> Font:
    return Font(size_px)


def draw_text(
    img: Pixels, text: str, x: int, y: int, ramp: int, f: Font, *, anchor: str = "l"
) -> int:
    """Draw ``text`` with its top at row ``y``; ``anchor`` l/r/c places ``x``. Returns the width."""
    mask = f.mask(text)
    h, w = mask.shape
    if anchor == "r":
        x -= w
    elif anchor == "c":
        x -= w // 2
    rows, cols = img.shape
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, cols), min(y + h, rows)
    if x0 >= x1 or y0 >= y1:
        return int(w)
    sub = mask[y0 - y : y1 - y, x0 - x : x1 - x]
    region = img[y0:y1, x0:x1]
    np.copyto(region, (sub + ramp).astype(np.uint8), where=sub > 0)
    return int(w)


def canvas(width_px: int, height_px: int, fill: int) -> tuple[Pixels, Pixels]:
    """``(rows, img)``: PNG scanlines with their filter byte (0: None) and a view of the pixels.

    Drawing into ``img`` fills ``rows``, which ``encode_png`` compresses without a copy.
    """
    rows = np.full((height_px, width_px + 1), fill, np.uint8)
    rows[:, 0] = 0
    return rows, rows[:, 1:]


def encode_png(rows: Pixels, palette: Palette, *, level: int = 1) -> bytes:
    """An 8-bit palette PNG of ``rows`` (from ``canvas``), deflated at ``level``.

    ISA-L's deflate levels are 0..3; its stream is standard zlib, as PNG requires.
    """
    h, w = rows.shape[0], rows.shape[1] - 1
    raw = rows
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0)
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _chunk(b"IHDR", ihdr),
            _chunk(b"PLTE", palette.plte()),
            _chunk(b"IDAT", isal_zlib.compress(raw.data, level)),
            _chunk(b"IEND", b""),
        )
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(kind))
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)
