"""The debug view: what was found, how it ranked, what was kept and why, next to the alpha.

Inputs are plain data (``DebugItem``) so this module depends on no other stage. Layout of the
returned ``H'×W'×3 uint8`` image (see ``debug_layout``):

* the photo with every instance outlined (a band of ``line_px`` just inside its mask) in its
  role colour, and a label ``"<rank> <score> <feature>=<v> <feature>=<v>"`` at its box;
* the output alpha as grey (``round(alpha × 255)``) beside the photo — to the right, or below
  when the photo is wider than 16:9 (whichever arrangement fills a 16:9 screen better);
* a legend strip below both: the role colours, then one line per instance with its reason.

Line width and font size scale with the image, so the view reads the same at 400 and 4000 px.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pipeline.types import check_alpha, check_image, check_mask

# RGB; drawn in this order so main subjects end up on top of what they overlap
ROLE_COLOURS: dict[str, tuple[int, int, int]] = {
    "dropped": (230, 40, 40),
    "kept": (255, 220, 0),
    "interacting": (0, 230, 255),
    "main": (0, 220, 60),
}
LEGEND_BG = (32, 32, 32)
LEGEND_FG = (235, 235, 235)
MAX_LEGEND_ITEMS = 12  # more instances get one "… and N more" line
SCREEN_ASPECT = 16 / 9  # side by side vs stacked: whichever fills such a screen more


@dataclass(frozen=True)
class DebugItem:
    """One instance as the debug view needs it.

    ``rank`` 1 = best; ``role`` one of "main", "interacting", "kept", "dropped"; ``score`` the
    ranker's score; ``mask`` ``H×W bool``; ``xyxy`` box in original pixels (4 floats);
    ``top_features`` ``((name, value), …)`` strongest first (two are printed); ``reason`` the
    selection's one-line reason.
    """

    rank: int
    label: str
    role: str
    score: float
    mask: np.ndarray
    xyxy: np.ndarray | Sequence[float]
    top_features: tuple[tuple[str, float], ...] = ()
    reason: str = ""


@dataclass(frozen=True)
class DebugLayout:
    """Where each panel lies in the debug view (pixels, top-left origins ``(y, x)``)."""

    height: int  # of the whole view
    width: int
    photo_yx: tuple[int, int]
    alpha_yx: tuple[int, int]
    legend_y: int  # the legend spans rows legend_y … height-1, full width
    line_px: int
    font_px: int


def debug_layout(h: int, w: int, n_items: int) -> DebugLayout:
    """Layout for an ``h×w`` photo with ``n_items`` instances.

    Side by side → ``(h + legend, 2w)``; stacked (``w / h > 16/9``) → ``(2h + legend, w)``.
    ``line_px = max(1, round(max(h, w) / 400))``, ``font_px = max(11, round(max(h, w) / 50))``.
    """
    if h < 1 or w < 1:
        raise ValueError(f"image must be at least 1×1, got {h}×{w}")
    side = max(h, w)
    line_px = max(1, round(side / 400))
    font_px = max(11, round(side / 50))
    stacked = w / h > SCREEN_ASPECT
    alpha_yx = (h, 0) if stacked else (0, w)
    top_h, top_w = (2 * h, w) if stacked else (h, 2 * w)
    listed = min(n_items, MAX_LEGEND_ITEMS) + (1 if n_items > MAX_LEGEND_ITEMS else 0)
    legend_h = (1 + listed) * _line_height(font_px) + 2 * _pad(font_px)
    return DebugLayout(top_h + legend_h, top_w, (0, 0), alpha_yx, top_h, line_px, font_px)


def debug_view(image: np.ndarray, items: Sequence[DebugItem], alpha: np.ndarray) -> np.ndarray:
    """Render the debug view: ``image`` ``H×W×3 uint8``, ``alpha`` ``H×W float32`` in [0, 1]
    → ``H'×W'×3 uint8`` laid out as ``debug_layout(H, W, len(items))`` says."""
    check_image(image)
    h, w = image.shape[:2]
    check_alpha(alpha, (h, w))
    if alpha.size and (float(alpha.min()) < -1e-3 or float(alpha.max()) > 1 + 1e-3):
        raise ValueError(f"alpha must lie in [0, 1], got [{alpha.min():g}, {alpha.max():g}]")
    for item in items:
        if item.role not in ROLE_COLOURS:
            known = ", ".join(ROLE_COLOURS)
            raise ValueError(f"unknown role {item.role!r} for #{item.rank}; expected {known}")
        check_mask(item.mask, (h, w), f"mask of #{item.rank}")
        if np.asarray(item.xyxy).shape != (4,):
            raise ValueError(
                f"xyxy of #{item.rank} must have shape (4,), got {np.shape(item.xyxy)}"
            )

    layout = debug_layout(h, w, len(items))
    order = sorted(items, key=lambda it: (list(ROLE_COLOURS).index(it.role), -it.rank))
    photo = image.copy()
    for item in order:
        photo[_outline(item.mask, layout.line_px)] = ROLE_COLOURS[item.role]
    # labels are drawn on the photo panel alone, so text can never spill onto the alpha panel
    font = _font(layout.font_px)
    photo_pil = Image.fromarray(photo)
    photo_draw = ImageDraw.Draw(photo_pil)
    for item in order:
        _draw_label(photo_draw, font, item, (h, w), layout.font_px)

    canvas = Image.new("RGB", (layout.width, layout.height), LEGEND_BG)
    canvas.paste(photo_pil, (layout.photo_yx[1], layout.photo_yx[0]))
    grey = np.rint(np.clip(alpha, 0.0, 1.0) * 255.0).astype(np.uint8)
    canvas.paste(Image.fromarray(grey, "L").convert("RGB"), layout.alpha_yx[::-1])
    _draw_legend(ImageDraw.Draw(canvas), font, items, layout)
    return np.asarray(canvas).copy()


def _outline(mask: np.ndarray, line_px: int) -> np.ndarray:
    """``H×W bool``: the band of ``line_px`` just inside the mask edge (holes and the image
    border count as edges, so a frame-truncated object is outlined along the frame too)."""
    size = 2 * line_px + 1
    kernel = np.ones((size, size), np.uint8)
    m = mask.astype(np.uint8)
    eroded = cv2.erode(m, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return mask & (eroded == 0)


def _label_text(item: DebugItem) -> str:
    features = " ".join(f"{name}={value:.2f}" for name, value in item.top_features[:2])
    return f"#{item.rank} {item.score:.2f} {features}".rstrip()


def _draw_label(draw, font, item: DebugItem, hw: tuple[int, int], font_px: int) -> None:
    """A filled tag in the role colour at the box's top-left corner (above it when there is
    room), kept inside the photo panel."""
    h, w = hw
    text = _label_text(item)
    pad = _pad(font_px)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    tag_w, tag_h = right - left + 2 * pad, bottom - top + 2 * pad
    x0, y0 = (float(v) for v in np.asarray(item.xyxy, np.float64)[:2])
    x = int(min(max(x0, 0), max(w - tag_w, 0)))
    y = int(y0 - tag_h if y0 - tag_h >= 0 else max(y0, 0))
    y = min(y, max(h - tag_h, 0))
    colour = ROLE_COLOURS[item.role]
    draw.rectangle([x, y, min(x + tag_w, w) - 1, min(y + tag_h, h) - 1], fill=colour)
    ink = (255, 255, 255) if item.role == "dropped" else (0, 0, 0)  # contrast on red
    draw.text((x + pad - left, y + pad - top), text, font=font, fill=ink)


def _draw_legend(draw, font, items: Sequence[DebugItem], layout: DebugLayout) -> None:
    pad = _pad(layout.font_px)
    line_h = _line_height(layout.font_px)
    x, y = pad, layout.legend_y + pad
    swatch = max(6, layout.font_px * 3 // 4)
    for role, colour in reversed(ROLE_COLOURS.items()):  # main first
        draw.rectangle([x, y + 2, x + swatch, y + 2 + swatch], fill=colour)
        x += swatch + pad
        draw.text((x, y), role, font=font, fill=LEGEND_FG)
        x += int(draw.textlength(role, font=font)) + 3 * pad
    ranked = sorted(items, key=lambda it: it.rank)
    lines = [
        (
            f"#{it.rank} {it.label} · {it.role} · {it.score:.2f}"
            + (f" - {it.reason}" if it.reason else ""),
            ROLE_COLOURS[it.role],
        )
        for it in ranked[:MAX_LEGEND_ITEMS]
    ]
    if len(ranked) > MAX_LEGEND_ITEMS:
        lines.append((f"… and {len(ranked) - MAX_LEGEND_ITEMS} more", LEGEND_FG))
    for i, (line, colour) in enumerate(lines, start=1):
        text = _fit(draw, font, line, layout.width - 2 * pad)
        draw.text((pad, layout.legend_y + pad + i * line_h), text, font=font, fill=colour)


def _fit(draw, font, text: str, max_w: int) -> str:
    """``text`` shortened with "…" so it is at most ``max_w`` px wide."""
    if draw.textlength(text, font=font) <= max_w:
        return text
    lo, hi = 0, len(text)
    while lo < hi:  # longest prefix that fits with the ellipsis
        mid = (lo + hi + 1) // 2
        if draw.textlength(text[:mid] + "…", font=font) <= max_w:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo] + "…"


def _line_height(font_px: int) -> int:
    return round(font_px * 1.35)


def _pad(font_px: int) -> int:
    return max(2, font_px // 4)


@lru_cache(maxsize=16)
def _font(size_px: int):
    # Pillow >= 10.1 bundles a scalable default font (needs FreeType, present in the wheels)
    return ImageFont.load_default(size=size_px)
