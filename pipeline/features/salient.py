"""Cues from a salient-object map (``H×W float32`` in [0, 1], e.g. from ISNet), when one exists."""

from __future__ import annotations

import numpy as np

from pipeline.features.grid import MaskView

SALIENCY_NAMES = ("sal_mean_inside", "sal_share", "sal_cover", "has_saliency")
# a map value above this marks a pixel as salient (the map's own decision threshold)
SALIENT_AT = 0.5


def saliency_features(view: MaskView, saliency_work: np.ndarray | None) -> dict[str, float]:
    """Salient-map cues of one instance on the working grid.

    Args:
        view: the instance mask on the working grid.
        saliency_work: ``h×w float32`` map in [0, 1] on the same grid, or None (no map).

    Returns:
        sal_mean_inside: mean map value inside the mask, in [0, 1].
        sal_share: the instance's share of the whole map's salient mass (sum of the map inside
            the mask / sum over the image), in [0, 1]; overlapping masks can sum to more than 1.
        sal_cover: share of the mask where the map exceeds ``SALIENT_AT``, in [0, 1].
        has_saliency: 1.0 when a map was given, else 0.0 (and every other cue is 0), so a
            learned ranker can tell "not salient" from "not measured".
    """
    if saliency_work is None or view.empty:
        has = 0.0 if saliency_work is None else 1.0
        return {"sal_mean_inside": 0.0, "sal_share": 0.0, "sal_cover": 0.0, "has_saliency": has}
    inside = saliency_work[view.y0 : view.y1, view.x0 : view.x1][view.crop].astype(np.float64)
    total = float(saliency_work.sum(dtype=np.float64))
    return {
        "sal_mean_inside": float(inside.mean()),
        "sal_share": min(1.0, float(inside.sum()) / total) if total > 0.0 else 0.0,
        "sal_cover": float(np.count_nonzero(inside > SALIENT_AT)) / inside.size,
        "has_saliency": 1.0,
    }
