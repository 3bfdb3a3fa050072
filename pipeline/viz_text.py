"""Text for the debug view (``pipeline.viz``): the font, characters it can draw, fitting a line
to a width, and placing instance tags so that they never cover each other.

The font is Pillow's bundled default (Aileron, scalable since Pillow 10.1), the same on every
machine. It lacks some symbols the reasons use (``×``, ``≥``, ``−``, ``→``) and accented
letters: those are drawn as their ASCII spelling (``x``, ``>=``, ``-``, ``->``, ``é`` as
``e``), anything else as ``?``, never as the font's empty box.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

# what a character the font lacks is drawn as
FALLBACKS = {
    "×": "x",
    "−": "-",
    "–": "-",
    "—": "-",
    "≥": ">=",
    "≤": "<=",
    "→": "->",
    "←": "<-",
    "✗": "x",
    "✓": "v",
    "²": "2",
    "…": "...",
    "·": "-",
}
# at most this many steps along a box's side when looking for a free spot
MAX_STEPS = 24
# a private-use code point no font draws: its rendering is the font's "missing" glyph
_NOT_A_GLYPH = "\U000f0000"


@lru_cache(maxsize=16)
def font(size_px: int):
    """Pillow's bundled scalable font at ``size_px`` (needs FreeType, in Pillow's wheels)."""
    return ImageFont.load_default(size=size_px)


@lru_cache(maxsize=4096)
def has_glyph(size_px: int, char: str) -> bool:
    """Whether ``font(size_px)`` draws ``char`` as itself rather than as its missing glyph."""
    if char.isascii():
        return True
    return _ink(size_px, char) != _ink(size_px, _NOT_A_GLYPH)


@lru_cache(maxsize=4096)
def _ink(size_px: int, text: str) -> bytes:
    """The pixels of ``text`` drawn alone (a fingerprint of the glyph)."""
    face = font(size_px)
    left, top, right, bottom = face.getbbox(text)
    image = Image.new("L", (max(right - left, 1), max(bottom - top, 1)))
    ImageDraw.Draw(image).text((-left, -top), text, font=face, fill=255)
    return image.tobytes()


def drawable(text: str, size_px: int) -> str:
    """``text`` with every character ``font(size_px)`` lacks spelled with ones it has
    (``FALLBACKS``, else ``?``)."""
    out = []
    for char in text:
        if has_glyph(size_px, char):
            out.append(char)
        else:
            # a listed spelling, else the letter without its accents (é → e), else "?"
            plain = unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode()
            spare = FALLBACKS.get(char) or plain or "?"
            out.append(spare if all(has_glyph(size_px, c) for c in spare) else "?")
    return "".join(out)


def fit(draw, face, text: str, max_w: int) -> str:
    """``text`` shortened with "…" (or "..." when the font lacks it) to at most ``max_w`` px."""
    if draw.textlength(text, font=face) <= max_w:
        return text
    ellipsis = drawable("…", face.size)
    lo, hi = 0, len(text)
    while lo < hi:  # longest prefix that fits with the ellipsis
        mid = (lo + hi + 1) // 2
        if draw.textlength(text[:mid] + ellipsis, font=face) <= max_w:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo] + ellipsis


@dataclass(frozen=True)
class Tag:
    """A label to place: ``box`` ``(x0, y0, x1, y1)`` of its instance in pixels, and the tag's
    ``(width, height)`` with the full text and with the short one (``#rank``)."""

    box: tuple[float, float, float, float]
    size: tuple[int, int]
    short_size: tuple[int, int]


@dataclass(frozen=True)
class Placed:
    """Where a tag went: top-left ``(x, y)``, its size, and whether it holds the short text."""

    x: int
    y: int
    width: int
    height: int
    short: bool


def place_tags(tags: Sequence[Tag], panel_wh: tuple[int, int]) -> list[Placed | None]:
    """Greedy placement, ``tags`` in priority order (best rank first): each tag takes the
    first spot around its box (rows: above its top edge, inside it, below it, then down the
    box; in each row at its left edge, its right edge, beside it, then across) that is inside the
    panel and overlaps no tag placed before it; with no such spot the short text tries the
    same; None when even that does not fit (the legend lists every instance anyway). Returns
    one entry per tag, in order."""
    placed: list[Placed] = []
    out: list[Placed | None] = []
    for tag in tags:
        spot = _first_free(tag, tag.size, placed, panel_wh)
        short = spot is None
        if short:
            spot = _first_free(tag, tag.short_size, placed, panel_wh)
        if spot is None:
            out.append(None)
            continue
        size = tag.short_size if short else tag.size
        result = Placed(spot[0], spot[1], size[0], size[1], short)
        placed.append(result)
        out.append(result)
    return out


def _first_free(tag: Tag, size, placed: Sequence[Placed], panel_wh) -> tuple[int, int] | None:
    width, height = size
    panel_w, panel_h = panel_wh
    if width > panel_w or height > panel_h:
        return None
    x0, y0, x1, y1 = (int(round(v)) for v in tag.box)
    rows = [y0 - height, y0, y1, y1 - height]
    rows += list(range(y0 + height, y1 - height, height))[:MAX_STEPS]  # down the left side
    cols = [x0, x1 - width, x0 - width, x1]  # on the box's edges, then beside it
    cols += list(range(x0 + width, x1 - width, width))[:MAX_STEPS]
    for y in rows:
        for x in cols:
            x = min(max(x, 0), panel_w - width)
            y = min(max(y, 0), panel_h - height)
            if not any(_overlap((x, y, width, height), p) for p in placed):
                return x, y
    return None


def _overlap(rect: tuple[int, int, int, int], other: Placed) -> bool:
    x, y, w, h = rect
    return (
        x < other.x + other.width
        and other.x < x + w
        and y < other.y + other.height
        and (other.y < y + h)
    )
