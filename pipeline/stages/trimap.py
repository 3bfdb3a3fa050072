"""Trimaps from instance masks, with an unknown band adapted to the instance.

A trimap here is ``h×w float64`` with 0 = background, 1 = foreground and 0.5 = unknown, the
format pymatting's estimators take. The band's half-width in pixels grows with the object's size
(a fixed fraction of the square root of its area) and, per pixel, with the high-frequency energy
of the image near the boundary (hair, fur and foliage get a wider band than a car's panel).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

UNKNOWN = 0.5


def base_band_px(area_px: int, band_frac: float = 0.02, min_px: int = 2, max_px: int = 30) -> int:
    """Half-width of the unknown band for an object of ``area_px`` pixels: ``band_frac`` of the
    square root of the area (a 1000×1000 object gets 20 px), clamped to ``[min_px, max_px]``.

    ``band_frac`` measured on the 20 GT-alpha items of ../shared/data/eval (alphamatting_train,
    adobe_dim_composites) with ``--proposals gt-jittered`` masks, seed 0, solve ≤ 1 MP,
    edge_gain 1; mean SAD adobe / alphamatting. Closed form: 0.01 → 20.2 / 125, 0.02 → 21.2 /
    106, 0.03 → 22.4 / 107 (a wider band only helps hair). Shared matting (expansion 10 px):
    0.01 → 17.7 / 88, 0.02 → 16.8 / 78, 0.04 → 20.1 / 87. Sampling copes with a wider band than
    closed form; 0.02 is the default (``RefineConfig.band_frac``).
    """
    return int(np.clip(round(band_frac * np.sqrt(max(area_px, 0))), min_px, max_px))


def edge_energy(image: np.ndarray) -> np.ndarray:
    """``h×w float32`` in [0, 1]: local high-frequency energy (smoothed |Laplacian| of grey),
    normalised by its 95th percentile so the measure is relative to this image."""
    grey = image.astype(np.float32).mean(axis=2)
    lap = np.abs(ndimage.laplace(grey))
    local = ndimage.uniform_filter(lap, size=7)
    scale = float(np.percentile(local, 95)) or 1.0
    return np.clip(local / scale, 0.0, 1.0)


def trimap_from_mask(
    image: np.ndarray,
    mask: np.ndarray,
    band_px: int = 0,
    soft_mask: np.ndarray | None = None,
    edge_gain: float = 1.0,
    band_frac: float = 0.02,
) -> np.ndarray:
    """Trimap for one instance on a crop.

    Args:
        image: ``h×w×3 uint8`` RGB crop.
        mask: ``h×w bool`` instance mask on the crop.
        band_px: fixed half-width of the unknown band; 0 adapts it to the object's size.
        soft_mask: optional ``h×w float32`` in [0, 1]; where it is strictly between 0.05 and
            0.95 the pixel is unknown too, so semi-transparent interiors (glass, veils) are
            solved rather than forced to 0 or 1.
        edge_gain: how much wider the band gets where the boundary is high-frequency
            (1.0: up to twice as wide).
        band_frac: ``base_band_px``'s share of sqrt(area) when ``band_px`` is 0.

    Returns:
        ``h×w float64`` trimap: 0 background, 1 foreground, 0.5 unknown.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be h×w×3 uint8, got {image.shape} {image.dtype}")
    if mask.shape != image.shape[:2] or mask.dtype != np.bool_:
        raise ValueError(f"mask must be {image.shape[:2]} bool, got {mask.shape} {mask.dtype}")
    base = band_px if band_px > 0 else base_band_px(int(mask.sum()), band_frac)
    # distance of every pixel to the mask boundary, inside and outside; the image frame is no
    # boundary (an object cut by the frame gets no band along it), and a mask that fills or
    # misses the whole crop has no boundary at all (scipy's EDT would measure to a phantom)
    no_boundary = np.full(mask.shape, np.inf)
    dist_in = ndimage.distance_transform_edt(mask) if (~mask).any() else no_boundary
    dist_out = ndimage.distance_transform_edt(~mask) if mask.any() else no_boundary
    distance = np.where(mask, dist_in, dist_out)
    band = base * (1.0 + edge_gain * edge_energy(image))
    trimap = np.where(mask, 1.0, 0.0)
    trimap[distance <= band] = UNKNOWN
    if soft_mask is not None:
        if soft_mask.shape != mask.shape:
            raise ValueError(f"soft_mask must be {mask.shape}, got {soft_mask.shape}")
        trimap[(soft_mask > 0.05) & (soft_mask < 0.95)] = UNKNOWN
    return trimap


def rembg_trimap(
    soft_mask_u8: np.ndarray,
    foreground_threshold: int = 240,
    background_threshold: int = 10,
    erode_size_px: int = 10,
) -> np.ndarray:
    """rembg's ``alpha_matting_cutout`` trimap (danielgatis/rembg, ``rembg/bg.py``).

    Foreground where the soft mask is above ``foreground_threshold``, background below
    ``background_threshold``, both eroded by an ``erode_size_px`` square (the background with
    ``border_value=1`` so the image frame does not eat it; with size 0 rembg passes
    ``structure=None``, i.e. scipy's default cross, and so does this), the rest unknown. As in
    rembg the trimap is built in ``uint8`` (0 / 128 / 255) and divided by 255, so unknown is
    128/255, not 0.5.

    Args:
        soft_mask_u8: ``h×w uint8`` soft mask 0..255.

    Returns:
        ``h×w float64`` trimap: 0 background, 1 foreground, 128/255 unknown.
    """
    if soft_mask_u8.ndim != 2 or soft_mask_u8.dtype != np.uint8:
        raise ValueError(
            f"soft_mask_u8 must be h×w uint8, got {soft_mask_u8.shape} {soft_mask_u8.dtype}"
        )
    is_fg = soft_mask_u8 > foreground_threshold
    is_bg = soft_mask_u8 < background_threshold
    structure = None
    if erode_size_px > 0:
        structure = np.ones((erode_size_px, erode_size_px), dtype=np.uint8)
    is_fg = ndimage.binary_erosion(is_fg, structure=structure)
    is_bg = ndimage.binary_erosion(is_bg, structure=structure, border_value=1)
    trimap = np.full(soft_mask_u8.shape, 128, dtype=np.uint8)
    trimap[is_fg] = 255
    trimap[is_bg] = 0
    return trimap / 255.0
