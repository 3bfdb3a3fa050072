"""Baseline selection rules and oracles over the same proposals the pipeline saw.

A rule takes the proposals (``pipeline.types.Instance``: ``mask`` ``H×W bool``, ``det_score``,
``features``…) and the image ``(H, W)`` and returns the ``H×W bool`` region it would keep. The
report measures each rule's IoU with the GT main region as ``iou_rule_<name>`` beside the
pipeline's ``iou``, so a ranker that loses to "keep the largest instance" is seen at once.

Add a rule from anywhere (e.g. a saliency-based one) with the decorator::

    from pipeline.eval.rules import register_rule

    @register_rule("salient")
    def keep_most_salient(instances, hw):
        ...  # return an H×W bool mask

A rule registered with ``needs_saliency=True`` is called as ``fn(instances, hw, saliency=map)``
with the run's salient-object map (``H×W float32`` in [0, 1], ``Layers.saliency``); without a
map in the run its metric is left out (not reported as 0), so reports of runs without a saliency
model do not change. ``salient`` (the map alone, thresholded at ``SALIENT_AT``) is one: the
single-network remover a user would otherwise pick.

``iou_oracle_single`` (best single proposal) and ``iou_oracle_union`` (greedy union) are the
ceilings these proposals allow, whatever the ranker does. ``iou_oracle_segments`` is the
ceiling of the learned keep decision (``pipeline.stages.segments``): every segment of the
proposals and the map kept exactly when more of it lies inside the GT main region than
outside. Pixels of the GT's ``ignore`` band are never scored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from pipeline.eval.metrics_select import iou
from pipeline.types import Instance, check_saliency

RuleFn = Callable[[Sequence[Instance], tuple[int, int]], np.ndarray]

RULES: dict[str, RuleFn] = {}
# names of the rules that read the salient map (called with ``saliency=``; skipped without one)
SALIENCY_RULES: set[str] = set()
# the map value above which a pixel is salient (rembg and ISNet's own evaluation use 0.5)
SALIENT_AT = 0.5


def register_rule(name: str, needs_saliency: bool = False) -> Callable[[RuleFn], RuleFn]:
    """Decorator adding ``fn`` to ``RULES`` under ``name`` (a duplicate name is an error).

    ``needs_saliency``: ``fn`` takes a ``saliency`` keyword (``H×W float32`` map in [0, 1]) and
    is only measured in runs that computed a map.
    """
    if not name.isidentifier():
        raise ValueError(f"rule name must be an identifier, got {name!r}")

    def decorate(fn: RuleFn) -> RuleFn:
        if name in RULES:
            raise ValueError(f"selection rule {name!r} is already registered")
        RULES[name] = fn
        if needs_saliency:
            SALIENCY_RULES.add(name)
        return fn

    return decorate


def _empty(hw: tuple[int, int]) -> np.ndarray:
    return np.zeros(hw, bool)


@register_rule("top_score")
def keep_top_score(instances: Sequence[Instance], hw: tuple[int, int]) -> np.ndarray:
    """The proposal with the highest detector confidence (first one on ties)."""
    if not instances:
        return _empty(hw)
    best = max(range(len(instances)), key=lambda i: (instances[i].det_score, -i))
    return instances[best].mask.copy()


@register_rule("largest")
def keep_largest(instances: Sequence[Instance], hw: tuple[int, int]) -> np.ndarray:
    """The proposal with the largest mask area."""
    if not instances:
        return _empty(hw)
    best = max(range(len(instances)), key=lambda i: (instances[i].area_px, -i))
    return instances[best].mask.copy()


@register_rule("central")
def keep_central(instances: Sequence[Instance], hw: tuple[int, int]) -> np.ndarray:
    """The proposal whose mask centroid is nearest the image centre (empty masks never win)."""
    centre = np.array([(hw[0] - 1) / 2.0, (hw[1] - 1) / 2.0])
    best, best_dist = None, np.inf
    for inst in instances:
        ys, xs = np.nonzero(inst.mask)
        if len(ys) == 0:
            continue
        dist = float(np.hypot(ys.mean() - centre[0], xs.mean() - centre[1]))
        if dist < best_dist:
            best, best_dist = inst, dist
    return _empty(hw) if best is None else best.mask.copy()


@register_rule("all")
def keep_all(instances: Sequence[Instance], hw: tuple[int, int]) -> np.ndarray:
    """The union of every proposal."""
    out = _empty(hw)
    for inst in instances:
        out |= inst.mask
    return out


@register_rule("salient", needs_saliency=True)
def keep_salient(
    instances: Sequence[Instance], hw: tuple[int, int], saliency: np.ndarray
) -> np.ndarray:
    """The salient map alone, ``saliency > SALIENT_AT``, whatever the proposals are."""
    return check_saliency(saliency, hw) > SALIENT_AT


def oracle_single_iou(
    masks: Sequence[np.ndarray], gt_main: np.ndarray, ignore: np.ndarray | None = None
) -> float:
    """Best IoU any single proposal reaches with ``gt_main`` (0.0 without proposals)."""
    return max((iou(m, gt_main, ignore) for m in masks), default=0.0)


def oracle_union_iou(
    masks: Sequence[np.ndarray], gt_main: np.ndarray, ignore: np.ndarray | None = None
) -> float:
    """IoU of the greedy union: repeatedly add the proposal that raises IoU with ``gt_main``
    the most, stop when none raises it. Without proposals: the IoU of an empty keep."""
    current = np.zeros(gt_main.shape, bool)
    best = iou(current, gt_main, ignore)
    remaining = list(masks)
    while remaining:
        scores = [iou(current | m, gt_main, ignore) for m in remaining]
        pick = int(np.argmax(scores))
        if scores[pick] <= best:
            break
        best = scores[pick]
        current |= remaining.pop(pick)
    return best


def oracle_segments_iou(
    instances: Sequence[Instance],
    gt_main: np.ndarray,
    saliency: np.ndarray | None = None,
    ignore: np.ndarray | None = None,
) -> float:
    """IoU of the segments (``pipeline.stages.segments.split_segments``) that lie more inside
    ``gt_main`` than outside it (ignored pixels counted as neither)."""
    from pipeline.stages.segments import kept_region, split_segments

    segments = split_segments(instances, saliency)
    scored = gt_main if ignore is None else gt_main | ignore
    keep = []
    for segment in segments:
        crop = (segment.rows, segment.cols)
        inside = np.count_nonzero(segment.mask & gt_main[crop])
        outside = np.count_nonzero(segment.mask & ~scored[crop])
        keep.append(inside > outside)
    return iou(kept_region(segments, np.array(keep, bool), gt_main.shape), gt_main, ignore)


def rule_metrics(
    instances: Sequence[Instance],
    gt_main: np.ndarray,
    saliency: np.ndarray | None = None,
    ignore: np.ndarray | None = None,
) -> dict[str, float]:
    """``iou_rule_<name>`` for every registered rule plus the three oracles.

    ``saliency``: the run's ``H×W float32`` salient map, or None (rules that need it are left
    out). ``ignore``: ``H×W bool`` pixels not scored, or None.
    """
    hw = gt_main.shape
    out = {}
    for name, fn in RULES.items():
        if name in SALIENCY_RULES:
            if saliency is None:
                continue
            region = fn(instances, hw, saliency=saliency)
        else:
            region = fn(instances, hw)
        out[f"iou_rule_{name}"] = iou(region, gt_main, ignore)
    masks = [inst.mask for inst in instances]
    out["iou_oracle_single"] = oracle_single_iou(masks, gt_main, ignore)
    out["iou_oracle_union"] = oracle_union_iou(masks, gt_main, ignore)
    out["iou_oracle_segments"] = oracle_segments_iou(instances, gt_main, saliency, ignore)
    return out
