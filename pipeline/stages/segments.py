"""The keep decision over segments: what the salient map found, cut and completed by instances.

A photo is split into **segments** (``split_segments``), each owned by at most one instance:

- ``both``: an instance's pixels the map calls salient (``map ≥ SALIENT_AT``);
- ``detector``: an instance's pixels the map does not (the whole instance without a map);
- ``map``: salient pixels no instance covers, in a salient component that some instance
  touches, each given to the nearest instance (a board under a rider, a kite string, the
  fringe of a coarse mask);
- ``free``: a salient component no instance touches at all (``owner = -1``).

Every salient pixel is in a segment (free components smaller than ``MIN_FREE_FRAC`` of the
image excepted), so keeping every salient segment is the map alone, keeping every instance
segment is the detector alone, and the oracle over segments bounds both. One learned model
(``pipeline.stages.fusion_model``) reads the cues of ``segment_features`` and gives each segment
a probability of being kept; a segment is kept when it reaches its kind's threshold
(``KeepThresholds``, learned by cross-validation and stored with the model: low for the
salient kinds, which the map alone keeps, high for ``detector`` segments, so the map's region
changes only where the model is confident). ``decide`` adds the one rule a model cannot learn:
never keep nothing when something was found.

All functions are pure (instances with features and scores, the map, the model in; arrays
out), so the evaluation tools run exactly the product's code on cached stage outputs.

Shapes: masks ``H×W bool``; ``saliency`` ``H×W float32`` in [0, 1] or None; a segment's mask
is stored as a crop (``rows``, ``cols`` slices of the image).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from pipeline.stages.salient_masks import _nearest_owner
from pipeline.types import Instance, check_alpha, check_mask

SALIENT_AT = 0.5  # a pixel is salient iff map ≥ this (as the map alone is scored)
KINDS = ("both", "detector", "map", "free")
SALIENT_KINDS = ("both", "map", "free")  # the kinds the map alone keeps
# free salient components smaller than this share of the image are no segment: a speck of the
# map (their total share of a GT region was measured with tools.cv_select: see the model card)
MIN_FREE_FRAC = 0.0005
# the faint region a kept subject's salient pixels grow into (``in_top_region``): map ≥ this
FAINT_AT = 0.2
# "near the top instance": within this share of the longer image side of its mask
NEAR_TOP_FRAC = 0.02


@dataclass(frozen=True)
class Segment:
    """One candidate piece of the kept region.

    Attributes:
        owner: index into the instances given to ``split_segments``; -1 for ``free``.
        kind: one of ``KINDS``.
        rows, cols: the crop of the image the mask covers.
        mask: ``h×w bool`` crop (non-empty).
    """

    owner: int
    kind: str
    rows: slice
    cols: slice
    mask: np.ndarray

    @property
    def area_px(self) -> int:
        return int(np.count_nonzero(self.mask))

    def full(self, hw: tuple[int, int]) -> np.ndarray:
        """The mask pasted into an ``H×W bool`` canvas."""
        out = np.zeros(hw, bool)
        out[self.rows, self.cols] = self.mask
        return out


def _box(mask: np.ndarray) -> tuple[slice, slice] | None:
    rows = np.flatnonzero(mask.any(axis=1))
    if len(rows) == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def _segment(owner: int, kind: str, rows: slice, cols: slice, mask: np.ndarray):
    """A Segment cropped tight to ``mask`` (a crop at ``rows, cols``), or None if empty."""
    box = _box(mask)
    if box is None:
        return None
    r, c = box
    rows = slice(rows.start + r.start, rows.start + r.stop)
    cols = slice(cols.start + c.start, cols.start + c.stop)
    return Segment(owner, kind, rows, cols, mask[r, c])


def check_inputs(instances: Sequence[Instance], saliency: np.ndarray | None) -> tuple[int, int]:
    """``(H, W)`` of the photo; ``ValueError`` for masks or a map of another shape."""
    if saliency is not None:
        hw = saliency.shape
        check_alpha(saliency, None, "saliency")
    elif instances:
        hw = instances[0].mask.shape
    else:
        return (0, 0)
    for inst in instances:
        check_mask(inst.mask, hw, f"instance {inst.id} mask")
    return int(hw[0]), int(hw[1])


def split_segments(
    instances: Sequence[Instance],
    saliency: np.ndarray | None,
    min_free_frac: float = MIN_FREE_FRAC,
) -> list[Segment]:
    """The segments of a photo (module docstring), instance segments first in instance order.

    Args:
        instances: with ``H×W bool`` masks (the map-refined and rescued ones of the pipeline).
        saliency: ``H×W float32`` map in [0, 1], or None (then one ``detector`` segment per
            non-empty instance).
        min_free_frac: smallest ``free`` component, share of the image area.
    """
    hw = check_inputs(instances, saliency)
    segments: list[Segment] = []
    boxes = [_box(inst.mask) for inst in instances]
    if saliency is None:
        for k, (inst, box) in enumerate(zip(instances, boxes, strict=True)):
            if box is not None:
                segments.append(Segment(k, "detector", *box, inst.mask[box]))
        return segments
    salient = saliency >= SALIENT_AT
    covered = np.zeros(hw, bool)
    painted = np.full(hw, -1, np.int32)
    # where masks overlap the smaller instance owns the pixel (as in salient_masks)
    for k in sorted(range(len(instances)), key=lambda k: -instances[k].area_px):
        if boxes[k] is not None:
            painted[boxes[k]][instances[k].mask[boxes[k]]] = k
    for k, (inst, box) in enumerate(zip(instances, boxes, strict=True)):
        if box is None:
            continue
        mask, sal = inst.mask[box], salient[box]
        covered[box] |= mask
        for kind, part in (("both", mask & sal), ("detector", mask & ~sal)):
            segment = _segment(k, kind, *box, part)
            if segment is not None:
                segments.append(segment)
    count, comps = cv2.connectedComponents(salient.astype(np.uint8), connectivity=8)
    if count <= 1:
        return segments
    touched = np.zeros(count, bool)
    touched[np.unique(comps[covered & salient])] = True
    touched[0] = False
    uncovered = salient & ~covered
    attached = uncovered & touched[comps]
    if attached.any():
        # nearest owner on the box holding every painted and attached pixel: distances between
        # pixels inside a rectangle do not depend on what lies outside it
        box = _box(attached | (painted >= 0))
        owner_map = np.zeros(hw, np.int32)
        nearest = _nearest_owner(painted[box])
        owner_map[box] = np.where(attached[box], nearest + 1, 0)
        for k, box in enumerate(ndimage.find_objects(owner_map)):
            if box is not None:
                segment = _segment(k, "map", *box, owner_map[box] == k + 1)
                if segment is not None:
                    segments.append(segment)
    min_px = min_free_frac * hw[0] * hw[1]
    free_labels = np.where(uncovered & ~touched[comps], comps, 0)
    for label, box in enumerate(ndimage.find_objects(free_labels), start=1):
        if box is None:
            continue
        part = free_labels[box] == label
        if np.count_nonzero(part) >= min_px:
            segments.append(Segment(-1, "free", *box, part))
    return segments


def kept_region(segments: Sequence[Segment], keep: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """``H×W bool`` union of the segments whose ``keep`` entry is true."""
    out = np.zeros(hw, bool)
    for segment, on in zip(segments, keep, strict=True):
        if on:
            out[segment.rows, segment.cols] |= segment.mask
    return out
