"""Edge refinement with pymatting: a soft alpha and decontaminated colours per instance.

Methods (``refine.method``):
- ``closed_form``: trimap with a band adapted to the instance (``trimap.trimap_from_mask``),
  pymatting's closed-form alpha (Levin et al.) on a crop around the instance, solved at reduced
  resolution when the crop is larger than ``max_solve_px`` and upsampled, then
  ``estimate_foreground_ml`` for the colours. Closed form is the estimator used: on this CPU it
  costs ≈ 1.1 s for 0.87 MP with a thin band where KNN takes ≈ 20 s and LKM ≈ 12 s.
- ``rembg``: rembg's ``alpha_matting_cutout`` recipe (thresholds 240/10, erosion 10,
  closed form, ``estimate_foreground_ml``), for comparison; see ``RembgRecipeRefiner``.
- ``none``: the binary mask as alpha.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from pipeline.config import RefineConfig
from pipeline.stages.trimap import UNKNOWN, rembg_trimap, trimap_from_mask
from pipeline.types import Instance, Matte, check_image

METHODS = ("closed_form", "rembg", "none")


def crop_box(
    instance: Instance, hw: tuple[int, int], margin_frac: float, extra_px: int = 0
) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` int crop around the instance mask (its tight box, or ``xyxy`` when
    the mask is empty) grown by ``margin_frac`` of the box side plus ``extra_px``, clipped."""
    h, w = hw
    ys = np.flatnonzero(instance.mask.any(axis=1))
    xs = np.flatnonzero(instance.mask.any(axis=0))
    if len(xs):
        x0, y0, x1, y1 = xs[0], ys[0], xs[-1] + 1, ys[-1] + 1
    else:
        x0, y0, x1, y1 = (int(round(v)) for v in instance.xyxy)
    mx = int(round(margin_frac * (x1 - x0))) + extra_px
    my = int(round(margin_frac * (y1 - y0))) + extra_px
    return max(0, x0 - mx), max(0, y0 - my), min(w, x1 + mx), min(h, y1 + my)


def _resize(array: np.ndarray, size_wh: tuple[int, int], resample) -> np.ndarray:
    """Resize a float or uint8 ``h×w`` / ``h×w×c`` array with Pillow (per channel for floats)."""
    if array.dtype == np.uint8:
        return np.asarray(Image.fromarray(array).resize(size_wh, resample))
    if array.ndim == 2:
        img = Image.fromarray(array.astype(np.float32), mode="F")
        return np.asarray(img.resize(size_wh, resample), dtype=np.float64)
    return np.stack([_resize(array[..., c], size_wh, resample) for c in range(array.shape[2])], -1)


def solve_alpha(image: np.ndarray, trimap: np.ndarray) -> np.ndarray:
    """Closed-form alpha for ``h×w×3 uint8`` image and ``h×w float64`` trimap (0/0.5/1).

    Returns ``h×w float64`` in [0, 1]. Without both known foreground and known background the
    problem is undetermined: the trimap's own guess (unknown → its nearest known side, here the
    0.5 thresholded) is returned instead of calling the solver.
    """
    from pymatting import estimate_alpha_cf

    known_fg = trimap >= 0.99
    known_bg = trimap <= 0.01
    unknown = ~(known_fg | known_bg)
    if not unknown.any() or not known_fg.any() or not known_bg.any():
        return (trimap >= UNKNOWN).astype(np.float64)
    alpha = estimate_alpha_cf(image.astype(np.float64) / 255.0, trimap)
    return np.clip(alpha, 0.0, 1.0)


def foreground_colours(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``estimate_foreground_ml``: ``h×w×3 uint8`` colours of the object without the background
    bleeding into its soft edges."""
    from pymatting import estimate_foreground_ml

    fg = estimate_foreground_ml(image.astype(np.float64) / 255.0, alpha.astype(np.float64))
    return np.clip(fg * 255.0 + 0.5, 0, 255).astype(np.uint8)


class MattingRefiner:
    """Closed-form matting on a crop, downscaled when the crop exceeds ``max_solve_px``.

    ``last_scale`` records the solve scale of the latest call (1.0 = full resolution), so
    callers and tests can see which path ran.
    """

    def __init__(self, config: RefineConfig):
        self.config = config
        self.last_scale = 1.0

    def refine(self, image: np.ndarray, instance: Instance) -> Matte:
        check_image(image)
        hw = image.shape[:2]
        if not instance.mask.any():
            return Matte(np.zeros((1, 1), np.float32), image[:1, :1].copy(), 0, 0)
        x0, y0, x1, y1 = crop_box(instance, hw, self.config.margin_frac, extra_px=4)
        crop = image[y0:y1, x0:x1]
        mask = instance.mask[y0:y1, x0:x1]
        soft = None if instance.soft_mask is None else instance.soft_mask[y0:y1, x0:x1]
        h, w = mask.shape
        scale = min(1.0, (self.config.max_solve_px / float(h * w)) ** 0.5)
        self.last_scale = scale
        if scale < 1.0:
            size = (max(2, round(w * scale)), max(2, round(h * scale)))
            small = _resize(crop, size, Image.Resampling.BILINEAR)
            small_mask = _resize(mask.astype(np.uint8) * 255, size, Image.Resampling.BILINEAR)
            small_soft = None if soft is None else _resize(soft, size, Image.Resampling.BILINEAR)
            band = max(1, round(self.config.band_px * scale)) if self.config.band_px else 0
            trimap = trimap_from_mask(small, small_mask >= 128, band, small_soft)
            alpha_small = solve_alpha(small, trimap)
            fg_small = foreground_colours(small, alpha_small)
            alpha = _resize(alpha_small, (w, h), Image.Resampling.BILINEAR)
            fg = _resize(fg_small, (w, h), Image.Resampling.BILINEAR).copy()
            # where the full-resolution trimap is certain, trust it over the upsampled solve
            full_trimap = trimap_from_mask(crop, mask, round(self.config.band_px), soft)
            alpha[full_trimap >= 0.99] = 1.0
            alpha[full_trimap <= 0.01] = 0.0
            interior = full_trimap >= 0.99
            fg[interior] = crop[interior]  # opaque interior: the photo's own pixels
        else:
            trimap = trimap_from_mask(crop, mask, self.config.band_px, soft)
            alpha = solve_alpha(crop, trimap)
            fg = foreground_colours(crop, alpha)
        alpha = np.clip(alpha, 0.0, 1.0).astype(np.float32)
        return Matte(alpha, np.ascontiguousarray(fg, dtype=np.uint8), int(x0), int(y0))


class RembgRecipeRefiner:
    """rembg's ``alpha_matting_cutout`` (rembg/bg.py) reproduced for comparison.

    Same steps: soft mask (0..255) → trimap (foreground > 240, background < 10, both eroded
    with a 10×10 square) → ``estimate_alpha_cf`` → ``estimate_foreground_ml``. rembg runs it on
    the whole image; here it runs on a crop around the instance wide enough that the erosion and
    the solve see the same neighbourhood (box + 8 % + 20 px), which changes no pixel of the
    trimap near the object and keeps large photos tractable.
    """

    def __init__(self, config: RefineConfig):
        self.config = config

    def refine(self, image: np.ndarray, instance: Instance) -> Matte:
        check_image(image)
        if not instance.mask.any():
            return Matte(np.zeros((1, 1), np.float32), image[:1, :1].copy(), 0, 0)
        x0, y0, x1, y1 = crop_box(instance, image.shape[:2], self.config.margin_frac, 20)
        crop = image[y0:y1, x0:x1]
        if instance.soft_mask is not None:
            soft = instance.soft_mask[y0:y1, x0:x1]
        else:
            soft = instance.mask[y0:y1, x0:x1].astype(np.float32)
        soft_u8 = np.clip(soft * 255.0 + 0.5, 0, 255).astype(np.uint8)
        alpha = solve_alpha(crop, rembg_trimap(soft_u8))
        fg = foreground_colours(crop, alpha)
        return Matte(alpha.astype(np.float32), fg, int(x0), int(y0))


class BinaryRefiner:
    """The instance mask as a 0/1 alpha and the photo as the colour (``refine.method=none``)."""

    def refine(self, image: np.ndarray, instance: Instance) -> Matte:
        check_image(image)
        if not instance.mask.any():
            return Matte(np.zeros((1, 1), np.float32), image[:1, :1].copy(), 0, 0)
        x0, y0, x1, y1 = crop_box(instance, image.shape[:2], 0.0)
        alpha = instance.mask[y0:y1, x0:x1].astype(np.float32)
        return Matte(alpha, image[y0:y1, x0:x1].copy(), int(x0), int(y0))


def build_refiner(config: RefineConfig):
    """The refiner named by ``config.method``; unknown names raise ``ValueError``."""
    if config.method == "closed_form":
        return MattingRefiner(config)
    if config.method == "rembg":
        return RembgRecipeRefiner(config)
    if config.method == "none":
        return BinaryRefiner()
    raise ValueError(f"refine.method must be one of {', '.join(METHODS)}, got {config.method!r}")
