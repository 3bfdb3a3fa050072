"""Selection metrics: region IoU, boundary F-measure, precision@1 and SA-SOR.

All masks are ``H×W bool`` at full image resolution.

- ``iou(pred, gt, ignore)``: |pred ∩ gt| / |pred ∪ gt| over the pixels outside ``ignore``
  (a GT's unlabelled band, e.g. GrabCut's); two empty masks give 1.0 (nothing to keep and
  nothing kept is a correct answer).
- ``boundary_f(pred, gt, tol_px)``: the DAVIS boundary measure (Perazzi et al., CVPR 2016):
  boundary pixels of each mask are matched to the other mask's boundary within ``tol_px``
  (default ``ceil(0.008 × image diagonal)``, as DAVIS); F = 2PR / (P + R). A boundary pixel is a
  mask pixel with a 4-neighbour outside the mask; the frame edge is not a boundary.
- ``precision_at_1(top_mask, gt_main)``: 1.0 when most (≥ 50 %) of the top-ranked instance's
  pixels lie in the GT main region, else 0.0 — one rule that works for a single main-object
  mask and for an instance map with main and distractor instances. Pixels in ``ignore`` are
  left out of the instance's area.
- ``boundary_f`` ignores no pixel: with an ignore band the GT boundary is its inner edge.
- ``sa_sor(...)``: Segmentation-Aware Salient Object Ranking (Liu et al., "Instance-level
  relative saliency ranking with graph reasoning", TPAMI 2021), following the authors'
  reference implementation (dragonlee258079/Saliency-Ranking, ``metric/``): see its docstring.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

DAVIS_BOUNDARY_TOL_FRAC = 0.008  # of the image diagonal
SA_SOR_MIN_IOU = 0.5


def _check_masks(pred: np.ndarray, gt: np.ndarray) -> None:
    for name, mask in (("pred mask", pred), ("gt mask", gt)):
        if not isinstance(mask, np.ndarray) or mask.ndim != 2 or mask.dtype != np.bool_:
            shape = getattr(mask, "shape", None)
            raise ValueError(f"{name} must be a 2-D bool array, got shape {shape}")
    if pred.shape != gt.shape:
        raise ValueError(f"pred mask shape {pred.shape} differs from gt mask shape {gt.shape}")


def iou(pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None = None) -> float:
    """Intersection over union of two ``H×W bool`` masks (1.0 when both are empty), counted
    over the pixels outside ``ignore`` (``H×W bool`` or None)."""
    _check_masks(pred, gt)
    if ignore is not None:
        _check_masks(ignore, gt)
        pred = pred & ~ignore
    union = int(np.count_nonzero(pred | gt))
    if union == 0:
        return 1.0
    return float(np.count_nonzero(pred & gt) / union)


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """``H×W bool``: mask pixels with a 4-neighbour outside the mask (frame edge excluded)."""
    m = mask.astype(np.uint8)
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    # BORDER_REPLICATE: beyond the frame counts as the same as the edge pixel, so an object
    # cut by the frame has no boundary along the frame.
    eroded = cv2.erode(m, cross, borderType=cv2.BORDER_REPLICATE)
    return (m > 0) & (eroded == 0)


def default_boundary_tol_px(hw: tuple[int, int]) -> int:
    """DAVIS tolerance: ``ceil(0.008 × diagonal)`` pixels, at least 1."""
    return max(1, int(np.ceil(DAVIS_BOUNDARY_TOL_FRAC * float(np.hypot(*hw)))))


def boundary_f(pred: np.ndarray, gt: np.ndarray, tol_px: int | None = None) -> float:
    """DAVIS boundary F-measure in [0, 1] between two ``H×W bool`` masks."""
    _check_masks(pred, gt)
    tol = default_boundary_tol_px(gt.shape) if tol_px is None else int(tol_px)
    pred_b = boundary_map(pred)
    gt_b = boundary_map(gt)
    n_pred, n_gt = int(pred_b.sum()), int(gt_b.sum())
    if n_pred == 0 and n_gt == 0:
        return 1.0
    if n_pred == 0 or n_gt == 0:
        return 0.0
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * tol + 1, 2 * tol + 1))
    pred_near = cv2.dilate(pred_b.astype(np.uint8), disk) > 0
    gt_near = cv2.dilate(gt_b.astype(np.uint8), disk) > 0
    precision = float((pred_b & gt_near).sum() / n_pred)
    recall = float((gt_b & pred_near).sum() / n_gt)
    if precision + recall == 0:
        return 0.0
    return 2.0 * precision * recall / (precision + recall)


def precision_at_1(
    top_mask: np.ndarray, gt_main: np.ndarray, ignore: np.ndarray | None = None
) -> float:
    """1.0 when at least half of the top-ranked instance lies in the GT main region, else 0.0.

    Pixels in ``ignore`` are not counted. An empty top mask (nothing proposed) is a miss.
    """
    _check_masks(top_mask, gt_main)
    if ignore is not None:
        _check_masks(ignore, gt_main)
        top_mask = top_mask & ~ignore
    area = int(top_mask.sum())
    if area == 0:
        return 0.0
    return 1.0 if (top_mask & gt_main).sum() * 2 >= area else 0.0


def _ascending_positions(values: Sequence[float]) -> np.ndarray:
    """1-based position of each value in ascending order; ties share the lowest position
    (``sorted(v).index(x) + 1``, as the reference implementation)."""
    ordered = sorted(values)
    return np.array([ordered.index(v) + 1 for v in values], dtype=np.float64)


def match_instances(iou_matrix: np.ndarray, min_iou: float = SA_SOR_MIN_IOU) -> np.ndarray:
    """One-to-one GT → prediction matching: ``(M,) int`` prediction index per GT, −1 if none.

    Each GT instance takes the prediction it overlaps most; below ``min_iou`` it is unmatched.
    When several GT instances take the same prediction, only the one with the highest IoU
    keeps it (the others become unmatched; they do not fall back to their second choice).
    """
    m, n = iou_matrix.shape
    if n == 0:
        return np.full(m, -1, dtype=np.int64)
    best = iou_matrix.argmax(axis=1)
    matched = np.where(iou_matrix[np.arange(m), best] >= min_iou, best, -1)
    for pred_index in set(matched[matched >= 0].tolist()):
        claimants = np.flatnonzero(matched == pred_index)
        if len(claimants) > 1:
            winner = claimants[np.argmax(iou_matrix[claimants, pred_index])]
            matched[claimants[claimants != winner]] = -1
    return matched


def sa_sor(
    gt_masks: Sequence[np.ndarray],
    gt_ranks: Sequence[int],
    pred_masks: Sequence[np.ndarray],
    pred_scores: Sequence[float],
    min_iou: float = SA_SOR_MIN_IOU,
) -> float | None:
    """SA-SOR in [−1, 1] for one image, or ``None`` where it is undefined.

    Args:
        gt_masks: M ``H×W bool`` ranked GT instance masks.
        gt_ranks: M ranks, **1 = most salient** (the project's layer-rank convention).
        pred_masks: N ``H×W bool`` predicted instance masks.
        pred_scores: N scores, higher = more salient.

    GT instances are matched one-to-one to predictions at IoU ≥ ``min_iou``
    (``match_instances``). The GT ranks become ascending positions (1 = least salient … M);
    a matched GT instance gets the ascending position of its prediction's score among *all*
    N predictions' scores (as the reference does whenever N ≥ M: unmatched predictions still
    take places in the predicted order), an unmatched GT instance gets 0. SA-SOR is the Pearson
    correlation of the two position vectors. As in the reference: fewer than two GT instances
    → ``None`` (the image is skipped); constant GT positions (all ranks tied) → ``None``;
    constant predicted positions → 0.0.
    """
    if len(gt_masks) != len(gt_ranks) or len(pred_masks) != len(pred_scores):
        raise ValueError(
            f"got {len(gt_masks)} gt masks for {len(gt_ranks)} ranks and "
            f"{len(pred_masks)} pred masks for {len(pred_scores)} scores"
        )
    if len(gt_masks) < 2:
        return None
    # rank 1 = most salient → negate so that larger means more salient, as in the reference
    gt_pos = _ascending_positions([-float(r) for r in gt_ranks])
    if np.ptp(gt_pos) == 0:
        return None
    ious = np.array([[iou(p, g) for p in pred_masks] for g in gt_masks], dtype=np.float64)
    ious = ious.reshape(len(gt_masks), len(pred_masks))
    matched = match_instances(ious, min_iou)
    pred_pos = np.zeros(len(gt_masks), dtype=np.float64)
    hits = np.flatnonzero(matched >= 0)
    if len(hits):
        all_pos = _ascending_positions([float(s) for s in pred_scores])
        pred_pos[hits] = all_pos[matched[hits]]
    if np.ptp(pred_pos) == 0:
        return 0.0
    return float(np.corrcoef(gt_pos, pred_pos)[0, 1])
