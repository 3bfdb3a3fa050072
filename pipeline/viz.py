"""The debug view: what was found, how it ranked, what was kept and why, next to the alpha.

Inputs are plain data (``DebugItem``) so this module depends on no other stage. Layout of the
returned ``H'×W'×3 uint8`` image (see ``debug_layout``):

* the photo with every instance outlined (a band of ``line_px`` just inside its mask) in its
  role colour, and a tag ``"#<rank> <score> <cue><value> <cue><value>"`` at its box: the two
  cues that moved its rank most (``pipeline.explain``). Tags never cover each other: placed
  greedily, best rank first; one that finds no free spot shrinks to ``#<rank>`` or is left
  out, and the legend says how many (every instance is listed there anyway);
* the output alpha as grey (``round(alpha × 255)``) and, when there is one, the salient map
  as grey (``round(map × 255)``), beside the photo in a row, or in a column when that fills a
  16:9 screen better;
* a legend strip below: the role colours and the panels, how to read a tag, then one line per
  instance with its reason.

Line width and font size scale with the image, so the view reads the same at 400 and 4000 px.
Text goes through ``pipeline.viz_text.drawable``: symbols the bundled font lacks (``×``, ``≥``)
are spelled out, never drawn as empty boxes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageDraw

from pipeline.types import check_alpha, check_image, check_mask, check_saliency
from pipeline.viz_text import Placed, Tag, drawable, fit, font, place_tags

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
SCREEN_ASPECT = 16 / 9  # a row or a column of panels: whichever is closer to this shape
LEGEND_HEAD_LINES = 2  # role colours and panels; how to read a tag


@dataclass(frozen=True)
class DebugItem:
    """One instance as the debug view needs it.

    ``rank`` 1 = best; ``role`` one of "main", "interacting", "kept", "dropped"; ``score`` the
    ranker's score; ``mask`` ``H×W bool``; ``xyxy`` box in original pixels (4 floats);
    ``top_features`` ``((name, value), …)`` strongest first (two are printed); with
    ``contributions`` the values are signed shares of the score (printed ``name+0.52``), else
    cue values (``name=0.52``); ``reason`` the selection's one-line reason.
    """

    rank: int
    label: str
    role: str
    score: float
    mask: np.ndarray
    xyxy: np.ndarray | Sequence[float]
    top_features: tuple[tuple[str, float], ...] = ()
    reason: str = ""
    contributions: bool = False


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
    saliency_yx: tuple[int, int] | None = None  # the salient map's panel, when there is one


def debug_layout(h: int, w: int, n_items: int, with_saliency: bool = False) -> DebugLayout:
    """Layout for an ``h×w`` photo with ``n_items`` instances (and the salient map).

    ``n`` panels (2, or 3 with the map) in a row → ``(h + legend, n·w)``, or in a column →
    ``(n·h + legend, w)``, whichever shape is closer to 16:9 (for two panels: a column when
    ``w / h > 16/9``). ``line_px = max(1, round(max(h, w) / 400))``,
    ``font_px = max(11, round(max(h, w) / 50))``.
    """
    if h < 1 or w < 1:
        raise ValueError(f"image must be at least 1×1, got {h}×{w}")
    side = max(h, w)
    line_px = max(1, round(side / 400))
    font_px = max(11, round(side / 50))
    n = 3 if with_saliency else 2
    row_error = abs(math.log(n * w / h / SCREEN_ASPECT))
    stacked = abs(math.log(w / (n * h) / SCREEN_ASPECT)) < row_error
    corners = [(k * h, 0) if stacked else (0, k * w) for k in range(n)]
    top_h, top_w = (n * h, w) if stacked else (h, n * w)
    listed = min(n_items, MAX_LEGEND_ITEMS) + (1 if n_items > MAX_LEGEND_ITEMS else 0)
    legend_h = (LEGEND_HEAD_LINES + listed) * _line_height(font_px) + 2 * _pad(font_px)
    return DebugLayout(
        top_h + legend_h,
        top_w,
        corners[0],
        corners[1],
        top_h,
        line_px,
        font_px,
        corners[2] if with_saliency else None,
    )


def debug_view(
    image: np.ndarray,
    items: Sequence[DebugItem],
    alpha: np.ndarray,
    saliency: np.ndarray | None = None,
) -> np.ndarray:
    """Render the debug view: ``image`` ``H×W×3 uint8``, ``alpha`` ``H×W float32`` in [0, 1],
    ``saliency`` an optional ``H×W float32`` map in [0, 1] → ``H'×W'×3 uint8`` laid out as
    ``debug_layout(H, W, len(items), saliency is not None)`` says."""
    check_image(image)
    h, w = image.shape[:2]
    check_alpha(alpha, (h, w))
    if alpha.size and (float(alpha.min()) < -1e-3 or float(alpha.max()) > 1 + 1e-3):
        raise ValueError(f"alpha must lie in [0, 1], got [{alpha.min():g}, {alpha.max():g}]")
    if saliency is not None:
        check_saliency(saliency, (h, w))
    for item in items:
        if item.role not in ROLE_COLOURS:
            known = ", ".join(ROLE_COLOURS)
            raise ValueError(f"unknown role {item.role!r} for #{item.rank}; expected {known}")
        check_mask(item.mask, (h, w), f"mask of #{item.rank}")
        if np.asarray(item.xyxy).shape != (4,):
            raise ValueError(
                f"xyxy of #{item.rank} must have shape (4,), got {np.shape(item.xyxy)}"
            )

    layout = debug_layout(h, w, len(items), saliency is not None)
    order = sorted(items, key=lambda it: (list(ROLE_COLOURS).index(it.role), -it.rank))
    photo = image.copy()
    for item in order:
        photo[_outline(item.mask, layout.line_px)] = ROLE_COLOURS[item.role]
    # tags are drawn on the photo panel alone, so text can never spill onto another panel
    face = font(layout.font_px)
    photo_pil = Image.fromarray(photo)
    left_out = _draw_tags(ImageDraw.Draw(photo_pil), face, items, (h, w), layout.font_px)

    canvas = Image.new("RGB", (layout.width, layout.height), LEGEND_BG)
    canvas.paste(photo_pil, layout.photo_yx[::-1])
    canvas.paste(_grey(alpha), layout.alpha_yx[::-1])
    if saliency is not None and layout.saliency_yx is not None:
        canvas.paste(_grey(saliency), layout.saliency_yx[::-1])
    _draw_legend(ImageDraw.Draw(canvas), face, items, layout, left_out)
    return np.asarray(canvas).copy()


def layers_debug_view(layers) -> np.ndarray:
    """The debug view of a ``pipeline.layers.Layers``: its layers, the alpha of the layers that
    are on, the salient map when one was computed, and per layer the cues that moved its rank
    (the ranker's contributions when it gave them, ``pipeline.explain``)."""
    from pipeline.explain import strongest_cues

    instances = layers.instances
    items = [
        DebugItem(
            rank=layer.rank,
            label=layer.label,
            role=layer.role.value,
            score=layer.score,
            mask=layer.instance.mask,
            xyxy=layer.instance.xyxy,
            top_features=strongest_cues(
                layer.instance, instances, layers.contributions.get(layer.instance.id)
            ),
            reason=layer.reason,
            contributions=bool(layers.contributions),
        )
        for layer in layers
    ]
    return debug_view(layers.image, items, layers.alpha(), saliency=layers.saliency)


def _grey(values: np.ndarray) -> Image.Image:
    """An ``H×W`` array in [0, 1] as an RGB image of grey ``round(v × 255)``."""
    grey = np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)
    return Image.fromarray(grey, "L").convert("RGB")


def _outline(mask: np.ndarray, line_px: int) -> np.ndarray:
    """``H×W bool``: the band of ``line_px`` just inside the mask edge (holes and the image
    border count as edges, so a frame-truncated object is outlined along the frame too)."""
    size = 2 * line_px + 1
    kernel = np.ones((size, size), np.uint8)
    m = mask.astype(np.uint8)
    eroded = cv2.erode(m, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return mask & (eroded == 0)


def label_text(item: DebugItem) -> str:
    """The tag of ``item``: ``#rank score`` and its two strongest cues."""
    if item.contributions:
        cues = " ".join(f"{name}{value:+.2f}" for name, value in item.top_features[:2])
    else:
        cues = " ".join(f"{name}={value:.2f}" for name, value in item.top_features[:2])
    return f"#{item.rank} {item.score:.2f} {cues}".rstrip()


def _draw_tags(draw, face, items: Sequence[DebugItem], hw: tuple[int, int], font_px: int):
    """Tags in the role colours, placed by ``place_tags`` (best rank first); returns
    ``(shortened, left out)`` counts for the legend."""
    h, w = hw
    pad = _pad(font_px)
    ranked = sorted(items, key=lambda it: it.rank)
    texts = [(drawable(label_text(it), font_px), f"#{it.rank}") for it in ranked]

    def size(text: str) -> tuple[int, int]:
        left, top, right, bottom = draw.textbbox((0, 0), text, font=face)
        return right - left + 2 * pad, bottom - top + 2 * pad

    tags = []
    for it, (full, short) in zip(ranked, texts, strict=True):
        full = fit(draw, face, full, w - 2 * pad)
        x0, y0, x1, y1 = (float(v) for v in np.asarray(it.xyxy, np.float64))
        tags.append((full, Tag((x0, y0, x1, y1), size(full), size(short))))
    spots = place_tags([tag for _, tag in tags], (w, h))
    for it, (full, _), spot in zip(ranked, tags, spots, strict=True):
        if spot is not None:
            _draw_tag(draw, face, it, f"#{it.rank}" if spot.short else full, spot, pad)
    return sum(1 for s in spots if s is not None and s.short), sum(1 for s in spots if s is None)


def _draw_tag(draw, face, item: DebugItem, text: str, spot: Placed, pad: int) -> None:
    left, top, _, _ = draw.textbbox((0, 0), text, font=face)
    colour = ROLE_COLOURS[item.role]
    x1, y1 = spot.x + spot.width - 1, spot.y + spot.height - 1
    draw.rectangle([spot.x, spot.y, x1, y1], fill=colour)
    ink = (255, 255, 255) if item.role == "dropped" else (0, 0, 0)  # contrast on red
    draw.text((spot.x + pad - left, spot.y + pad - top), text, font=face, fill=ink)


def _draw_legend(draw, face, items: Sequence[DebugItem], layout: DebugLayout, left_out) -> None:
    pad = _pad(layout.font_px)
    line_h = _line_height(layout.font_px)
    x, y = pad, layout.legend_y + pad
    swatch = max(6, layout.font_px * 3 // 4)
    for role, colour in reversed(ROLE_COLOURS.items()):  # main first
        draw.rectangle([x, y + 2, x + swatch, y + 2 + swatch], fill=colour)
        x += swatch + pad
        draw.text((x, y), role, font=face, fill=LEGEND_FG)
        x += int(draw.textlength(role, font=face)) + 3 * pad
    panels = "panels: photo | alpha" + (" | salient map" if layout.saliency_yx else "")
    width = layout.width - 2 * pad
    draw.text((x, y), fit(draw, face, panels, max(width - x, 0)), font=face, fill=LEGEND_FG)
    lines = [(_reading_note(items, left_out), LEGEND_FG)]
    ranked = sorted(items, key=lambda it: it.rank)
    lines += [
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
        text = fit(draw, face, drawable(line, layout.font_px), width)
        draw.text((pad, layout.legend_y + pad + i * line_h), text, font=face, fill=colour)


def _reading_note(items: Sequence[DebugItem], left_out: tuple[int, int]) -> str:
    """How to read a tag, and how many tags did not fit."""
    if any(it.contributions for it in items):
        note = "tag: #rank score, cue±v = what the cue added to the ranker's score"
    else:
        note = "tag: #rank score, cue=value where it differs most from the other instances"
    shortened, dropped = left_out
    if shortened:
        note += f" · {shortened} tag(s) cut to #rank"
    if dropped:
        note += f" · {dropped} tag(s) left out"
    if shortened or dropped:
        note += " (no room without covering another)"
    return note


def _line_height(font_px: int) -> int:
    return round(font_px * 1.35)


def _pad(font_px: int) -> int:
    return max(2, font_px // 4)
