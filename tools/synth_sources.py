"""Pixel sources of the synthetic ranking scenes: cut-outs, background photos, native frames.

Any manifest in the format of ``../shared/data/eval/manifest.json`` (``pipeline.eval.dataset``)
works. Each item becomes, by its ground truth:

- ``alpha`` (8-bit matte) → one **cut-out** (soft edges straight from the GT alpha);
- ``mask`` (binary main-object mask, e.g. a DAVIS frame) → one cut-out (edges feathered by
  ``MASK_FEATHER_PX``) **and** one **native** frame: the photo with its own, unpasted main
  object, used by the ``davis_native`` recipe so a ranker that detects paste borders fails there;
- ``instances`` (index map) → one multi-part cut-out (e.g. rider + bicycle, kept together);
- no alpha/mask/instances (smoke photos, trimap-only items) → a **background** photo.

Every source belongs to a *group* (the pixel source: a DAVIS sequence, a DIM foreground, a
photo): the train/test split and the cross-validation folds assign whole groups, so no pixel
source is on both sides. Labels (COCO names, as the detector would say) come from ``LABELS``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.eval.dataset import EvalItem, load_dataset, read_gray, read_indices, read_rgb

PERSON = "person"
# Source group → COCO label of its cut-out (a DAVIS group is the sequence name; others the item
# name). Anything unlisted is "object" (what ground-truth proposals without a label get).
LABELS: dict[str, str] = {
    # DAVIS 2016 val sequences (binary main-object masks)
    "blackswan": "bird",
    "breakdance": PERSON,
    "car-roundabout": "car",
    "car-shadow": "car",
    "cows": "cow",
    "dog": "dog",
    "drift-straight": "car",
    "goat": "sheep",  # no goat in COCO: a detector calls it sheep
    "parkour": PERSON,
    "soapbox": PERSON,  # the mask holds the driver and the cart; the driver is the subject
    # DAVIS 2016 train sequences (binary masks; a rider and what they ride are one mask,
    # labelled by the rider). rhino: no COCO class, left out ("object").
    **dict.fromkeys(
        (
            "bmx-bumps",
            "breakdance-flare",
            "dance-jump",
            "hike",
            "hockey",
            "kite-walk",
            "lucia",
            "motocross-bumps",
            "paragliding",
            "scooter-gray",
            "stroller",
            "surf",
            "swing",
            "tennis",
        ),
        PERSON,
    ),  # fmt: skip
    "bear": "bear",
    "boat": "boat",
    "bus": "bus",
    "car-turn": "car",
    "dog-agility": "dog",
    "drift-turn": "car",
    "elephant": "elephant",
    "flamingo": "bird",
    "horsejump-low": "horse",
    "mallard-fly": "bird",
    "mallard-water": "bird",
    "motorbike": "motorcycle",
    "soccerball": "sports ball",
    "train": "train",
    # alphamatting.com / Adobe DIM foregrounds (GT alpha)
    "GT01": "potted plant",  # a gerbera flower head
    "GT04": "teddy bear",  # two troll dolls
    "full_546fc28_0": "object",  # light bulb
    "full_546fc28_3": "dog",
    "full_546fc28_6": "cup",  # glass with a splash
    "full_546fc28_9": "wine glass",
    "full_4e4b5fa_3": "sports ball",  # lace ball held in two hands
    "full_4e4b5fa_4": PERSON,  # long-hair portrait
    "full_4e4b5fa_7": "teddy bear",
}
# Instance-map items: index → label when the manifest has no instance_labels.
PART_LABELS: dict[str, dict[int, str]] = {"cutie_bike": {1: "bicycle", 2: PERSON}}
# Items that are no whole object (a hair piece) or only a crop of another item's foreground
# (the 320-px DIM crops cut the same foregrounds as the full items): not used at all.
SKIP_NAMES = ("full_4e4b5fa_5",)
SKIP_PREFIXES = ("crop320_",)
# Held-out groups (cut-outs and backgrounds) of the shared eval manifest: never in training.
# People: parkour and the cutie rider; animals: cows and the DIM dog; vehicle: car-shadow.
TEST_GROUPS = frozenset(
    {
        "parkour", "cows", "car-shadow", "dog", "cutie_bike", "full_546fc28_3",
        "full_4e4b5fa_7", "GT04",
        "ultralytics_zidane", "scikit_image_coffee", "scikit_learn_china",
        "scikit_image_rocket", "troll", "net", "plant",
    }
)  # fmt: skip
# Groups of other manifests: every HASH_TEST_MOD-th (by crc32 of the name) is held out.
HASH_TEST_MOD = 4
MASK_FEATHER_PX = 0.8  # Gaussian sigma softening a binary mask's edge into an alpha
SPLITS = ("train", "test", "all")


@dataclass(frozen=True)
class Part:
    """One instance of a cut-out: its label and ``h×w float32`` alpha in [0, 1]."""

    label: str
    alpha: np.ndarray


@dataclass(frozen=True)
class Cutout:
    """A foreground cropped to its alpha's box: ``rgb`` ``h×w×3 uint8``, one or more parts."""

    group: str
    name: str
    rgb: np.ndarray
    parts: tuple[Part, ...]

    @property
    def alpha(self) -> np.ndarray:
        """``h×w float32``: union (max) of the parts' alphas."""
        return np.max(np.stack([p.alpha for p in self.parts]), axis=0)

    @property
    def has_person(self) -> bool:
        return any(p.label == PERSON for p in self.parts)


@dataclass(frozen=True)
class Photo:
    """A background photo (``rgb`` ``H×W×3 uint8``), or a native frame with its own main
    object (``mask`` ``H×W bool`` and ``label``; ``None`` for a plain background)."""

    group: str
    name: str
    rgb: np.ndarray
    mask: np.ndarray | None = None
    label: str = "object"


@dataclass(frozen=True)
class SourcePool:
    """Everything one split (or one fold of it) may draw from."""

    cutouts: tuple[Cutout, ...]
    backgrounds: tuple[Photo, ...]
    natives: tuple[Photo, ...]

    @property
    def groups(self) -> frozenset[str]:
        items: Iterable = (*self.cutouts, *self.backgrounds, *self.natives)
        return frozenset(x.group for x in items)

    def people(self) -> tuple[Cutout, ...]:
        return tuple(c for c in self.cutouts if c.has_person)

    def objects(self) -> tuple[Cutout, ...]:
        """Single-part cut-outs that are not people (held / unrelated objects)."""
        return tuple(c for c in self.cutouts if not c.has_person and len(c.parts) == 1)


def group_of(item: EvalItem) -> str:
    """The pixel source of an item: a DAVIS sequence (name without ``_<frame>``), else the
    item name with a trailing ``_<frame digits>`` of an instance-map video item removed."""
    head, _, tail = item.name.rpartition("_")
    if head and tail.isdigit() and (item.set_name.startswith("davis") or item.instances):
        return head
    return item.name


def is_test_group(group: str) -> bool:
    """Held out: listed in ``TEST_GROUPS``, or (names not in the shared manifest) every
    ``HASH_TEST_MOD``-th by crc32 — deterministic, independent of the manifest's order."""
    if group in TEST_GROUPS:
        return True
    if group in LABELS or group in PART_LABELS:
        return False
    return zlib.crc32(group.encode("utf-8")) % HASH_TEST_MOD == 0


def _crop_to(rgb: np.ndarray, alphas: Sequence[np.ndarray]) -> tuple[np.ndarray, list]:
    union = np.max(np.stack(alphas), axis=0) > 0.02
    ys, xs = np.nonzero(union)
    if len(ys) == 0:
        raise ValueError("empty alpha")
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    return rgb[y0:y1, x0:x1].copy(), [a[y0:y1, x0:x1].copy() for a in alphas]


def _shrink(arrays: list[np.ndarray], max_side_px: int) -> list[np.ndarray]:
    """Downscale every array (same H×W) so the longer side is ≤ ``max_side_px`` (INTER_AREA)."""
    h, w = arrays[0].shape[:2]
    factor = max_side_px / max(h, w)
    if factor >= 1:
        return arrays
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return [cv2.resize(a, size, interpolation=cv2.INTER_AREA) for a in arrays]


def feather(mask: np.ndarray, sigma_px: float = MASK_FEATHER_PX) -> np.ndarray:
    """``H×W float32`` alpha from an ``H×W bool`` mask with a soft edge of ``sigma_px``."""
    return cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigma_px)


def _skipped(item: EvalItem) -> bool:
    return item.name in SKIP_NAMES or item.name.startswith(SKIP_PREFIXES)


def load_sources(manifest: str | Path, split: str = "all", max_side_px: int = 900) -> SourcePool:
    """Cut-outs, backgrounds and native frames of ``manifest`` for ``split`` (train|test|all).

    Images are downscaled to ``max_side_px`` on load (scenes are ≤ 640 px, so finer pixels
    only cost time). ``ValueError`` for an unknown split or a pool without a background.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    cutouts: list[Cutout] = []
    backgrounds: list[Photo] = []
    natives: list[Photo] = []
    for item in load_dataset(manifest):
        group = group_of(item)
        if _skipped(item) or (split != "all" and is_test_group(group) != (split == "test")):
            continue
        rgb = read_rgb(item.image)
        label = LABELS.get(group, item.instance_labels.get(1, "object"))
        if item.alpha is not None:
            alpha = read_gray(item.alpha).astype(np.float32) / 255.0
            rgb_s, alpha_s = _shrink([rgb, alpha], max_side_px)
            crop, (a,) = _crop_to(rgb_s, [alpha_s])
            cutouts.append(Cutout(group, item.name, crop, (Part(label, a),)))
        elif item.mask is not None:
            mask = read_gray(item.mask) > 127
            rgb_s, mask_s = _shrink([rgb, mask.astype(np.float32)], max_side_px)
            mask_s = mask_s > 0.5
            if not mask_s.any():
                continue
            natives.append(Photo(group, item.name, rgb_s, mask_s, label))
            crop, (a,) = _crop_to(rgb_s, [feather(mask_s)])
            cutouts.append(Cutout(group, item.name, crop, (Part(label, a),)))
        elif item.instances is not None:
            index_map = read_indices(item.instances)
            ids = [int(i) for i in np.unique(index_map) if i != 0]
            names = PART_LABELS.get(group, {})
            alphas = [feather(index_map == i) for i in ids]
            rgb_s, *alphas = _shrink([rgb, *alphas], max_side_px)
            crop, alphas = _crop_to(rgb_s, alphas)
            parts = tuple(
                Part(names.get(i, item.instance_labels.get(i, "object")), a)
                for i, a in zip(ids, alphas, strict=True)
            )
            cutouts.append(Cutout(group, item.name, crop, parts))
        else:
            (rgb_s,) = _shrink([rgb], max_side_px)
            backgrounds.append(Photo(group, item.name, rgb_s))
    if not backgrounds:
        raise ValueError(f"{manifest}: no background photo (an item without alpha/mask/instances)")
    if not cutouts:
        raise ValueError(f"{manifest}: no cut-out (an item with alpha, mask or instances)")
    return SourcePool(tuple(cutouts), tuple(backgrounds), tuple(natives))


def assign_folds(pool: SourcePool, n_folds: int) -> list[SourcePool]:
    """Split ``pool`` into ``n_folds`` pools with disjoint groups (for grouped CV).

    Groups are dealt round-robin, people first, so each fold gets people when there are at
    least ``n_folds`` person groups. A DAVIS group (cut-out and native frame) stays in one fold.
    """
    if n_folds < 1:
        raise ValueError(f"n_folds must be ≥ 1, got {n_folds}")
    person_groups = sorted({c.group for c in pool.people()})
    other = sorted(pool.groups - set(person_groups))
    fold_of = {g: k % n_folds for k, g in enumerate(person_groups)}
    # backgrounds dealt separately, so no fold is left without one
    bg_groups = sorted({p.group for p in pool.backgrounds} - set(fold_of))
    fold_of.update({g: k % n_folds for k, g in enumerate(bg_groups)})
    rest = [g for g in other if g not in fold_of]
    fold_of.update({g: (k + len(person_groups)) % n_folds for k, g in enumerate(rest)})
    return [
        SourcePool(
            tuple(c for c in pool.cutouts if fold_of[c.group] == k),
            tuple(p for p in pool.backgrounds if fold_of[p.group] == k),
            tuple(p for p in pool.natives if fold_of[p.group] == k),
        )
        for k in range(n_folds)
    ]
