"""Focus cues: sharpness relative to the image and the sharpest instance; defocus and motion blur.

All cues are measured inside the instance mask eroded by ``FOCUS_ERODE_PX`` working pixels, so the
contrast between the object and its background (sharp even when the object is soft, and where
masks are least accurate) does not count as detail. Measured on the working grid
(``pipeline.features.grid``), so values are relative to that resolution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.features.grid import MaskView, erode

# erosion of the mask before measuring focus, working pixels: wider than the 3×3 Laplacian support
# plus the usual 1–2 px error of a SAM/YOLO mask edge
FOCUS_ERODE_PX = 3
# the detail ratio is measured after this Gaussian pre-smoothing (px), which makes it robust to
# sensor noise (σ = 2 grey levels changes it by < 5 %) and JPEG ringing
DETAIL_SMOOTH_PX = 1.0
# only pixels with a smoothed gradient of at least this (grey levels / px) are edges; below 1 %
# edge pixels in the mask the instance has no measurable detail and reads as fully blurred
EDGE_MIN_GRAD = 4.0
EDGE_MIN_SHARE = 0.01
# detail ratio of a sharp step edge after the pre-smoothing (measured: 0.76); finer texture
# reaches 1.2, a Gaussian defocus of σ = 2 px halves it, σ = 4 px leaves almost no edges
DETAIL_RATIO_SHARP = 0.75
# floor of the detail left (share of a sharp edge's) in ``defocus_log``: below it, defocus reads
# as total (σ ≳ 15 px on the working grid), so a textureless mask cannot reach an unbounded value
DEFOCUS_LOG_FLOOR = 0.05


@dataclass(frozen=True)
class FocusMaps:
    """Derivative maps of the working-grid grey image (``h×w float32`` each, grey levels 0–255).

    Attributes:
        lap: 3×3 Laplacian of the grey image (grey levels / px²).
        lap_s: the same after a ``DETAIL_SMOOTH_PX`` Gaussian.
        gx, gy: Sobel derivatives / 8 after the same Gaussian (grey levels / px).
        image_lap_rms: RMS of ``lap`` over the whole image.
    """

    lap: np.ndarray
    lap_s: np.ndarray
    gx: np.ndarray
    gy: np.ndarray
    image_lap_rms: float


def focus_maps(grey: np.ndarray) -> FocusMaps:
    """Derivatives of an ``h×w float32`` grey image, computed once for every instance."""
    lap = cv2.Laplacian(grey, cv2.CV_32F, ksize=1)
    smooth = cv2.GaussianBlur(grey, (0, 0), DETAIL_SMOOTH_PX)
    lap_s = cv2.Laplacian(smooth, cv2.CV_32F, ksize=1)
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3) * 0.125
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3) * 0.125
    image_lap_rms = float(np.sqrt(np.mean(np.square(lap, dtype=np.float64))))
    return FocusMaps(lap, lap_s, gx, gy, image_lap_rms)


@dataclass(frozen=True)
class FocusRaw:
    """Raw focus measurements of one instance (input of ``focus_features``).

    Attributes:
        lap_rms: RMS Laplacian inside the eroded mask (grey levels / px²); 0 for an empty mask.
        detail_ratio: mean |Laplacian| / mean gradient magnitude over edge pixels of the
            pre-smoothed image (1/px); contrast-invariant, it falls roughly as 1/σ when a texture
            is blurred with a Gaussian of σ px; 0 when the mask has no measurable edges.
        coherence: structure-tensor coherence in [0, 1]: 0 when gradients point every way,
            1 when they all share one direction.
    """

    lap_rms: float
    detail_ratio: float
    coherence: float


def _inner(view: MaskView) -> np.ndarray:
    """The mask crop eroded by ``FOCUS_ERODE_PX``, less when that would leave nothing."""
    for radius_px in (FOCUS_ERODE_PX, 1, 0):
        inner = erode(view.crop, radius_px)
        if inner.any():
            return inner
    return inner


def focus_raw(maps: FocusMaps, view: MaskView) -> FocusRaw:
    """Measure one instance's focus on the working grid (crop only, so it stays cheap)."""
    if view.empty:
        return FocusRaw(0.0, 0.0, 0.0)
    inner = _inner(view)
    window = (slice(view.y0, view.y1), slice(view.x0, view.x1))
    lap = maps.lap[window][inner].astype(np.float64)
    gx = maps.gx[window][inner].astype(np.float64)
    gy = maps.gy[window][inner].astype(np.float64)
    lap_rms = math.sqrt(float(np.mean(lap * lap)))
    grad = np.hypot(gx, gy)
    edges = grad >= EDGE_MIN_GRAD
    detail_ratio = 0.0
    if np.count_nonzero(edges) >= EDGE_MIN_SHARE * edges.size:
        lap_s = np.abs(maps.lap_s[window][inner][edges])
        detail_ratio = float(np.mean(lap_s)) / float(np.mean(grad[edges]))
    jxx, jyy, jxy = float(np.sum(gx * gx)), float(np.sum(gy * gy)), float(np.sum(gx * gy))
    trace = jxx + jyy
    coherence = math.sqrt((jxx - jyy) ** 2 + 4.0 * jxy * jxy) / trace if trace > 1e-6 else 0.0
    return FocusRaw(lap_rms, detail_ratio, min(1.0, coherence))


def focus_features(raws: Sequence[FocusRaw], image_lap_rms: float) -> list[dict[str, float]]:
    """Focus cues of every instance of one image.

    Returns, per instance:
        sharpness_rel_image: ``r / (1 + r)`` with ``r`` = instance RMS Laplacian / image RMS
            Laplacian, in [0, 1): 0.5 = as much fine detail as the image on average.
        sharpness_rel_max: instance RMS Laplacian / the largest among the instances, in [0, 1]
            (1 for the sharpest instance; all 0 when no instance has any detail).
        blur: defocus estimate in [0, 1]: ``1 - min(1, detail_ratio / DETAIL_RATIO_SHARP)``;
            0 = edges as crisp as a sharp step edge, ≈ 0.5 for a Gaussian defocus of σ = 2 px
            (working grid), 1 when no edge is left. A textureless or smoothly shaded object also
            reads as blurred (focus is unobservable there).
        defocus_log: the same estimate on a log scale of the detail left, in [0, 1]:
            ``log((1 + f) / (d + f)) / log((1 + f) / f)`` with ``d = 1 - blur`` and ``f`` =
            ``DEFOCUS_LOG_FLOOR``: 0 for a sharp edge, 1 when no edge is left. The detail
            ratio falls as 1/σ, so each doubling of σ adds half as much ``blur`` as the one
            before (0.5, 0.75, 0.875 …), crowding strong defocus near 1, while it adds about
            the same here (0.21, 0.41, 0.59 …): the linear ranker orders defocused instances
            among themselves by it (``pipeline/models/RANKER_CARD.md``).
        motion_blur: structure-tensor coherence in [0, 1]: motion blur along one direction
            removes the gradients along it, so the rest align (→ 1); a striped texture does too.
    """
    top = max((raw.lap_rms for raw in raws), default=0.0)
    floor = DEFOCUS_LOG_FLOOR
    out = []
    for raw in raws:
        ratio = raw.lap_rms / image_lap_rms if image_lap_rms > 1e-9 else 0.0
        detail = min(1.0, raw.detail_ratio / DETAIL_RATIO_SHARP)  # share of a sharp edge's
        out.append(
            {
                "sharpness_rel_image": ratio / (1.0 + ratio),
                "sharpness_rel_max": raw.lap_rms / top if top > 1e-9 else 0.0,
                "blur": 1.0 - detail,
                "defocus_log": math.log((1.0 + floor) / (detail + floor))
                / math.log((1.0 + floor) / floor),
                "motion_blur": raw.coherence,
            }
        )
    return out
