"""Instances handed to the pipeline instead of the detector's (``--proposals gt|gt-jittered``).

- ``gt`` from an instance map: one instance per index (label from ``instance_labels``, else
  ``"object"``), main and distractor instances alike, so ranking and selection are measured.
- ``gt`` from a main-object mask or alpha (``alpha > 127``): **one** instance. A main-object
  mask says what the photographer meant, not how many objects it holds; splitting it into
  connected components would invent instances (a rider split from a bicycle by a gap).
- ``gt`` from a trimap only: one coarse instance = definite foreground ∪ unknown pixels, so a
  matting-only item still gets a (visual) result.
- ``gt-jittered``: the same instances degraded the way a segmenter errs — edges moved by a
  smooth random field of a few pixels, re-thresholded after a blur (corners rounded, thin
  structures lost), opened (thin parts lost) and a few small holes punched. Deterministic for
  a seed and an item name.
- ``gt-trimap`` (matting upper bound): one instance whose mask is the GT trimap's foreground
  and unknown pixels and whose ``soft_mask`` is 0.5 on the unknown ones, so the refiner solves
  exactly there (run it with a small ``refine.band_px``). Items without a trimap get one from
  the GT alpha: 0 < α < 1 dilated by 3 px is unknown, as the matting metrics measure it.

Every instance has ``source="gt"``, ``class_id=-1``, ``det_score=1.0`` and ids ``0..N-1``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.eval.dataset import EvalItem, GroundTruth
from pipeline.types import Instance, mask_to_xyxy

PROPOSAL_MODES = ("detector", "gt", "gt-jittered", "gt-trimap")


@dataclass(frozen=True)
class JitterParams:
    """How hard ``jitter_mask`` degrades a mask (pixels at the image's resolution)."""

    edge_shift_px: float = 3.0  # largest edge displacement by the smooth random field
    field_cell_px: int = 24  # spatial scale of that field (one random value per cell)
    blur_sigma_px: float = 1.5  # blur before re-thresholding
    threshold_low: float = 0.35  # the re-threshold level is drawn in [low, high]
    threshold_high: float = 0.65
    open_radius_px: int = 1  # opening: parts thinner than 2·r+1 px are lost
    holes_per_mpx: float = 40.0  # expected holes per million mask pixels (at least one try)
    hole_radius_px: int = 2


def _instance(index: int, mask: np.ndarray, label: str) -> Instance:
    return Instance(
        id=index,
        xyxy=mask_to_xyxy(mask),
        label=label,
        class_id=-1,
        det_score=1.0,
        mask=mask,
        source="gt",
    )


def gt_masks(item: EvalItem, gt: GroundTruth) -> list[tuple[int, str, np.ndarray]]:
    """``(gt_index, label, H×W bool mask)`` per GT instance, non-empty masks only.

    ``gt_index`` is the instance map's index (1 for a single mask/alpha/trimap instance).
    """
    if gt.instance_map is not None:
        out = []
        for idx in gt.instance_ids:
            mask = gt.instance_map == idx
            out.append((idx, item.instance_labels.get(idx, "object"), mask))
        return out
    if gt.main_mask is not None:
        mask = gt.main_mask
    elif gt.trimap is not None:
        mask = gt.trimap != 0
    else:
        return []
    label = item.instance_labels.get(1, "object")
    return [(1, label, mask.copy())] if mask.any() else []


def gt_proposals(item: EvalItem, gt: GroundTruth) -> list[Instance]:
    """Ground-truth instances (see the module docstring); empty when the item has no GT."""
    return [_instance(i, m, label) for i, (_, label, m) in enumerate(gt_masks(item, gt))]


def item_rng(seed: int, name: str) -> np.random.Generator:
    """A generator that depends only on ``seed`` and the item's name (not on its position)."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode("utf-8"))])


def jitter_mask(
    mask: np.ndarray, rng: np.random.Generator, params: JitterParams | None = None
) -> np.ndarray:
    """An ``H×W bool`` degraded copy of ``mask`` (``H×W bool``); see ``JitterParams``."""
    p = params or JitterParams()
    if mask.ndim != 2 or mask.dtype != np.bool_:
        raise ValueError(f"mask must be a 2-D bool array, got shape {mask.shape} {mask.dtype}")
    h, w = mask.shape
    m8 = mask.astype(np.uint8)
    # signed distance: ≥ 1 inside, ≤ −1 outside; adding a field in ±shift moves the edge
    signed = cv2.distanceTransform(m8, cv2.DIST_L2, 3) - cv2.distanceTransform(
        1 - m8, cv2.DIST_L2, 3
    )
    cells = (max(2, -(-h // p.field_cell_px) + 1), max(2, -(-w // p.field_cell_px) + 1))
    coarse = rng.uniform(-1.0, 1.0, size=cells).astype(np.float32)
    field = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR) * p.edge_shift_px
    moved = (signed + field) > 0
    blurred = cv2.GaussianBlur(moved.astype(np.float32), (0, 0), p.blur_sigma_px)
    out = blurred > rng.uniform(p.threshold_low, p.threshold_high)
    if p.open_radius_px > 0:
        side = 2 * p.open_radius_px + 1
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
        out = cv2.morphologyEx(out.astype(np.uint8), cv2.MORPH_OPEN, kernel) > 0
    ys, xs = np.nonzero(out)
    if len(ys):
        count = rng.poisson(max(p.holes_per_mpx * len(ys) / 1e6, 0.5))
        holes = np.zeros((h, w), np.uint8)
        for k in rng.integers(0, len(ys), size=count):
            cv2.circle(holes, (int(xs[k]), int(ys[k])), p.hole_radius_px, 1, thickness=-1)
        out &= holes == 0
    return out


def jittered_proposals(
    item: EvalItem, gt: GroundTruth, seed: int, params: JitterParams | None = None
) -> list[Instance]:
    """GT instances with jittered masks (instances that vanish are dropped)."""
    rng = item_rng(seed, item.name)
    out = []
    for _, label, mask in gt_masks(item, gt):
        jittered = jitter_mask(mask, rng, params)
        if jittered.any():
            out.append(_instance(len(out), jittered, label))
    return out


def trimap_proposals(item: EvalItem, gt: GroundTruth) -> list[Instance]:
    """One instance carrying the GT trimap (see the module docstring); empty without GT."""
    from pipeline.eval.metrics_matting import unknown_region

    if gt.alpha is None and gt.trimap is None:
        return []
    if gt.trimap is not None:
        unknown = (gt.trimap != 0) & (gt.trimap != 255)
        foreground = gt.trimap == 255
    else:
        unknown = unknown_region(gt.alpha)
        foreground = gt.alpha >= 1.0
    mask = foreground | unknown
    if not mask.any():
        return []
    soft = np.where(unknown, np.float32(0.5), foreground.astype(np.float32))
    label = item.instance_labels.get(1, "object")
    return [_instance(0, mask, label).replace(soft_mask=soft)]


def make_proposals(
    mode: str, item: EvalItem, gt: GroundTruth, seed: int = 0
) -> list[Instance] | None:
    """Proposals for ``mode``: ``None`` for ``detector`` (the pipeline detects), else a list."""
    if mode == "detector":
        return None
    if mode == "gt":
        return gt_proposals(item, gt)
    if mode == "gt-jittered":
        return jittered_proposals(item, gt, seed)
    if mode == "gt-trimap":
        return trimap_proposals(item, gt)
    raise ValueError(f"proposals must be one of {', '.join(PROPOSAL_MODES)}, got {mode!r}")
