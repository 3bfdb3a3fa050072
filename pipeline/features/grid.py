"""The working grid the cues are computed on, and per-instance mask crops.

Cues are ratios (shares, relative sharpness), so they do not need the full 12 MP resolution:
images above ``WORK_MAX_PX`` are reduced to a working grid of about that many pixels (area
averaging for the grey image, nearest sampling at pixel centres for masks and maps), which keeps
every cue well under a second on full-resolution photos. A 1 MP image is used as is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

# ≈ 1.2 MP: a 1 MP photo keeps its resolution, a 12 MP one is reduced ≈ 3.2× per side
WORK_MAX_PX = 1_200_000
# A mask edge this close to a side of the frame (share of the shorter side) touches it: masks of
# a 320-px detector are upsampled from an 80² prototype grid, so an object cut by the frame
# often ends 1–5 px short of it (seen on 9 of the 20 DAVIS photos, int8 YOLOv8n-seg), and read
# as not truncated at all.
FRAME_TOL_FRAC = 0.01


@dataclass(frozen=True)
class Grid:
    """Sampling of an ``H×W`` image onto an ``h×w`` working grid.

    Attributes:
        hw: original ``(H, W)``.
        work_hw: working ``(h, w)``; equal to ``hw`` when no reduction is needed.
        rows, cols: ``(h,)`` / ``(w,)`` int64 original indices sampled (pixel centres).
    """

    hw: tuple[int, int]
    work_hw: tuple[int, int]
    rows: np.ndarray
    cols: np.ndarray

    @property
    def reduced(self) -> bool:
        return self.work_hw != self.hw

    @property
    def diag_px(self) -> float:
        """Diagonal of the working grid in working pixels."""
        return math.hypot(*self.work_hw)

    def sample(self, array: np.ndarray) -> np.ndarray:
        """Nearest sample of an ``H×W`` array (mask or map) onto the ``h×w`` grid."""
        if not self.reduced:
            return array
        return array[self.rows][:, self.cols]


def make_grid(hw: tuple[int, int], max_px: int = WORK_MAX_PX) -> Grid:
    """A working grid for an image of ``hw = (H, W)`` with at most about ``max_px`` pixels."""
    height, width = int(hw[0]), int(hw[1])
    factor = min(1.0, math.sqrt(max_px / float(height * width)))
    h = max(1, int(round(height * factor)))
    w = max(1, int(round(width * factor)))
    rows = np.minimum(((np.arange(h) + 0.5) * height / h).astype(np.int64), height - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * width / w).astype(np.int64), width - 1)
    return Grid((height, width), (h, w), rows, cols)


def work_grey(image: np.ndarray, grid: Grid) -> np.ndarray:
    """``h×w float32`` grey (0–255) of an ``H×W×3 uint8`` RGB image on the working grid."""
    if grid.reduced:
        h, w = grid.work_hw
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)


@dataclass(frozen=True)
class MaskView:
    """One instance mask on the working grid, cropped to its bounding box.

    Attributes:
        mask: ``h×w bool`` full working-grid mask.
        y0, x0, y1, x1: crop bounds in working pixels (end exclusive); all 0 for an empty mask.
        crop: ``(y1-y0)×(x1-x0) bool`` mask crop.
        boundary: same-shape bool crop: mask pixels with a 4-neighbour outside the mask, pixels
            outside the image counting as outside (so pixels on the frame are boundary too).
        on_frame: same-shape bool crop: the mask's outermost row/column pixels on each side it
            reaches (``frame_sides``: within ``frame_tolerance_px`` of the frame).
        area_px: mask pixels on the working grid.
    """

    mask: np.ndarray
    y0: int
    x0: int
    y1: int
    x1: int
    crop: np.ndarray
    boundary: np.ndarray
    on_frame: np.ndarray
    area_px: int

    @property
    def empty(self) -> bool:
        return self.area_px == 0

    @property
    def box(self) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)`` in working pixels, end exclusive."""
        return self.x0, self.y0, self.x1, self.y1


_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


def frame_tolerance_px(hw: tuple[int, int]) -> int:
    """Largest gap in pixels between a mask and a side of the ``hw`` frame that still counts
    as touching it: ``round(FRAME_TOL_FRAC · min(H, W))``."""
    return int(round(FRAME_TOL_FRAC * min(hw)))


def frame_sides(box: tuple[int, int, int, int], hw: tuple[int, int]) -> tuple[bool, ...]:
    """``(top, bottom, left, right)``: which sides of the frame a tight box ``(y0, x0, y1, x1)``
    (end exclusive) reaches, up to ``frame_tolerance_px``."""
    y0, x0, y1, x1 = box
    height, width = hw
    tol = frame_tolerance_px(hw)
    return y0 <= tol, height - y1 <= tol, x0 <= tol, width - x1 <= tol


def mask_view(mask_work: np.ndarray) -> MaskView:
    """Crop an ``h×w bool`` working-grid mask to its box and find its boundary pixels."""
    rows = np.flatnonzero(mask_work.any(axis=1))
    if len(rows) == 0:
        empty = np.zeros((0, 0), bool)
        return MaskView(mask_work, 0, 0, 0, 0, empty, empty, empty, 0)
    cols = np.flatnonzero(mask_work[rows[0] : rows[-1] + 1].any(axis=0))
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    crop = mask_work[y0:y1, x0:x1]
    boundary = crop & ~erode(crop, 1)
    height, width = mask_work.shape
    top, bottom, left, right = frame_sides((y0, x0, y1, x1), (height, width))
    on_frame = np.zeros_like(crop)
    # the crop is tight, so its outermost row/column is the mask's edge facing that side
    if top:
        on_frame[0, :] = crop[0, :]
    if bottom:
        on_frame[-1, :] = crop[-1, :]
    if left:
        on_frame[:, 0] |= crop[:, 0]
    if right:
        on_frame[:, -1] |= crop[:, -1]
    return MaskView(mask_work, y0, x0, y1, x1, crop, boundary, on_frame, int(crop.sum()))


def erode(crop: np.ndarray, radius_px: int) -> np.ndarray:
    """Erode a tight bool mask crop by ``radius_px`` (3×3 cross element, iterated).

    The crop is the tight box of its mask, so every pixel beyond it (inside or beyond the image)
    is outside the mask: the frame erodes the mask like the background does.
    """
    if radius_px <= 0 or crop.size == 0:
        return crop.copy()
    padded = np.pad(crop.astype(np.uint8), radius_px, constant_values=0)
    eroded = cv2.erode(padded, _CROSS, iterations=radius_px)
    return eroded[radius_px:-radius_px, radius_px:-radius_px].astype(bool)
