"""Geometric cues: size, position, frame truncation and occlusion (depth) order.

Every cue is computed on the working grid (``pipeline.features.grid``); all are shares or
normalised positions, so they do not depend on the grid's resolution beyond rounding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from pipeline.features.grid import MaskView, frame_sides

# in-front votes closer than this share of the smaller mask are a tie (decided by ground contact)
IN_FRONT_TIE_FRAC = 0.02
# in_front of an instance that overlaps no other: neither in front nor behind
IN_FRONT_ALONE = 0.5


def layout_features(view: MaskView, work_hw: tuple[int, int]) -> dict[str, float]:
    """Size and position of one mask on an ``h×w`` working grid.

    Returns:
        area_frac: mask area / image area, in [0, 1].
        centrality: ``1 - d / d_corner`` in [0, 1], ``d`` the distance of the mask centroid to
            the image centre in coordinates normalised by width and height (so the image aspect
            does not matter): 1 at the centre, 0 at a corner; 0 for an empty mask.
        bottom_frac: lowest mask row / image height, in [0, 1]: 1 when the mask reaches the
            bottom edge (ground contact near the camera), small for things high in the frame.
        box_fill: mask area / area of its tight box, in [0, 1] (low for thin or sprawling shapes).
    """
    height, width = work_hw
    if view.empty:
        return {"area_frac": 0.0, "centrality": 0.0, "bottom_frac": 0.0, "box_fill": 0.0}
    moments = cv2.moments(np.ascontiguousarray(view.crop).view(np.uint8), binaryImage=True)
    cx = (view.x0 + moments["m10"] / moments["m00"] + 0.5) / width
    cy = (view.y0 + moments["m01"] / moments["m00"] + 0.5) / height
    distance = math.hypot(cx - 0.5, cy - 0.5) / math.sqrt(0.5)
    box_px = (view.y1 - view.y0) * (view.x1 - view.x0)
    return {
        "area_frac": view.area_px / float(height * width),
        "centrality": max(0.0, 1.0 - distance),
        "bottom_frac": view.y1 / float(height),
        "box_fill": view.area_px / float(box_px),
    }


def truncation_features(view: MaskView, work_hw: tuple[int, int]) -> dict[str, float]:
    """How much of the mask's outline is the image frame (the object continues outside).

    A side counts when the mask reaches it up to ``grid.frame_tolerance_px`` (a detector mask
    often ends a few pixels short of the frame that cuts the object).

    Returns shares of the mask's boundary pixels (``MaskView.boundary``), each in [0, 1]:
        truncation: boundary pixels lying on any side of the frame / all boundary pixels.
        trunc_left, trunc_top, trunc_right, trunc_bottom: the same for one side (a corner
            pixel counts for both of its sides, so the four can sum to a little more).
    An empty mask gives 0 everywhere.
    """
    names = ("truncation", "trunc_left", "trunc_top", "trunc_right", "trunc_bottom")
    boundary_px = int(view.boundary.sum())
    if view.empty or boundary_px == 0:
        return dict.fromkeys(names, 0.0)
    crop = view.crop
    at_top, at_bottom, at_left, at_right = frame_sides(
        (view.y0, view.x0, view.y1, view.x1), work_hw
    )
    left = int(crop[:, 0].sum()) if at_left else 0
    right = int(crop[:, -1].sum()) if at_right else 0
    top = int(crop[0, :].sum()) if at_top else 0
    bottom = int(crop[-1, :].sum()) if at_bottom else 0
    total = int(view.on_frame.sum())
    values = (total, left, top, right, bottom)
    return {name: count / boundary_px for name, count in zip(names, values, strict=True)}


def _hull(view: MaskView) -> np.ndarray:
    """Filled convex hull of the mask crop (same shape, bool)."""
    contours, _ = cv2.findContours(
        np.ascontiguousarray(view.crop).view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    hull = np.zeros(view.crop.shape, np.uint8)
    if contours:
        points = cv2.convexHull(np.concatenate(contours))
        cv2.fillConvexPoly(hull, points, 1)
    return hull.view(bool)


def _box_overlap(a: MaskView, b: MaskView) -> tuple[int, int, int, int] | None:
    """Intersection ``(y0, y1, x0, x1)`` of two working boxes, None when it is empty."""
    y0, y1 = max(a.y0, b.y0), min(a.y1, b.y1)
    x0, x1 = max(a.x0, b.x0), min(a.x1, b.x1)
    if y0 >= y1 or x0 >= x1:
        return None
    return y0, y1, x0, x1


def _fill(front: MaskView, back: MaskView, hull_back: np.ndarray, region) -> int:
    """Pixels of ``front`` inside ``back``'s convex hull but outside ``back``'s mask.

    An occluder sits in the bite it takes out of what it hides, so this counts how much of
    ``back``'s missing shape ``front`` accounts for.
    """
    y0, y1, x0, x1 = region
    hull = hull_back[y0 - back.y0 : y1 - back.y0, x0 - back.x0 : x1 - back.x0]
    back_crop = back.crop[y0 - back.y0 : y1 - back.y0, x0 - back.x0 : x1 - back.x0]
    front_crop = front.crop[y0 - front.y0 : y1 - front.y0, x0 - front.x0 : x1 - front.x0]
    return int(np.count_nonzero(front_crop & hull & ~back_crop))


def in_front_features(views: Sequence[MaskView]) -> list[dict[str, float]]:
    """Occlusion order: share of an instance's overlapping neighbours it is judged in front of.

    Neighbours are instances whose (working-grid) boxes intersect. For a pair (i, j), i is in
    front when more of i lies in j's convex hull outside j's mask (the bite i takes out of j)
    than the other way round; when the two counts differ by at most ``IN_FRONT_TIE_FRAC`` of
    the smaller mask, the one reaching lower in the frame is in front (on a ground plane nearer
    things reach lower), then the larger one.

    Returns per instance ``{"in_front": v}``, ``v`` in [0, 1]: 1 = in front of every neighbour,
    0 = behind all of them, ``IN_FRONT_ALONE`` (0.5) when it overlaps no other instance.
    """
    n = len(views)
    wins = np.zeros(n)
    pairs = np.zeros(n)
    hulls: dict[int, np.ndarray] = {}

    def hull(k: int) -> np.ndarray:
        if k not in hulls:
            hulls[k] = _hull(views[k])
        return hulls[k]

    for i in range(n):
        for j in range(i + 1, n):
            a, b = views[i], views[j]
            if a.empty or b.empty:
                continue
            region = _box_overlap(a, b)
            if region is None:
                continue
            a_into_b = _fill(a, b, hull(j), region)
            b_into_a = _fill(b, a, hull(i), region)
            if abs(a_into_b - b_into_a) > IN_FRONT_TIE_FRAC * min(a.area_px, b.area_px):
                i_front = a_into_b > b_into_a
            elif a.y1 != b.y1:
                i_front = a.y1 > b.y1
            else:
                i_front = a.area_px >= b.area_px
            pairs[[i, j]] += 1
            wins[i if i_front else j] += 1
    return [
        {"in_front": float(wins[k] / pairs[k]) if pairs[k] else IN_FRONT_ALONE} for k in range(n)
    ]
