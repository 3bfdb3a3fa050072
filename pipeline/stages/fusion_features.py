"""Cues of each segment (``pipeline.stages.segments``) for the learned keep decision.

``segment_features(instances, segments, saliency)`` returns an ``(N, F) float64`` matrix with
one row per segment and the columns ``FEATURE_NAMES``:

- the segment: its kind (one-hot ``kind_*``), ``seg_area_frac`` (share of the image),
  ``seg_area_rel`` (share of its owner's mask; 1 for a free component), ``seg_map_mean`` (mean
  map value inside), ``seg_centrality`` (1 at the image centre, 0 at a corner),
  ``seg_in_top_region`` (share of it in the faint salient region, map ≥ ``FAINT_AT``, grown from
  the top instance's salient pixels: a fragment of the subject lies there), ``seg_near_top``
  (share of it within ``NEAR_TOP_FRAC`` of the longer side of the top instance's mask),
  ``seg_sal_share`` (its salient pixels over all the map's salient pixels),
  ``seg_area_rel_top`` and ``seg_map_rel_top`` (its area and mean map value over the top
  instance's: a second subject the detector missed is about as large and as salient);
- its owner (0 for a free component): the ranker's ``score``, ``score_rel`` (score / the best
  score), ``is_top``, ``rank_frac`` (0 for the best … 1 for the last), the owner's cues from
  ``pipeline.features`` listed in ``OWNER_CUES``, ``is_rescued`` (a region rescued from the
  map), ``partner_is_top`` (its interaction with the top instance when that is its partner),
  ``area_rel_top`` and ``sal_rel_top`` (its area and mean map value over the top instance's);
- the photo: ``has_saliency``, ``salient_frac`` (share of the image the map calls salient),
  ``n_instances_log`` (``log1p`` of the instance count), ``top_area_frac``, ``top_sal_mean``,
  ``top_sal_share`` (the top instance's share of the salient pixels: near 1 when the map sees
  just the subject), ``map_uncertain_frac`` (share of the map's non-zero pixels, map ≥
  ``FAINT_AT``, that are between ``FAINT_AT`` and 0.8: a hesitant map) and
  ``salient_parts_log`` (``log1p`` of the number of segments the map calls salient).

The top instance is the one with the highest score. Without a map every map cue is 0 and
``has_saliency`` is 0, so one model serves both cases.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from pipeline.stages.segments import FAINT_AT, KINDS, NEAR_TOP_FRAC, SALIENT_AT, Segment
from pipeline.types import Instance, mask_to_xyxy

OWNER_CUES = (
    "area_frac",
    "sharpness_rel_max",
    "blur",
    "motion_blur",
    "truncation",
    "centrality",
    "box_fill",
    "in_front",
    "is_person",
    "class_prior",
    "det_score",
    "interaction",
    "contact",
    "sal_mean_inside",
    "sal_cover",
    "sal_share",
)
FEATURE_NAMES: tuple[str, ...] = (
    *(f"kind_{kind}" for kind in KINDS),
    "seg_area_frac",
    "seg_area_rel",
    "seg_map_mean",
    "seg_centrality",
    "seg_in_top_region",
    "seg_near_top",
    "seg_sal_share",
    "seg_area_rel_top",
    "seg_map_rel_top",
    "score",
    "score_rel",
    "is_top",
    "rank_frac",
    *OWNER_CUES,
    "is_rescued",
    "partner_is_top",
    "area_rel_top",
    "sal_rel_top",
    "has_saliency",
    "salient_frac",
    "n_instances_log",
    "top_area_frac",
    "top_sal_mean",
    "top_sal_share",
    "map_uncertain_frac",
    "salient_parts_log",
)


def _top_index(instances: Sequence[Instance]) -> int | None:
    if not instances:
        return None
    return max(range(len(instances)), key=lambda k: (float(instances[k].score), -k))


def _top_maps(top: Instance | None, saliency: np.ndarray | None, hw):
    """``(top_region, near_top)``: the ``H×W bool`` faint region grown from the top instance's
    salient pixels (None without a map), and the pixels within ``NEAR_TOP_FRAC`` of the longer
    side of its mask as ``(rows, cols, crop)`` (None without instances). Both work on crops
    around the top instance where they can: the cost follows its size, not the photo's."""
    if top is None:
        return None, None
    near_px = max(1, round(NEAR_TOP_FRAC * max(hw)))
    x0, y0, x1, y1 = mask_to_xyxy(top.mask).astype(int)
    rows = slice(max(0, y0 - near_px), min(hw[0], y1 + near_px))
    cols = slice(max(0, x0 - near_px), min(hw[1], x1 + near_px))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * near_px + 1, 2 * near_px + 1))
    near = (rows, cols, cv2.dilate(top.mask[rows, cols].astype(np.uint8), kernel) > 0)
    if saliency is None:
        return None, near
    count, comps = cv2.connectedComponents((saliency >= FAINT_AT).astype(np.uint8), 8)
    box = (slice(y0, y1), slice(x0, x1))
    seeds = np.unique(comps[box][top.mask[box] & (saliency[box] >= SALIENT_AT)])
    inside = np.zeros(count, bool)
    inside[seeds] = True
    inside[0] = False
    return inside[comps], near


def _overlap_px(segment: Segment, crop: tuple[slice, slice, np.ndarray]) -> int:
    """Pixels of ``segment`` inside the mask ``crop`` (``rows, cols, h×w bool``)."""
    rows, cols, mask = crop
    r0, r1 = max(rows.start, segment.rows.start), min(rows.stop, segment.rows.stop)
    c0, c1 = max(cols.start, segment.cols.start), min(cols.stop, segment.cols.stop)
    if r0 >= r1 or c0 >= c1:
        return 0
    a = segment.mask[r0 - segment.rows.start : r1 - segment.rows.start,
                     c0 - segment.cols.start : c1 - segment.cols.start]  # fmt: skip
    b = mask[r0 - rows.start : r1 - rows.start, c0 - cols.start : c1 - cols.start]
    return int(np.count_nonzero(a & b))


def segment_features(
    instances: Sequence[Instance],
    segments: Sequence[Segment],
    saliency: np.ndarray | None,
) -> np.ndarray:
    """``(len(segments), len(FEATURE_NAMES)) float64`` cues (module docstring).

    ``instances`` carry ``features`` (``pipeline.features.compute_features``) and ``score``;
    ``segments`` come from ``split_segments`` on the same instances and map.
    """
    out = np.zeros((len(segments), len(FEATURE_NAMES)))
    if not segments:
        return out
    col = {name: j for j, name in enumerate(FEATURE_NAMES)}
    hw = saliency.shape if saliency is not None else instances[0].mask.shape
    image_px = float(hw[0] * hw[1])
    scores = np.array([float(inst.score) for inst in instances])
    top_k = _top_index(instances)
    top = instances[top_k] if top_k is not None else None
    best = float(scores.max()) if len(scores) else 0.0
    order = np.argsort(-scores, kind="stable")
    rank = np.empty(len(instances), np.int64)
    rank[order] = np.arange(len(instances))
    top_region, near_top = _top_maps(top, saliency, hw)
    salient_px = 0 if saliency is None else int(np.count_nonzero(saliency >= SALIENT_AT))
    top_area = top.area_px if top is not None else 0
    top_sal = float(top.features.get("sal_mean_inside", 0.0)) if top is not None else 0.0
    faint_px = 0 if saliency is None else int(np.count_nonzero(saliency >= FAINT_AT))
    unsure_px = 0 if saliency is None else faint_px - int(np.count_nonzero(saliency >= 0.8))
    top_salient_px = 0
    if top is not None and saliency is not None:
        top_salient_px = int(np.count_nonzero(saliency[top.mask] >= SALIENT_AT))
    salient_parts = sum(1 for s in segments if s.kind != "detector")
    photo = {
        "top_sal_share": top_salient_px / salient_px if salient_px else 0.0,
        "map_uncertain_frac": unsure_px / faint_px if faint_px else 0.0,
        "salient_parts_log": math.log1p(salient_parts) if saliency is not None else 0.0,
        "has_saliency": 0.0 if saliency is None else 1.0,
        "salient_frac": salient_px / image_px,
        "n_instances_log": math.log1p(len(instances)),
        "top_area_frac": top_area / image_px,
        "top_sal_mean": top_sal,
    }
    centre = np.array([(hw[0] - 1) / 2.0, (hw[1] - 1) / 2.0])
    half_diag = float(np.hypot(*centre)) or 1.0
    owner_rows: dict[int, dict[str, float]] = {}
    for i, segment in enumerate(segments):
        row = out[i]
        row[col[f"kind_{segment.kind}"]] = 1.0
        area = segment.area_px
        row[col["seg_area_frac"]] = area / image_px
        ys, xs = np.nonzero(segment.mask)
        cy, cx = ys.mean() + segment.rows.start, xs.mean() + segment.cols.start
        row[col["seg_centrality"]] = 1.0 - min(
            1.0, np.hypot(cy - centre[0], cx - centre[1]) / half_diag
        )
        crop = (segment.rows, segment.cols)
        if saliency is not None:
            values = saliency[crop][segment.mask]
            row[col["seg_map_mean"]] = float(values.mean())
            if salient_px:
                row[col["seg_sal_share"]] = np.count_nonzero(values >= SALIENT_AT) / salient_px
            if top_sal > 0:
                row[col["seg_map_rel_top"]] = row[col["seg_map_mean"]] / top_sal
        if top_area:
            row[col["seg_area_rel_top"]] = area / top_area
        if top_region is not None:
            row[col["seg_in_top_region"]] = np.count_nonzero(top_region[crop] & segment.mask) / area
        if near_top is not None:
            row[col["seg_near_top"]] = _overlap_px(segment, near_top) / area
        for name, value in photo.items():
            row[col[name]] = value
        if segment.owner < 0:
            row[col["seg_area_rel"]] = 1.0
            continue
        owner = instances[segment.owner]
        row[col["seg_area_rel"]] = area / max(owner.area_px, 1)
        if segment.owner not in owner_rows:
            owner_rows[segment.owner] = _owner_cues(
                owner, scores[segment.owner], best, rank[segment.owner], len(instances), top,
                top_area, top_sal,
            )  # fmt: skip
        for name, value in owner_rows[segment.owner].items():
            row[col[name]] = value
    return out


def _owner_cues(owner, score, best, rank, n, top, top_area, top_sal) -> dict[str, float]:
    f = owner.features
    cues = {name: float(f.get(name, 0.0)) for name in OWNER_CUES}
    is_top = top is not None and owner is top
    partner_is_top = top is not None and int(f.get("partner_id", -1)) == top.id and not is_top
    cues.update(
        score=float(score),
        score_rel=float(score) / best if best > 0 else 0.0,
        is_top=1.0 if is_top else 0.0,
        rank_frac=float(rank) / max(n - 1, 1),
        is_rescued=1.0 if owner.source == "saliency" else 0.0,
        partner_is_top=float(f.get("interaction", 0.0)) if partner_is_top else 0.0,
        area_rel_top=owner.area_px / max(top_area, 1),
        sal_rel_top=cues["sal_mean_inside"] / top_sal if top_sal > 0 else 0.0,
    )
    return cues
