"""Edge refinement with pymatting: a soft alpha and decontaminated colours per instance.

Methods (``refine.method``):
- ``matting`` (``MattingRefiner``, the default): trimap with a band adapted to the instance
  (``trimap.trimap_from_mask``: ``band_frac`` of sqrt(area), up to ``1 + edge_gain`` times
  wider where the image is high-frequency near the edge), alpha from pymatting's estimator
  ``refine.estimator`` on a crop around the instance. A crop larger than ``max_solve_px`` is
  solved at reduced resolution and brought back with a fast guided filter
  (``guided_upsample``) steered by the full-resolution photo; ``estimate_foreground_ml`` then
  runs at full resolution on the crop. Estimators: ``shared`` (shared sampling, the default)
  and ``closed_form`` (Levin et al.); KNN (≈ 20 s for 0.87 MP) and LKM (≈ 12 s) cost too much
  for the 12 MP budget (DESIGN.md cost table).
- ``closed_form``: the same refiner with the closed-form estimator (the previous default).
- ``rembg`` (``RembgRecipeRefiner``): rembg's ``alpha_matting_cutout`` recipe, for comparison.
- ``none`` (``BinaryRefiner``): the binary mask as alpha.

What each method was measured to do (SAD / Grad on the GT-alpha items, speed on a 12 MP
photo) is in the README ("Evaluation with the real detector", matting).
"""

from __future__ import annotations

import functools
import typing
from dataclasses import replace

import numpy as np
from PIL import Image
from scipy import ndimage

from pipeline.config import MattingEstimator, RefineConfig, RefineMethod
from pipeline.stages.trimap import base_band_px, rembg_trimap, trimap_from_mask
from pipeline.types import Instance, Matte, check_image, check_mask

METHODS: tuple[str, ...] = typing.get_args(RefineMethod)  # declared in pipeline.config
ESTIMATORS: tuple[str, ...] = typing.get_args(MattingEstimator)
UPSAMPLERS = ("guided", "bilinear")


def _interrupt_in(exc: BaseException) -> KeyboardInterrupt | None:
    """The ``KeyboardInterrupt`` an exception was raised from (``__cause__``/``__context__``
    chain, a few links deep), or None."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, KeyboardInterrupt):
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def keeps_interrupts(refine):
    """Decorate a ``refine`` method so that Ctrl-C during matting stops the run.

    pymatting's numba-compiled functions return to Python with the interrupt pending, which
    CPython reports as ``SystemError("… returned a result with an exception set")`` chained to
    the ``KeyboardInterrupt`` (seen in 9 of 12 interrupts of ``estimate_foreground_ml``); a batch
    that catches ``Exception`` per image would take it for one failed image and go on. The
    ``KeyboardInterrupt`` is raised again here, at the stage boundary.
    """

    @functools.wraps(refine)
    def wrapper(*args, **kwargs):
        try:
            return refine(*args, **kwargs)
        except SystemError as exc:
            interrupt = _interrupt_in(exc)
            if interrupt is None:
                raise
            raise KeyboardInterrupt(*interrupt.args) from exc

    return wrapper


def resize(array: np.ndarray, size_wh: tuple[int, int], resample) -> np.ndarray:
    """Resize an ``h×w`` / ``h×w×c`` uint8 or float array to ``size_wh = (W, H)`` with Pillow.
    Floats come back ``float32`` (resized per channel in Pillow's 32-bit float mode)."""
    if array.dtype == np.uint8:
        return np.asarray(Image.fromarray(array).resize(size_wh, resample))
    if array.ndim == 2:
        img = Image.fromarray(np.ascontiguousarray(array, dtype=np.float32), mode="F")
        return np.array(img.resize(size_wh, resample), dtype=np.float32)  # writable copy
    return np.stack([resize(array[..., c], size_wh, resample) for c in range(array.shape[2])], -1)


def _box_mean(array: np.ndarray, radius_px: int) -> np.ndarray:
    """Mean over a ``(2r+1)²`` window on the first two axes (reflected at the border)."""
    size = (2 * radius_px + 1, 2 * radius_px + 1) + (1,) * (array.ndim - 2)
    return ndimage.uniform_filter(array, size=size, mode="reflect")


def guided_upsample(
    small_image: np.ndarray,
    small_alpha: np.ndarray,
    image: np.ndarray,
    radius_px: int = 1,
    eps: float = 1e-4,
) -> np.ndarray:
    """Bring a low-resolution alpha to full resolution along the full-resolution photo's edges.

    Fast guided filter (He & Sun 2015, arXiv:1505.00996), colour guide: the local linear model
    ``alpha ≈ a·I + b`` is fitted in ``(2·radius_px+1)²`` windows of the low-resolution pair,
    its coefficients are upsampled bilinearly and applied to the full-resolution pixels, so an
    edge lands where the photo's edge is rather than on the blocky upsampled grid.

    Args:
        small_image: ``h×w×3 uint8`` RGB, the photo the alpha was solved on.
        small_alpha: ``h×w`` float in [0, 1].
        image: ``H×W×3 uint8`` RGB, the same view at full resolution.
        radius_px: window radius in low-resolution pixels.
        eps: regulariser on the colour covariance (intensities in [0, 1]); larger → smoother.

    Returns:
        ``H×W float32`` alpha in [0, 1].
    """
    guide = small_image.astype(np.float32) / 255.0
    p = small_alpha.astype(np.float32)
    mean_i = _box_mean(guide, radius_px)
    mean_p = _box_mean(p, radius_px)
    cov_ip = _box_mean(guide * p[..., None], radius_px) - mean_i * mean_p[..., None]
    var = np.empty(guide.shape[:2] + (3, 3), np.float32)
    for i in range(3):
        for j in range(i, 3):
            v = (
                _box_mean(guide[..., i] * guide[..., j], radius_px)
                - mean_i[..., i] * mean_i[..., j]
            )
            var[..., i, j] = var[..., j, i] = v + (eps if i == j else 0.0)
    a = np.linalg.solve(var, cov_ip[..., None])[..., 0]
    b = mean_p - (a * mean_i).sum(axis=-1)
    height, width = image.shape[:2]
    a_full = resize(_box_mean(a, radius_px), (width, height), Image.Resampling.BILINEAR)
    b_full = resize(_box_mean(b, radius_px), (width, height), Image.Resampling.BILINEAR)
    alpha = np.einsum("hwc,hwc->hw", a_full, image.astype(np.float32) / 255.0) + b_full
    return np.clip(alpha, 0.0, 1.0)


def crop_box(
    instance: Instance, hw: tuple[int, int], margin_frac: float, extra_px: int = 0
) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` int crop around the instance mask (its tight box, or ``xyxy`` when
    the mask is empty) grown by ``margin_frac`` of the box side plus ``extra_px``, clipped to
    the ``hw = (H, W)`` image. x1, y1 are exclusive."""
    return _grow_box(instance.mask, instance.xyxy, hw, margin_frac, extra_px)


def _grow_box(support, fallback_xyxy, hw, margin_frac, extra_px):
    h, w = hw
    ys = np.flatnonzero(support.any(axis=1))
    xs = np.flatnonzero(support.any(axis=0))
    if len(xs):
        x0, y0, x1, y1 = int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1
    else:
        x0, y0, x1, y1 = (int(round(float(v))) for v in fallback_xyxy)
    mx = int(round(margin_frac * (x1 - x0))) + extra_px
    my = int(round(margin_frac * (y1 - y0))) + extra_px
    x0, y0 = min(max(0, x0 - mx), w - 1), min(max(0, y0 - my), h - 1)
    return x0, y0, max(x0 + 1, min(w, x1 + mx)), max(y0 + 1, min(h, y1 + my))


def _empty_matte(image: np.ndarray) -> Matte:
    """A 1×1 fully transparent matte at the origin, for an instance with an empty mask."""
    return Matte(np.zeros((1, 1), np.float32), image[:1, :1].copy(), 0, 0)


def _check_instance(image: np.ndarray, instance: Instance) -> None:
    check_image(image)
    check_mask(instance.mask, image.shape[:2], "instance.mask")


def solve_alpha(
    image: np.ndarray,
    trimap: np.ndarray,
    fallback: np.ndarray,
    estimator: str = "shared",
    expansion_px: int = 1,
) -> np.ndarray:
    """Alpha for an ``h×w×3 uint8`` image and an ``h×w float64`` trimap (0/0.5/1).

    ``estimator``: ``"shared"`` (pymatting's ``estimate_alpha_sm`` as
    ``pipeline.stages.shared_matting`` runs it, Gastal & Oliveira's shared sampling: colour
    samples gathered along rays into the known regions, known regions first grown by
    ``expansion_px`` into pixels of near-identical colour) or ``"closed_form"``
    (``estimate_alpha_cf``, Levin et al.). Returns ``h×w float64`` in [0, 1]. Without unknown
    pixels there is nothing to solve, and without both known foreground and known background
    the problem is undetermined: ``fallback`` (``h×w`` in [0, 1], the mask itself) is returned
    in those cases without calling the solver.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}, got {estimator!r}")
    known_fg = trimap >= 0.9  # pymatting's own thresholds (trimap_split)
    known_bg = trimap <= 0.1
    unknown = ~(known_fg | known_bg)
    if not unknown.any() or not known_fg.any() or not known_bg.any():
        return fallback.astype(np.float64)
    pixels = image.astype(np.float64) / 255.0
    if estimator == "shared":  # pymatting's shared sampling, one step made faster, same alpha
        from pipeline.stages.shared_matting import estimate_alpha_sm

        alpha = estimate_alpha_sm(pixels, trimap, trimap_expansion_radius=max(0, expansion_px))
    else:
        from pymatting import estimate_alpha_cf

        alpha = estimate_alpha_cf(pixels, trimap)
    return np.clip(alpha, 0.0, 1.0)


def foreground_colours(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``estimate_foreground_ml`` on an ``h×w×3 uint8`` image and ``h×w`` alpha in [0, 1]:
    ``h×w×3 uint8`` colours of the object without the background bleeding into its soft
    edges. A binary alpha needs no estimate: the photo's own pixels are returned."""
    if not ((alpha > 0.0) & (alpha < 1.0)).any():
        return image.copy()
    from pymatting import estimate_foreground_ml

    fg = estimate_foreground_ml(image.astype(np.float64) / 255.0, alpha.astype(np.float64))
    return np.clip(fg * 255.0 + 0.5, 0, 255).astype(np.uint8)


class MattingRefiner:
    """Closed-form matting on a crop, downscaled when the crop exceeds ``max_solve_px``.

    Args:
        config: the ``[refine]`` section.
        upsample: how a downscaled solve returns to full resolution: ``"guided"`` (fast guided
            filter steered by the full-resolution crop, the default) or ``"bilinear"``.

    ``last_scale`` records the solve scale of the latest call (1.0 = full resolution) so
    callers and tests can see which path ran; it is informational (not thread-safe).
    """

    def __init__(self, config: RefineConfig, upsample: str = "guided"):
        if upsample not in UPSAMPLERS:
            raise ValueError(f"upsample must be one of {', '.join(UPSAMPLERS)}, got {upsample!r}")
        if config.estimator not in ESTIMATORS:
            raise ValueError(
                f"refine.estimator must be one of {', '.join(ESTIMATORS)}, got {config.estimator!r}"
            )
        self.config = config
        self.upsample = upsample
        self.last_scale = 1.0

    @keeps_interrupts
    def refine(self, image: np.ndarray, instance: Instance) -> Matte:
        """``Matte`` on a crop around ``instance`` (see the module docstring)."""
        _check_instance(image, instance)
        self.last_scale = 1.0
        if not instance.mask.any():
            return _empty_matte(image)
        # 4 px beyond the margin so even a tight margin leaves background for the trimap
        x0, y0, x1, y1 = crop_box(instance, image.shape[:2], self.config.margin_frac, 4)
        crop = image[y0:y1, x0:x1]
        mask = instance.mask[y0:y1, x0:x1]
        soft = None if instance.soft_mask is None else instance.soft_mask[y0:y1, x0:x1]
        fallback = mask if soft is None else soft
        h, w = mask.shape
        scale = min(1.0, (self.config.max_solve_px / float(h * w)) ** 0.5)
        if scale < 1.0 and min(h, w) * scale >= 8:
            self.last_scale = scale
            alpha = self._solve_downscaled(crop, mask, soft, fallback, scale)
        else:
            trimap = self._trimap(crop, mask, self.config.band_px, soft)
            alpha = self._solve(crop, trimap, fallback)
        alpha = np.clip(alpha, 0.0, 1.0).astype(np.float32)
        return Matte(alpha, foreground_colours(crop, alpha), x0, y0)

    def _trimap(self, image, mask, band_px, soft) -> np.ndarray:
        cfg = self.config
        return trimap_from_mask(image, mask, band_px, soft, cfg.edge_gain, cfg.band_frac)

    def _solve(self, image, trimap, fallback) -> np.ndarray:
        cfg = self.config
        return solve_alpha(image, trimap, fallback, cfg.estimator, cfg.expansion_px)

    def _solve_downscaled(self, crop, mask, soft, fallback, scale) -> np.ndarray:
        """Alpha solved on the crop resized by ``scale`` and brought back to ``h×w float32``."""
        h, w = mask.shape
        size_wh = (max(2, round(w * scale)), max(2, round(h * scale)))
        small = resize(crop, size_wh, Image.Resampling.BILINEAR)
        # area-averaged mask, re-thresholded: thin parts survive as long as they cover half
        small_mask = resize(mask.astype(np.float32), size_wh, Image.Resampling.BOX) >= 0.5
        small_soft = None
        if soft is not None:
            small_soft = np.clip(resize(soft, size_wh, Image.Resampling.BILINEAR), 0, 1)
        # the band is sized on the full-resolution object, then expressed in solve pixels
        band_px = self.config.band_px or base_band_px(int(mask.sum()), self.config.band_frac)
        small_band_px = max(1, round(band_px * scale))
        small_trimap = self._trimap(small, small_mask, small_band_px, small_soft)
        if not ((small_trimap > 0.1) & (small_trimap < 0.9)).any():
            return fallback.astype(np.float32)  # nothing is unknown: the mask as is
        small_fallback = small_mask if small_soft is None else small_soft
        small_alpha = self._solve(small, small_trimap, small_fallback)
        if self.upsample == "guided":
            alpha = guided_upsample(small, small_alpha, crop)
        else:
            alpha = resize(small_alpha.astype(np.float32), (w, h), Image.Resampling.BILINEAR)
        # where the solve's trimap was certain, the upsampled value must not drift (the
        # guided filter's linear model can overshoot on textured, fully known regions)
        known = resize(small_trimap.astype(np.float32), (w, h), Image.Resampling.NEAREST)
        alpha[known >= 0.9] = 1.0
        alpha[known <= 0.1] = 0.0
        return alpha


class RembgRecipeRefiner:
    """rembg's ``alpha_matting_cutout`` reproduced for comparison.

    Source: danielgatis/rembg, ``rembg/bg.py`` ``alpha_matting_cutout`` and ``remove``. Same
    steps: soft mask as ``uint8`` (truncated, as rembg's sessions make it) → trimap (> 240
    foreground, < 10 background, both eroded with a 10×10 square, the background with
    ``border_value=1``; unknown is 128/255) → ``estimate_alpha_cf`` → ``estimate_foreground_ml``
    → both truncated to ``uint8`` (``np.clip(x * 255, 0, 255).astype(np.uint8)``); when
    pymatting raises ``ValueError`` (no known foreground or background) rembg falls back to the
    plain mask as alpha over the photo, and so does this.

    One deliberate difference: rembg works on the whole image, this on a crop around every
    pixel the soft mask marks as not background, grown by ``margin_frac`` plus 20 px (more
    than the erosion). The trimap and the closed-form alpha are the same as on the whole image
    (the Laplacian only couples pixels within 2 px of the unknown band; see
    ``test_rembg_recipe_on_a_crop_matches_the_whole_image``); ``estimate_foreground_ml`` is
    multi-level over the whole input, so colours can differ by a few levels.
    """

    foreground_threshold = 240
    background_threshold = 10
    erode_size_px = 10

    def __init__(self, config: RefineConfig, crop: bool = True):
        self.config = config
        self.crop = crop

    @keeps_interrupts
    def refine(self, image: np.ndarray, instance: Instance) -> Matte:
        """``Matte`` on a crop around ``instance`` (the whole image with ``crop=False``)."""
        _check_instance(image, instance)
        if instance.soft_mask is not None:
            soft = instance.soft_mask
        else:
            soft = instance.mask.astype(np.float32)
        soft_u8 = (np.clip(soft, 0.0, 1.0) * 255).astype(np.uint8)
        support = soft_u8 >= self.background_threshold
        if not support.any():
            return _empty_matte(image)
        x0, y0, x1, y1 = 0, 0, image.shape[1], image.shape[0]
        if self.crop:
            margin = self.config.margin_frac
            x0, y0, x1, y1 = _grow_box(support, instance.xyxy, image.shape[:2], margin, 20)
        crop = image[y0:y1, x0:x1]
        soft_u8 = soft_u8[y0:y1, x0:x1]
        trimap = rembg_trimap(
            soft_u8, self.foreground_threshold, self.background_threshold, self.erode_size_px
        )
        from pymatting import estimate_alpha_cf, estimate_foreground_ml

        img_normalized = crop / 255.0
        try:
            alpha = estimate_alpha_cf(img_normalized, trimap)
            foreground = estimate_foreground_ml(img_normalized, alpha)
        except ValueError:  # rembg: naive_cutout, the mask over the photo
            return Matte(soft_u8.astype(np.float32) / 255.0, crop.copy(), x0, y0)
        alpha_u8 = np.clip(alpha * 255, 0, 255).astype(np.uint8)
        fg_u8 = np.clip(foreground * 255, 0, 255).astype(np.uint8)
        return Matte(alpha_u8.astype(np.float32) / 255.0, fg_u8, x0, y0)


class BinaryRefiner:
    """The instance mask as a 0/1 alpha and the photo as the colour (``refine.method=none``)."""

    def refine(self, image: np.ndarray, instance: Instance) -> Matte:
        """``Matte`` on the instance's tight box."""
        _check_instance(image, instance)
        if not instance.mask.any():
            return _empty_matte(image)
        x0, y0, x1, y1 = crop_box(instance, image.shape[:2], 0.0)
        alpha = instance.mask[y0:y1, x0:x1].astype(np.float32)
        return Matte(alpha, image[y0:y1, x0:x1].copy(), x0, y0)


def build_refiner(config: RefineConfig):
    """The ``Refiner`` named by ``config.method``; unknown names raise ``ValueError``."""
    if config.method == "matting":
        return MattingRefiner(config)
    if config.method == "closed_form":  # the same refiner with Levin et al.'s estimator
        return MattingRefiner(replace(config, estimator="closed_form"))
    if config.method == "rembg":
        return RembgRecipeRefiner(config)
    if config.method == "none":
        return BinaryRefiner()
    raise ValueError(f"refine.method must be one of {', '.join(METHODS)}, got {config.method!r}")
