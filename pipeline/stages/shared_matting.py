"""Shared-sampling alpha matting (Gastal & Oliveira 2010) as pymatting computes it, with its
sample-refinement step rewritten so that it allocates nothing per pixel.

``estimate_alpha_sm`` runs the four steps of pymatting's ``estimate_alpha_sm`` (pymatting
1.1.x, MIT licence) with pymatting's own defaults: trimap expansion, sample gathering and local
smoothing are pymatting's numba kernels, called as pymatting calls them; only
``_sample_refinement`` is ours. pymatting's version of that step allocates three small arrays
for every unknown pixel and calls ``np.argmax`` and two helper functions for each of its 121
neighbours; it was 85 % of the matting stage's time on the refine stage's real crops. Ours keeps
the three best samples in registers-sized scratch arrays allocated once, with the same float32
arithmetic in the same order, so the alpha is the same bit for bit (tested against pymatting on
synthetic and real crops) at about a sixth of the time (2.22 s → 0.36 s over the 27 crops of the
20 DAVIS frames; README, "Speed").
"""

from __future__ import annotations

import numpy as np
from numba import njit
from pymatting.alpha.estimate_alpha_sm import expand_trimap, local_smoothing, sample_gathering

# pymatting's defaults for estimate_alpha_sm (the ones the refine stage has always used)
EXPANSION_THRESHOLD = 0.02
GATHERING_ANGLES = 4
GATHERING_WEIGHTS = (3.0, 2.0, 1.0, 4.0)  # eN, eA, ef, eb
GATHERING_NP_RADIUS = 1
REFINEMENT_RADIUS = 5
SMOOTHING_RADIUS = 5
SMOOTHING_SIGMA_SQ2 = 0.1


def estimate_alpha_sm(
    image: np.ndarray, trimap: np.ndarray, trimap_expansion_radius: int = 10
) -> np.ndarray:
    """Alpha of an ``h×w×3`` float image in [0, 1] and an ``h×w`` float trimap (0 background,
    1 foreground, anything else unknown): ``h×w float32`` in [0, 1], equal to pymatting's
    ``estimate_alpha_sm(image, trimap, trimap_expansion_radius=…)``. Needs some known
    foreground and background (``ValueError`` otherwise: their mean colours seed the search)."""
    image = np.ascontiguousarray(image, dtype=np.float32)
    trimap = np.ascontiguousarray(trimap, dtype=np.float32)
    if image.ndim != 3 or image.shape[2] != 3 or trimap.shape != image.shape[:2]:
        raise ValueError(
            f"need an h×w×3 image and an h×w trimap, got {image.shape} and {trimap.shape}"
        )
    expanded = trimap.copy()
    if trimap_expansion_radius > 0:
        expand_trimap(expanded, trimap, image, trimap_expansion_radius, EXPANSION_THRESHOLD)
    known_fg, known_bg = expanded == 1.0, expanded == 0.0
    if not known_fg.any() or not known_bg.any():
        raise ValueError("shared matting needs known foreground and background in the trimap")
    gathering_f = np.zeros_like(image) + image[known_fg].mean(axis=0)
    gathering_b = np.zeros_like(image) + image[known_bg].mean(axis=0)
    gathering_alpha = np.zeros_like(trimap)
    sample_gathering(
        gathering_f,
        gathering_b,
        gathering_alpha,
        image,
        expanded,
        GATHERING_ANGLES,
        *GATHERING_WEIGHTS,
        GATHERING_NP_RADIUS,
    )
    refined_f, refined_b = np.zeros_like(image), np.zeros_like(image)
    refined_alpha = np.zeros_like(trimap)
    _sample_refinement(
        refined_f,
        refined_b,
        refined_alpha,
        gathering_f,
        gathering_b,
        image,
        expanded,
        REFINEMENT_RADIUS,
    )
    final_f, final_b = np.zeros_like(image), np.zeros_like(image)
    final_alpha = np.zeros_like(trimap)
    # pymatting passes radius1's sigma for radius3 too (its sigma_sq3 default)
    sigma_sq = (2 * SMOOTHING_RADIUS + 1) ** 2 / (9.0 * np.pi)
    local_smoothing(
        final_f,
        final_b,
        final_alpha,
        refined_f,
        refined_b,
        refined_alpha,
        image,
        expanded,
        SMOOTHING_RADIUS,
        SMOOTHING_RADIUS,
        SMOOTHING_RADIUS,
        sigma_sq,
        SMOOTHING_SIGMA_SQ2,
        sigma_sq,
    )
    return final_alpha


@njit(
    "void(f4[:, :, ::1], f4[:, :, ::1], f4[:, ::1], f4[:, :, ::1], f4[:, :, ::1], "
    "f4[:, :, ::1], f4[:, ::1], i8)",
    cache=True,
    nogil=True,
)
def _sample_refinement(
    refined_f, refined_b, refined_alpha, gathering_f, gathering_b, image, trimap, radius
):  # pragma: no cover (compiled; equality with pymatting is tested)
    """pymatting's ``sample_refinement``: for each unknown pixel, the three (F, B) pairs of its
    (2·radius+1)² neighbourhood that explain its colour best (pymatting's ``Mp2``), averaged,
    and the alpha of that mean pair. Same expressions, same order, same float types."""
    h, w = trimap.shape
    refined_f[:] = gathering_f
    refined_b[:] = gathering_b
    refined_alpha[:] = trimap
    best_f = np.zeros((3, 3), np.float32)
    best_b = np.zeros((3, 3), np.float32)
    cost = np.zeros(3, np.float32)
    for y in range(h):
        for x in range(w):
            if trimap[y, x] == 0 or trimap[y, x] == 1:
                continue
            i0, i1, i2 = image[y, x, 0], image[y, x, 1], image[y, x, 2]
            for k in range(3):
                cost[k] = np.inf
                for c in range(3):
                    best_f[k, c] = 0.0
                    best_b[k, c] = 0.0
            for y2 in range(max(0, y - radius), min(h, y + radius + 1)):
                for x2 in range(max(0, x - radius), min(w, x + radius + 1)):
                    f, b = gathering_f[y2, x2], gathering_b[y2, x2]
                    f0, f1, f2, b0, b1, b2 = f[0], f[1], f[2], b[0], b[1], b[2]
                    # pymatting's estimate_alpha (float32 in and out, float64 in between)
                    fb0, fb1, fb2 = f0 - b0, f1 - b1, f2 - b2
                    denom = fb0 * fb0 + fb1 * fb1 + fb2 * fb2 + 1e-5
                    a = ((i0 - b0) * fb0 + (i1 - b1) * fb1 + (i2 - b2) * fb2) / denom
                    a = np.float32(max(0.0, min(1.0, a)))
                    # pymatting's Mp2: the colour's distance to the pair's mix at that alpha
                    d0 = a * f0 + (1.0 - a) * b0 - i0
                    d1 = a * f1 + (1.0 - a) * b1 - i1
                    d2 = a * f2 + (1.0 - a) * b2 - i2
                    m = np.float32(d0 * d0 + d1 * d1 + d2 * d2)
                    worst = 0  # np.argmax: the first of equal costs
                    if cost[1] > cost[worst]:
                        worst = 1
                    if cost[2] > cost[worst]:
                        worst = 2
                    if m < cost[worst]:
                        cost[worst] = m
                        best_f[worst, 0], best_f[worst, 1], best_f[worst, 2] = f0, f1, f2
                        best_b[worst, 0], best_b[worst, 1], best_b[worst, 2] = b0, b1, b2
            for c in range(3):
                refined_f[y, x, c] = (best_f[0, c] + best_f[1, c] + best_f[2, c]) / np.float32(3)
                refined_b[y, x, c] = (best_b[0, c] + best_b[1, c] + best_b[2, c]) / np.float32(3)
            fb0 = refined_f[y, x, 0] - refined_b[y, x, 0]
            fb1 = refined_f[y, x, 1] - refined_b[y, x, 1]
            fb2 = refined_f[y, x, 2] - refined_b[y, x, 2]
            ib0 = i0 - refined_b[y, x, 0]
            ib1 = i1 - refined_b[y, x, 1]
            ib2 = i2 - refined_b[y, x, 2]
            denom = fb0 * fb0 + fb1 * fb1 + fb2 * fb2 + 1e-5
            a = (ib0 * fb0 + ib1 * fb1 + ib2 * fb2) / denom
            refined_alpha[y, x] = np.float32(max(0.0, min(1.0, a)))
