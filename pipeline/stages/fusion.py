"""The fusion stage: the learned keep decision over segments, written into the instances.

``KeepFusion(model).fuse(image, instances, saliency)`` splits the photo into segments
(``pipeline.stages.segments``), gives each a keep probability (``fusion_features`` →
``fusion_model``), decides (``decide`` with the model's ``KeepThresholds`` by segment kind:
never nothing when something was found) and returns the
instances, same order and ids, reshaped so the union of the kept ones is exactly the kept
region:

- a kept instance's ``mask`` is the union of its kept segments (its salient part, the part the
  map misses, the salient pixels next to it that no detection covers, whichever were kept) and
  its ``soft_mask`` takes the map's value on the pixels it gained;
- a kept ``free`` salient component joins the kept instance nearest to it; when none is kept
  it becomes an ``object`` instance of its own (``source="saliency"``, features computed for it
  alone, score 0);
- a dropped instance keeps its mask (a caller can still switch its layer on).

Each instance's ``features`` gain ``keep`` (1.0 kept, 0.0 dropped), ``keep_prob`` and
``keep_at`` (the probability of the segment that decided it and that segment's threshold: its
most probable kept segment, or when none is kept its most probable one), ``kept_area_rel`` (its
kept pixels over its mask's, 0 when dropped) and ``keep_fallback`` (1.0 when only the
never-empty rule kept it). The keep policy
(``pipeline.stages.select``) reads them for ``--keep main``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.stages.fusion_features import FEATURE_NAMES, segment_features
from pipeline.stages.fusion_model import KEEP_AT, Decision, KeepModel, decide
from pipeline.stages.segments import Segment, split_segments
from pipeline.types import Instance, mask_to_xyxy

DECISION_FEATURES = ("keep", "keep_prob", "keep_at", "kept_area_rel", "keep_fallback")


class KeepFusion:
    """The fusion stage (``pipeline.protocols.Fusion``) around one ``KeepModel``."""

    def __init__(self, model: KeepModel):
        self.model = model
        self.name = str(model.doc.get("name", "keep"))

    def probabilities(
        self,
        instances: Sequence[Instance],
        segments: Sequence[Segment],
        saliency: np.ndarray | None,
    ) -> np.ndarray:
        """``(S,)`` keep probability of each segment."""
        x = segment_features(instances, segments, saliency)
        return self.model.probability(x, FEATURE_NAMES)

    def fuse(
        self,
        image: np.ndarray,
        instances: Sequence[Instance],
        saliency: np.ndarray | None,
    ) -> list[Instance]:
        """The instances with the decision written in (module docstring)."""
        segments = split_segments(instances, saliency)
        probability = self.probabilities(instances, segments, saliency)
        thresholds = self.model.thresholds.per_segment([s.kind for s in segments],
                                                       saliency is not None)  # fmt: skip
        decision = decide(probability, thresholds)
        return apply_decision(image, instances, segments, decision, saliency)


def apply_decision(
    image: np.ndarray,
    instances: Sequence[Instance],
    segments: Sequence[Segment],
    decision: Decision,
    saliency: np.ndarray | None,
) -> list[Instance]:
    """Reshape ``instances`` by the kept segments of ``decision`` (module docstring)."""
    hw = image.shape[:2]
    probability, keep, fallback = decision.probability, decision.keep, bool(decision.fallback)
    kept_masks: dict[int, np.ndarray] = {}
    # per instance: (kept?, probability, threshold) of the segment that decided it; a kept
    # segment outranks every dropped one, then the more probable wins
    decided_by: dict[int, tuple[bool, float, float]] = {}
    for segment, p, at, on in zip(segments, probability, decision.keep_at, keep, strict=True):
        if segment.owner < 0:
            continue
        candidate = (bool(on), float(p), float(at))
        if candidate[:2] > decided_by.get(segment.owner, (False, -1.0, 0.0))[:2]:
            decided_by[segment.owner] = candidate
        if on:
            mask = kept_masks.setdefault(segment.owner, np.zeros(hw, bool))
            mask[segment.rows, segment.cols] |= segment.mask
    free = [s for s, on in zip(segments, keep, strict=True) if on and s.owner < 0]
    orphans = []
    for segment in free:
        host = _nearest(segment, [instances[k] for k in kept_masks], list(kept_masks))
        if host is None:
            orphans.append(segment)
        else:
            kept_masks[host][segment.rows, segment.cols] |= segment.mask
    out = []
    for k, inst in enumerate(instances):
        mask = kept_masks.get(k)
        _, p, at = decided_by.get(k, (False, 0.0, KEEP_AT))
        decided = {
            "keep": 1.0 if mask is not None else 0.0,
            "keep_prob": p,
            "keep_at": at,
            "kept_area_rel": 0.0 if mask is None else mask.sum() / max(inst.area_px, 1),
            "keep_fallback": 1.0 if fallback and mask is not None else 0.0,
        }
        features = {**inst.features, **decided}
        if mask is None:
            out.append(inst.replace(features=features))
            continue
        soft = inst.soft_mask
        if soft is not None and saliency is not None:
            gained = mask & ~inst.mask
            if gained.any():
                soft = soft.copy()
                soft[gained] = saliency[gained]
        out.append(inst.replace(mask=mask, xyxy=mask_to_xyxy(mask), soft_mask=soft,
                                features=features))  # fmt: skip
    return out + _orphan_instances(image, instances, orphans, decision, segments, saliency)


def _nearest(segment: Segment, hosts: Sequence[Instance], indices: Sequence[int]) -> int | None:
    """Index (into the instances) of the host whose box centre is nearest the segment's."""
    if not hosts:
        return None
    cy = (segment.rows.start + segment.rows.stop) / 2.0
    cx = (segment.cols.start + segment.cols.stop) / 2.0
    dist = [np.hypot((h.xyxy[1] + h.xyxy[3]) / 2 - cy, (h.xyxy[0] + h.xyxy[2]) / 2 - cx)
            for h in hosts]  # fmt: skip
    return indices[int(np.argmin(dist))]


def _orphan_instances(image, instances, orphans, decision, segments, saliency):
    """Kept free components with no kept instance to join: one ``object`` instance each."""
    if not orphans:
        return []
    from pipeline.features import compute_features

    next_id = max((inst.id for inst in instances), default=-1) + 1
    hw = image.shape[:2]
    created = []
    for segment in orphans:
        mask = segment.full(hw)
        index = segments.index(segment)
        p, at = float(decision.probability[index]), float(decision.keep_at[index])
        soft = None
        mean = 1.0
        if saliency is not None:
            soft = np.where(mask, saliency, np.float32(0.0)).astype(np.float32)
            mean = float(saliency[mask].mean())
        inst = Instance(next_id, mask_to_xyxy(mask), "object", -1, mean, mask, soft_mask=soft,
                        source="saliency")  # fmt: skip
        (inst,) = compute_features(image, [inst], saliency)
        decided = {"keep": 1.0, "keep_prob": p, "keep_at": at, "kept_area_rel": 1.0,
                   "keep_fallback": 1.0 if decision.fallback else 0.0}  # fmt: skip
        created.append(inst.replace(features={**inst.features, **decided}))
        next_id += 1
    return created


def build_fusion(model_name: str) -> KeepFusion:
    """The stage for ``select.model``: a JSON path or the name of a file in
    ``pipeline/models/`` (shipped in the package)."""
    from pipeline.config import ranker_path

    path = ranker_path(model_name)
    if path is None:
        raise ValueError(
            f"keep model not found: {model_name!r}; set select.model to a JSON path or the "
            "name of a file in pipeline/models/"
        )
    return KeepFusion(KeepModel.from_json(path))
