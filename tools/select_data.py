"""Per-item data for training and cross-validating the keep decision, from the stage cache.

``prepare(item, cached, config, map_on)`` runs the product's own cheap stages on an item's
cached detector instances and salient map (``tools.select_cache``):

- the detector's duplicates merged (``merge_duplicates``, the ``dedupe`` stage);
- with the map: ``Remover._salient_masks`` (the map's mask edges and the rescue of salient
  regions, exactly as ``Remover.run`` calls it), then ``compute_features`` with the map;
- without: ``compute_features`` on those instances alone;

then ``pipeline.stages.segments.split_segments``, and measures every segment and instance
against the GT main region (the ignore band not counted). Scores are left at 0: the ranker is
fitted per fold (``tools.select_train``) and ``Prepared.scored`` puts its scores in.

``load_records`` prepares every cached item of a manifest, map on and off.

Groups (``item_group``): a DAVIS sequence is one group; every other photo is its own. The
same function names the pixel sources of ``tools.synth`` scenes, so a synthetic scene built
from a held-out sequence is never trained on either.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.config import Config
from pipeline.eval.dataset import EvalItem, load_dataset, load_ground_truth
from pipeline.eval.metrics_select import iou
from pipeline.eval.proposals import gt_masks
from pipeline.features import compute_features
from pipeline.stages.dedupe import merge_duplicates
from pipeline.stages.fusion_features import segment_features
from pipeline.stages.segments import Segment, kept_region, split_segments
from pipeline.types import Instance, mask_to_xyxy
from tools.select_cache import CachedItem, cache_file, load_entry
from tools.synth_sources import group_of

item_group = group_of


@dataclass
class Prepared:
    """One item in one variant (map on or off), ready for any ranker and keep model.

    Attributes:
        instances: the pipeline's instances (features computed, ``score`` 0).
        raw: the detector's instances after the dedupe stage (for the detector-only rules).
        saliency: ``H×W float32`` map or None (map off).
        segments: ``split_segments(instances, saliency)``.
        seg_in, seg_out: ``(S,) int64`` pixels of each segment inside / outside the GT main
            region (ignored pixels in neither).
        inst_in_frac: ``(N,)`` share of each instance's scored pixels inside the GT region.
        gt, ignore: ``H×W bool`` GT main region and ignore band (or None).
        ranks: GT rank per instance where the item has them (synthetic scenes), else None.
    """

    name: str
    set_name: str
    group: str
    map_on: bool
    instances: list[Instance]
    raw: list[Instance]
    saliency: np.ndarray | None
    segments: list[Segment]
    seg_in: np.ndarray
    seg_out: np.ndarray
    inst_in_frac: np.ndarray
    gt: np.ndarray
    ignore: np.ndarray | None
    ranks: np.ndarray | None = None
    sources: frozenset[str] = field(default_factory=frozenset)
    subclass: str = ""

    def scored(self, scores: np.ndarray) -> list[Instance]:
        """The instances with ``score`` set (same order)."""
        return [
            inst.replace(score=float(s)) for inst, s in zip(self.instances, scores, strict=True)
        ]

    def features(self, scores: np.ndarray) -> np.ndarray:
        """``segment_features`` of this item's segments under the given instance scores."""
        return segment_features(self.scored(scores), self.segments, self.saliency)

    def iou_of(self, region: np.ndarray) -> float:
        return iou(region, self.gt, self.ignore)

    def region(self, keep: np.ndarray) -> np.ndarray:
        return kept_region(self.segments, keep, self.gt.shape)


def apply_saliency(config: Config, instances: Sequence[Instance], saliency: np.ndarray):
    """The product's map step (``Remover._salient_masks``) with ``config``'s settings."""
    from pipeline.api import Remover

    return Remover(config)._salient_masks(list(instances), saliency)


def _measure(masks_and_boxes, gt: np.ndarray, ignore: np.ndarray | None):
    scored = gt if ignore is None else gt | ignore
    inside, outside = [], []
    for rows, cols, mask in masks_and_boxes:
        inside.append(np.count_nonzero(mask & gt[rows, cols]))
        outside.append(np.count_nonzero(mask & ~scored[rows, cols]))
    return np.asarray(inside, np.int64), np.asarray(outside, np.int64)


def prepare(
    item: EvalItem,
    cached: CachedItem,
    config: Config,
    map_on: bool,
    gt_proposals: bool = False,
) -> Prepared:
    """The item's ``Prepared`` record (module docstring).

    ``gt_proposals``: use the item's GT instances (a synthetic scene's instance map) instead of
    the detector's, unaltered by the map, as ``pipeline.eval`` does with ``--proposals gt``;
    their GT ranks are recorded.
    """
    gt = load_ground_truth(item)
    if gt.main_mask is None:
        raise ValueError(f"item {item.name!r} has no selection ground truth")
    saliency = cached.saliency if map_on else None
    if map_on and saliency is None:
        raise ValueError(f"cache entry of {item.name!r} holds no salient map")
    ranks = None
    detected = list(cached.instances)
    if gt_proposals:
        found = gt_masks(item, gt)
        instances = [
            Instance(k, mask_to_xyxy(m), label, -1, 1.0, m, source="gt")
            for k, (_, label, m) in enumerate(found)
        ]
        ranks = np.array([item.ranks.get(idx, 99) for idx, _, _ in found], np.int64)
    else:
        # the product's dedupe stage, then (with the map) its salient_masks stage
        instances = merge_duplicates(list(cached.instances), config.dedupe)
        detected = instances
        if map_on:
            instances = apply_saliency(config, instances, saliency)
    instances = compute_features(gt.image, instances, saliency)
    segments = split_segments(instances, saliency)
    seg_in, seg_out = _measure(
        [(s.rows, s.cols, s.mask) for s in segments], gt.main_mask, gt.ignore
    )
    full = [(slice(None), slice(None), inst.mask) for inst in instances]
    inst_in, inst_out = _measure(full, gt.main_mask, gt.ignore)
    frac = inst_in / np.maximum(inst_in + inst_out, 1)
    return Prepared(
        name=item.name,
        set_name=item.set_name,
        group=item_group(item),
        map_on=map_on,
        instances=instances,
        raw=detected,
        saliency=saliency,
        segments=segments,
        seg_in=seg_in,
        seg_out=seg_out,
        inst_in_frac=frac.astype(np.float64),
        gt=gt.main_mask,
        ignore=gt.ignore,
        ranks=ranks,
        subclass=item.subclass,
    )


def segment_labels(p: Prepared) -> tuple[np.ndarray, np.ndarray]:
    """``(y, weight)`` per segment: keep when more of it is inside the GT than outside; the
    weight is what a wrong decision on it costs the item's IoU, measured at the oracle choice
    (every other segment decided right): ``|IoU(oracle) − IoU(oracle with it flipped)|``, so a
    photo never weighs more than its IoU can lose (areas from the segments' pixel counts;
    overlaps between segments are ignored)."""
    y = p.seg_in > p.seg_out
    gt_px = float(np.count_nonzero(p.gt))
    inter = float(p.seg_in[y].sum())
    union = gt_px + float(p.seg_out[y].sum())
    base = inter / union if union > 0 else 1.0
    sign = np.where(y, -1.0, 1.0)  # flipping a kept segment removes it, a dropped one adds it
    flip_inter = inter + sign * p.seg_in
    flip_union = union + sign * p.seg_out
    flipped = np.where(flip_union > 0, flip_inter / np.maximum(flip_union, 1e-9), 1.0)
    return y, np.abs(base - flipped)


def load_records(
    manifest: str | Path,
    cache_dir: str | Path,
    config: Config,
    sets: Sequence[str] = (),
    gt_proposals: bool = False,
    log=sys.stderr,
) -> tuple[list[Prepared], list[Prepared]]:
    """``(map_on, map_off)`` records of every cached item (same order)."""
    raw = json.loads(Path(manifest).read_text(encoding="utf-8"))
    sources = {
        it["name"]: frozenset([it["sources"].get("background", ""), *it["sources"]["cutouts"]])
        for it in raw["items"]
        if isinstance(it.get("sources"), dict)
    }
    on, off = [], []
    items = [it for it in load_dataset(manifest) if not sets or it.set_name in sets]
    start = time.perf_counter()
    for item in items:
        path = cache_file(Path(cache_dir), item)
        if not path.is_file():
            continue
        entry = load_entry(path)
        for variant, out in ((True, on), (False, off)):
            rec = prepare(item, entry, config, variant, gt_proposals)
            if item.name in sources:  # a synthetic scene: its own group, and its sources
                rec.group = item.name
                rec.sources = (sources[item.name] - {""}) | {item.name}
            out.append(rec)
    if log is not None:
        print(f"prepared {len(on)} items in {time.perf_counter() - start:.0f} s", file=log)
    return on, off
