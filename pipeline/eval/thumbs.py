"""Small pictures for the contact sheet: photo, GT, result on a checkerboard, error map, overlay.

Every function returns an ``h×w×3 uint8`` RGB thumbnail at most ``max_w`` pixels wide (and at
most ``max_w`` high, so portrait photos stay small); full-resolution inputs are downscaled with
area averaging first so that a 12 MP photo costs little.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

DEFAULT_THUMB_PX = 256
# the error map's colours (RGB): kept but not in the ground truth / in the ground truth, missed
FALSE_POSITIVE_RGB = (255, 30, 30)
MISSED_RGB = (40, 90, 255)
CHECKER_CELL_PX = 8
_PALETTE = np.array(
    [
        [230, 25, 75],
        [60, 180, 75],
        [255, 225, 25],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
    ],
    np.uint8,
)


def thumb_hw(hw: tuple[int, int], max_px: int = DEFAULT_THUMB_PX) -> tuple[int, int]:
    """``(h, w)`` of the thumbnail: aspect kept, the longer side at most ``max_px``."""
    h, w = hw
    scale = min(1.0, max_px / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def shrink(arr: np.ndarray, max_px: int = DEFAULT_THUMB_PX) -> np.ndarray:
    """Area-downscale an ``H×W`` or ``H×W×C`` array (bool becomes float32 coverage)."""
    src = arr.astype(np.float32) if arr.dtype == np.bool_ else arr
    th, tw = thumb_hw(arr.shape[:2], max_px)
    if (th, tw) == arr.shape[:2]:
        return src.copy()
    return cv2.resize(src, (tw, th), interpolation=cv2.INTER_AREA)


def photo(image: np.ndarray, max_px: int = DEFAULT_THUMB_PX) -> np.ndarray:
    """The photo itself, downscaled."""
    return shrink(image, max_px)


def gray(values01: np.ndarray, max_px: int = DEFAULT_THUMB_PX) -> np.ndarray:
    """An ``H×W`` map in [0, 1] (alpha, mask) shown as gray RGB."""
    small = np.clip(shrink(values01.astype(np.float32), max_px), 0.0, 1.0)
    g = (small * 255.0 + 0.5).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=2)


def instance_map(
    indices: np.ndarray, main_ids: tuple[int, ...], max_px: int = DEFAULT_THUMB_PX
) -> np.ndarray:
    """An instance index map in colours: main instances bright, the others at half intensity."""
    th, tw = thumb_hw(indices.shape, max_px)
    small = cv2.resize(indices.astype(np.int32), (tw, th), interpolation=cv2.INTER_NEAREST)
    out = np.zeros((th, tw, 3), np.uint8)
    for idx in np.unique(small):
        if idx == 0:
            continue
        colour = _PALETTE[(int(idx) - 1) % len(_PALETTE)].astype(np.float32)
        out[small == idx] = (colour if int(idx) in main_ids else colour * 0.45).astype(np.uint8)
    return out


def checkerboard(rgba: np.ndarray, max_px: int = DEFAULT_THUMB_PX) -> np.ndarray:
    """An ``H×W×4 uint8`` RGBA result over a light/dark gray checkerboard."""
    if rgba.ndim != 3 or rgba.shape[2] != 4:
        raise ValueError(f"rgba must be H×W×4, got shape {rgba.shape}")
    alpha = rgba[..., 3].astype(np.float32) / 255.0
    # premultiply before shrinking so background colour under alpha 0 does not bleed in
    premult = rgba[..., :3].astype(np.float32) * alpha[..., None]
    small_rgb = shrink(premult, max_px)
    small_a = shrink(alpha, max_px)[..., None]
    th, tw = small_a.shape[:2]
    yy, xx = np.mgrid[0:th, 0:tw]
    cells = ((yy // CHECKER_CELL_PX + xx // CHECKER_CELL_PX) % 2).astype(np.float32)
    board = (200.0 + 55.0 * cells)[..., None]
    out = small_rgb + board * (1.0 - small_a)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def error_map(
    pred: np.ndarray, gt: np.ndarray, image: np.ndarray, max_px: int = DEFAULT_THUMB_PX
) -> np.ndarray:
    """Red where the result keeps what GT does not (false positive), blue where it misses GT.

    ``pred`` and ``gt`` are ``H×W`` in [0, 1] (alpha or bool); the photo shows dimmed beneath.
    """
    diff = shrink(pred.astype(np.float32) - gt.astype(np.float32), max_px)
    base = shrink(image, max_px).astype(np.float32).mean(axis=2, keepdims=True) * 0.35
    out = np.repeat(base, 3, axis=2)
    fp = np.clip(diff, 0.0, 1.0)[..., None]
    fn = np.clip(-diff, 0.0, 1.0)[..., None]
    out = out * (1.0 - fp) + fp * np.array(FALSE_POSITIVE_RGB, np.float64)
    out = out * (1.0 - fn) + fn * np.array(MISSED_RGB, np.float64)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def outline_overlay(
    image: np.ndarray, masks_kept: list[tuple[np.ndarray, bool]], max_px: int = DEFAULT_THUMB_PX
) -> np.ndarray:
    """The photo with each instance outlined: green when kept, red when dropped.

    Used when ``pipeline.viz`` (the project's debug view) is not available.
    """
    out = np.ascontiguousarray(shrink(image, max_px))
    for mask, kept in masks_kept:
        small = (shrink(mask, max_px) >= 0.5).astype(np.uint8)
        contours, _ = cv2.findContours(small, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        colour = (40, 220, 60) if kept else (230, 40, 40)
        cv2.drawContours(out, contours, -1, colour, 1)
    return out


def encode_jpeg(rgb: np.ndarray, quality: int = 85) -> bytes:
    """JPEG bytes of an ``h×w×3 uint8`` RGB array."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def write_thumb(rgb: np.ndarray, path: Path) -> Path:
    """Write ``rgb`` (``h×w×3 uint8``) as a JPEG at ``path``."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"thumbnail must be h×w×3 uint8, got {rgb.shape} {rgb.dtype}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_jpeg(rgb))
    return path
