"""Duplicate detections of one object merged into one instance, before anything is ranked.

A detector reports one object more than once when its non-maximum suppression works on boxes
and per class: the rider of a bicycle as a whole-body "person" and a torso "person" whose boxes
overlap too little to be suppressed, a car as both "car" and "truck" on the same pixels. Each
copy is then ranked and scored like the other, so the keep policy sees two near-equal main
candidates and reports a false "ambiguous 99 %". ``merge_duplicates`` joins them:

- two instances of the **same label** are one object when their masks overlap with
  ``IoU ≥ min_mask_iou`` or the smaller one lies inside the larger for at least
  ``min_contained_share`` of its pixels (a part found on its own: a duck's head, a torso);
- two instances of **different labels** only when ``IoU ≥ min_mask_iou_any_label`` (the same
  pixels under two names). A rider and the horse or bicycle under them share far fewer pixels,
  and a held object is a different label, so interactions are never merged.

Greedy, best detector score first: each instance joins the first group it duplicates, else
starts one. A group keeps the id, label, class and score of its best-scoring member (its lead),
the union of the masks (the whole object when one copy was a part), the union of the boxes and
the element-wise maximum of the soft masks. Thresholds come from ``DedupeConfig``
(``[dedupe]``); the measured effect on the evaluation set is in the README ("Duplicate
detections").

Masks are ``H×W bool``; soft masks ``H×W float32`` in [0, 1]; boxes ``xyxy`` float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.config import DedupeConfig
from pipeline.types import Instance


@dataclass(frozen=True)
class Overlap:
    """How two masks overlap: ``iou`` (intersection / union) and ``contained_share``
    (intersection / the smaller mask's area), both in [0, 1]; 0 when either mask is empty."""

    iou: float
    contained_share: float


class _Footprint:
    """A mask's pixel count and extent ``(y0, y1, x0, x1)`` (ends exclusive), computed once."""

    def __init__(self, mask: np.ndarray):
        self.area_px = int(np.count_nonzero(mask))
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        self.extent = (
            (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
            if rows.size
            else (0, 0, 0, 0)
        )


def mask_overlap(a: Instance, b: Instance) -> Overlap:
    """The overlap of the masks of ``a`` and ``b`` (``H×W bool`` of one shape)."""
    return _overlap(a.mask, b.mask, _Footprint(a.mask), _Footprint(b.mask))


def _overlap(mask_a, mask_b, foot_a: _Footprint, foot_b: _Footprint) -> Overlap:
    """The intersection is counted on the intersection of the two extents only, so the many
    pairs of a crowded photo stay cheap."""
    if mask_a.shape != mask_b.shape:
        raise ValueError(f"masks differ in shape: {mask_a.shape} vs {mask_b.shape}")
    if foot_a.area_px == 0 or foot_b.area_px == 0:
        return Overlap(0.0, 0.0)
    (ay0, ay1, ax0, ax1), (by0, by1, bx0, bx1) = foot_a.extent, foot_b.extent
    y0, y1, x0, x1 = max(ay0, by0), min(ay1, by1), max(ax0, bx0), min(ax1, bx1)
    if y0 >= y1 or x0 >= x1:
        return Overlap(0.0, 0.0)
    inter = int(np.count_nonzero(mask_a[y0:y1, x0:x1] & mask_b[y0:y1, x0:x1]))
    union = foot_a.area_px + foot_b.area_px - inter
    return Overlap(inter / union, inter / min(foot_a.area_px, foot_b.area_px))


def is_duplicate(same_label: bool, overlap: Overlap, config: DedupeConfig) -> bool:
    """Whether two instances with this ``overlap`` are one object (module docstring)."""
    if same_label:
        return (
            overlap.iou >= config.min_mask_iou
            or overlap.contained_share >= config.min_contained_share
        )
    return overlap.iou >= config.min_mask_iou_any_label


def merge_duplicates(instances: Sequence[Instance], config: DedupeConfig) -> list[Instance]:
    """``instances`` with duplicates merged (module docstring), in the given order of their
    leads; the same instances when ``config.enabled`` is false or nothing is merged."""
    if not config.enabled or len(instances) < 2:
        return list(instances)
    feet = [_Footprint(inst.mask) for inst in instances]
    order = sorted(range(len(instances)), key=lambda k: (-float(instances[k].det_score), k))
    groups: list[_Group] = []
    for k in order:
        inst = instances[k]
        for group in groups:
            overlap = _overlap(group.merged.mask, inst.mask, group.footprint, feet[k])
            if is_duplicate(group.merged.label == inst.label, overlap, config):
                group.merged = _merge(group.merged, inst)
                group.footprint = _Footprint(group.merged.mask)
                break
        else:
            groups.append(_Group(k, inst, feet[k]))
    if len(groups) == len(instances):
        return list(instances)
    return [group.merged for group in sorted(groups, key=lambda group: group.lead_index)]


@dataclass
class _Group:
    """Instances found to be one object: where its lead stood in the input, the merged
    instance so far and the footprint of its mask."""

    lead_index: int
    merged: Instance
    footprint: _Footprint


def _merge(lead: Instance, other: Instance) -> Instance:
    """``lead`` grown by ``other``: union mask and box, maximum soft mask, lead's identity."""
    box = np.concatenate(
        [np.minimum(lead.xyxy[:2], other.xyxy[:2]), np.maximum(lead.xyxy[2:], other.xyxy[2:])]
    )
    soft = lead.soft_mask
    if soft is not None and other.soft_mask is not None:
        soft = np.maximum(soft, other.soft_mask)
    elif soft is not None or other.soft_mask is not None:
        # one copy without a soft mask: its hard mask stands in for it
        soft_a = lead.soft_mask if lead.soft_mask is not None else lead.mask.astype(np.float32)
        soft_b = other.soft_mask if other.soft_mask is not None else other.mask.astype(np.float32)
        soft = np.maximum(soft_a, soft_b)
    return lead.replace(mask=lead.mask | other.mask, xyxy=box, soft_mask=soft)
