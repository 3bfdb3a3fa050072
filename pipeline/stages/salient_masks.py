"""Instance masks from a salient-object map: edge refinement and rescue of missed regions.

The detector (and ranker) decide *what* is kept; the salient map (``IsnetSaliency``, computed on
a 1024² input) gives the *edges*, which are far finer than a 320-px detector mask.

Shapes and units:
- ``saliency``: ``H×W float32`` in [0, 1], the image's resolution; a pixel is salient when its
  value is ≥ ``threshold`` (0.5, the threshold rembg users effectively apply).
- masks: ``H×W bool``; ``soft_mask``: ``H×W float32`` in [0, 1]; ``band_px``: pixels.
- ``min_area_frac``: share of the image area; ``max_covered_frac``: share of a region's area;
  ``min_mean_saliency``: mean map value in [0, 1].

All work on one instance is done on a crop around its mask (box grown by the band), so the cost
follows the instance size, not the image size: well under 0.2 s for a few instances on 1 MP.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from pipeline.types import Instance, check_mask, check_saliency, mask_to_xyxy

THRESHOLD = 0.5  # salient iff map ≥ this
MIN_MEAN_SALIENCY = 0.3  # an instance whose mean map value is lower is "not covered by the map"
# inside a covered instance's core, pixels the map puts below this are background; kept low
# because the map leaves a motion-blurred limb near 0.2 (README, "Map settings")
CORE_MIN_SALIENCY = 0.05
BAND_FRAC = 0.1  # adaptive band half-width as a share of sqrt(instance area)
MIN_BAND_PX = 2
MAX_BAND_FRAC_OF_SIDE = 0.03  # adaptive band never wider than this share of the longer side
# rescue: a strip this wide along existing masks is their edge, not a missed object
RESCUE_GAP_PX = 3
RESCUE_GAP_FRAC = 0.004  # … and on large photos this share of the longer side


def adaptive_band_px(area_px: int, hw: tuple[int, int]) -> int:
    """Band half-width in pixels for an instance of ``area_px`` mask pixels in an ``hw`` image.

    ``round(BAND_FRAC · sqrt(area_px))``, clipped to ``[MIN_BAND_PX, MAX_BAND_FRAC_OF_SIDE ·
    max(H, W)]``. Why: a detector mask's edge error grows with the object (its masks come from
    a coarse prototype grid stretched over the box), so a 100×200 px person gets a 14 px band
    and a 20×20 px cup 2 px; the cap keeps a huge instance from handing its body to the map.
    ``BAND_FRAC`` stops at 0.1: a wider band gains little and lets more of the map's
    distractors (a salient crowd) reach the instance (README, "Map settings").
    """
    upper = max(MIN_BAND_PX, int(round(MAX_BAND_FRAC_OF_SIDE * max(hw))))
    return int(np.clip(round(BAND_FRAC * np.sqrt(max(area_px, 0))), MIN_BAND_PX, upper))


def _crop(mask: np.ndarray, margin_px: int) -> tuple[slice, slice]:
    """Rows and columns of the mask's box grown by ``margin_px`` (clipped to the image)."""
    x0, y0, x1, y1 = mask_to_xyxy(mask).astype(int)
    height, width = mask.shape
    return (
        slice(max(0, y0 - margin_px), min(height, y1 + margin_px)),
        slice(max(0, x0 - margin_px), min(width, x1 + margin_px)),
    )


def _core_and_band(mask: np.ndarray, band_px: int) -> tuple[np.ndarray, np.ndarray]:
    """``(core, band)`` bool arrays for a mask crop.

    ``core``: mask pixels farther than ``band_px`` from the mask edge (the eroded mask).
    ``band``: pixels within ``band_px`` of the edge, on either side. OpenCV's distance transform
    treats the crop border as far away, so the image frame does not erode a truncated object.
    """
    inside_px = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    outside_px = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    core = inside_px > band_px
    band = (outside_px <= band_px) & ~core
    return core, band


def _refine_crop(
    mask: np.ndarray,
    saliency: np.ndarray,
    blocked: np.ndarray,
    band_px: int,
    threshold: float,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Refined ``(mask, soft_mask)`` on a crop, or None when nothing salient is left."""
    core, band = _core_and_band(mask, band_px)
    # the core is the detector's; only where the map is sure it is background does it give way
    # (a bystander's torso inside a coarse person mask, sky between a cyclist's arms)
    core &= ~blocked & (saliency >= CORE_MIN_SALIENCY)
    band &= ~blocked
    salient = saliency >= threshold
    candidate = core | (band & salient)
    # Seeds: the eroded core; a thin instance (no core) is seeded by its own salient pixels.
    seeds = core if core.any() else (mask & salient & ~blocked)
    if not seeds.any():
        return None
    count, labels = cv2.connectedComponents(candidate.astype(np.uint8), connectivity=8)
    keep = np.zeros(count, bool)
    keep[np.unique(labels[seeds])] = True
    keep[0] = False  # label 0 is the background of connectedComponents
    refined = keep[labels]
    soft = np.zeros(mask.shape, np.float32)
    soft[band] = saliency[band]
    # Salient band pixels not connected to this instance belong to something else.
    soft[band & salient & ~refined] = 0.0
    soft[core] = 1.0
    return refined, soft


def refine_with_saliency(
    instance: Instance,
    saliency: np.ndarray,
    band_px: int,
    *,
    blocked: np.ndarray | None = None,
    threshold: float = THRESHOLD,
    min_mean_saliency: float = MIN_MEAN_SALIENCY,
) -> Instance:
    """The instance with its mask edges taken from the salient map.

    Within a band of ``band_px`` pixels on both sides of the detector mask's edge, a pixel is in
    the mask iff ``saliency ≥ threshold`` and it is connected to the instance's core (the mask
    eroded by the band); the core is kept except where the map is below ``CORE_MIN_SALIENCY``
    (sure background); nothing outside the band is added.
    ``soft_mask`` (for the trimap and pymatting) is the map inside the band, 1 in the core and 0
    elsewhere, so ``refined.mask == (soft_mask ≥ threshold)`` up to disconnected salient bits.

    Args:
        instance: with an ``H×W bool`` mask.
        saliency: ``H×W float32`` in [0, 1].
        band_px: band half-width in pixels; ≤ 0 picks ``adaptive_band_px`` for the instance.
        blocked: optional ``H×W bool``: pixels this instance may not take (other instances'
            cores and pixels nearer to them; see ``refine_instances``).
        threshold: map value at or above which a pixel is salient.
        min_mean_saliency: an instance whose mean map value inside its mask is lower is not
            covered by the map and is returned unchanged (it stays a layer of its own).

    Returns:
        A new Instance (same id, box, label, scores) with ``mask`` and ``soft_mask`` replaced,
        or ``instance`` itself when the map does not cover it or nothing salient remains.
    """
    hw = instance.mask.shape
    check_saliency(saliency, hw)
    if blocked is not None:
        check_mask(blocked, hw, "blocked")
    area_px = instance.area_px
    if area_px == 0 or float(saliency[instance.mask].mean()) < min_mean_saliency:
        return instance
    band = band_px if band_px > 0 else adaptive_band_px(area_px, hw)
    rows, cols = _crop(instance.mask, band + 1)
    crop_blocked = np.zeros((rows.stop - rows.start, cols.stop - cols.start), bool)
    if blocked is not None:
        crop_blocked = blocked[rows, cols]
    result = _refine_crop(
        instance.mask[rows, cols], saliency[rows, cols], crop_blocked, band, threshold
    )
    if result is None:
        return instance
    mask = np.zeros(hw, bool)
    soft = np.zeros(hw, np.float32)
    mask[rows, cols], soft[rows, cols] = result
    return instance.replace(mask=mask, soft_mask=soft)


def refine_instances(
    instances: Sequence[Instance],
    saliency: np.ndarray,
    band_px: int,
    *,
    threshold: float = THRESHOLD,
    min_mean_saliency: float = MIN_MEAN_SALIENCY,
) -> list[Instance]:
    """``refine_with_saliency`` for several instances without one stealing from another.

    One salient region often spans two instances (a rider and the bike). Outside its own
    detector mask an instance may not take (a) the core of any other instance, nor (b) pixels
    nearer to another instance's mask than to its own (pixels inside another mask count as
    nearer to it), so in the region between two masks each takes only its side. Inside its own
    mask nothing is blocked: where detections overlap (a car also detected as a truck, a guitar
    inside the player's mask) each keeps what the detector gave it, edges decided by the map.
    Instances keep their order; uncovered ones are returned as is.
    """
    if not instances:
        return []
    hw = instances[0].mask.shape
    check_saliency(saliency, hw)
    for instance in instances:
        check_mask(instance.mask, hw, f"instance {instance.id} mask")
    bands = [
        band_px if band_px > 0 else adaptive_band_px(instance.area_px, hw) for instance in instances
    ]
    # Who owns each pixel by proximity: label image of masks, then the nearest labelled pixel.
    # Where masks overlap, the smaller instance is painted last and wins (it is usually the
    # object held in front of the person).
    owner_of_mask = np.full(hw, -1, np.int32)
    order = sorted(range(len(instances)), key=lambda i: -instances[i].area_px)
    for index in order:
        owner_of_mask[instances[index].mask] = index
    owner = _nearest_owner(owner_of_mask)
    core_count = np.zeros(hw, np.int16)
    cores = []
    for instance, band in zip(instances, bands, strict=True):
        rows, cols = _crop(instance.mask, band + 1)
        core, _ = _core_and_band(instance.mask[rows, cols], band)
        core_count[rows, cols] += core
        cores.append((rows, cols, core))
    refined = []
    for index, (instance, band) in enumerate(zip(instances, bands, strict=True)):
        rows, cols, core = cores[index]
        mask_crop = instance.mask[rows, cols]
        others_core = (core_count[rows, cols] - core) > 0
        owner_crop = owner[rows, cols]
        nearer_other = (owner_crop >= 0) & (owner_crop != index)
        blocked = np.zeros(hw, bool)
        # Only growth beyond the instance's own detector mask is blocked: inside it the map
        # decides, so two overlapping detections of one object (car + truck) both keep it.
        blocked[rows, cols] = (others_core | nearer_other) & ~mask_crop
        refined.append(
            refine_with_saliency(
                instance,
                saliency,
                band,
                blocked=blocked,
                threshold=threshold,
                min_mean_saliency=min_mean_saliency,
            )
        )
    return refined


def _nearest_owner(owner_of_mask: np.ndarray) -> np.ndarray:
    """``H×W int32``: for each pixel the index painted in ``owner_of_mask`` nearest to it.

    -1 everywhere when nothing is painted.
    """
    painted = owner_of_mask >= 0
    if not painted.any():
        return owner_of_mask
    # distanceTransformWithLabels labels every zero pixel (a painted one) with its own id and
    # every other pixel with the id of the nearest zero pixel.
    _, labels = cv2.distanceTransformWithLabels(
        (~painted).astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
    )
    lookup = np.zeros(int(labels.max()) + 1, np.int32)
    lookup[labels[painted]] = owner_of_mask[painted]
    return lookup[labels]


def _uncovered_pieces(region: np.ndarray, covered: np.ndarray, gap_px: int) -> list[np.ndarray]:
    """The parts of a salient ``region`` (``H×W bool``) that no instance explains.

    Pixels within ``gap_px`` of a covered pixel are the covering instance's edge (the map and a
    detector mask rarely agree to the pixel), and slivers thinner than ``2·gap_px + 1`` are
    removed by an opening; each remaining piece is grown back into the uncovered region by
    ``gap_px`` so it meets its neighbour without a seam. Returns ``H×W bool`` masks.
    """
    uncovered = region & ~covered
    if gap_px <= 0:
        count, labels = cv2.connectedComponents(uncovered.astype(np.uint8), connectivity=8)
        return [labels == label for label in range(1, count)]
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * gap_px + 1, 2 * gap_px + 1))
    near_cover = cv2.dilate(covered.astype(np.uint8), kernel) > 0
    core = (uncovered & ~near_cover).astype(np.uint8)
    core = cv2.morphologyEx(core, cv2.MORPH_OPEN, kernel)
    count, labels = cv2.connectedComponents(core, connectivity=8)
    # grown back with a square: the opening rounded the corners the ellipse could not refill
    square = np.ones((2 * gap_px + 1, 2 * gap_px + 1), np.uint8)
    pieces = []
    for label in range(1, count):
        piece = labels == label
        pieces.append((cv2.dilate(piece.astype(np.uint8), square) > 0) & uncovered)
    return pieces


def rescue_instances(
    instances: Sequence[Instance],
    saliency: np.ndarray,
    min_area_frac: float,
    min_part_frac: float,
    *,
    threshold: float = THRESHOLD,
    gap_px: int | None = None,
) -> list[Instance]:
    """The instances plus one new instance per large salient piece no instance explains.

    Salient regions are the 8-connected components of ``saliency ≥ threshold``. In each, the
    pixels no instance mask covers are split into pieces (``_uncovered_pieces``: a ``gap_px``
    strip along the instances' edges and thinner slivers are not pieces). A piece is rescued
    when its area is at least ``min_area_frac`` of the image **and** at least
    ``min_part_frac`` of the region's covered area: a salient region nobody covers (a class
    COCO lacks) is rescued whole, and so is the uncovered half of one (the soapbox cart under
    its detected riders), while the salient fringe of a detected person is not. With no
    instance and no piece that large, the largest salient region is rescued whatever its size:
    the map found something, and the result is not to be emptier than the map alone (the keep
    decision still judges it; when nothing else is kept, the never-empty fallback keeps it and
    says so).

    The new instance: ``label="object"``, ``class_id=-1``, ``source="saliency"``, ``det_score``
    = mean map value in the mask, ``soft_mask`` = the map inside the mask (0 elsewhere); its mask
    holds no pixel of an existing instance (layers stay disjoint). Ids continue after the
    largest existing id, largest piece first.

    Args:
        instances: existing instances with ``H×W bool`` masks (may be empty).
        saliency: ``H×W float32`` in [0, 1].
        min_area_frac: smallest piece area as a share of ``H·W``, in (0, 1].
        min_part_frac: smallest piece area as a share of the covered area of its salient
            region, ≥ 0.
        gap_px: width of the strip along existing masks that is never a piece, pixels; None
            scales it with the image: ``max(RESCUE_GAP_PX, RESCUE_GAP_FRAC · max(H, W))``.

    Returns:
        ``list(instances)`` followed by the rescued instances.
    """
    hw = saliency.shape
    check_saliency(saliency, hw)
    if not 0.0 < min_area_frac <= 1.0:
        raise ValueError(f"min_area_frac must be in (0, 1], got {min_area_frac}")
    if not min_part_frac >= 0.0:
        raise ValueError(f"min_part_frac must be >= 0, got {min_part_frac}")
    if gap_px is None:
        gap_px = max(RESCUE_GAP_PX, round(RESCUE_GAP_FRAC * max(hw)))
    covered = np.zeros(hw, bool)
    for instance in instances:
        covered |= check_mask(instance.mask, hw, f"instance {instance.id} mask")
    salient = (saliency >= threshold).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(salient, connectivity=8)
    min_area_px = min_area_frac * hw[0] * hw[1]
    pieces = []
    for label in range(1, count):
        if stats[label, cv2.CC_STAT_AREA] < min_area_px:
            continue
        # work on the region's box (from the stats: no full-image scan per region)
        x, y, w, h = (int(v) for v in stats[label, :4])
        margin = gap_px + 1
        rows = slice(max(0, y - margin), min(hw[0], y + h + margin))
        cols = slice(max(0, x - margin), min(hw[1], x + w + margin))
        region = labels[rows, cols] == label
        covered_crop = covered[rows, cols]
        covered_px = np.count_nonzero(region & covered_crop)
        for piece in _uncovered_pieces(region, covered_crop, gap_px):
            area_px = int(piece.sum())
            if area_px >= min_area_px and area_px >= min_part_frac * covered_px:
                full = np.zeros(hw, bool)
                full[rows, cols] = piece
                pieces.append((area_px, full))
    if not instances and not pieces and count > 1:  # only specks: the largest, not nothing
        largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        pieces.append((int(stats[largest, cv2.CC_STAT_AREA]), labels == largest))
    pieces.sort(key=lambda item: -item[0])
    next_id = max((instance.id for instance in instances), default=-1) + 1
    result = list(instances)
    for _, mask in pieces:
        soft = np.where(mask, saliency, np.float32(0.0)).astype(np.float32)
        result.append(
            Instance(
                id=next_id,
                xyxy=mask_to_xyxy(mask),
                label="object",
                class_id=-1,
                det_score=float(saliency[mask].mean()),
                mask=mask,
                soft_mask=soft,
                source="saliency",
            )
        )
        next_id += 1
    return result
