"""Evaluation datasets: a JSON manifest of items, or a plain folder of images (no GT).

Manifest format (``../shared/data/eval/manifest.json`` is one)::

    {"items": [
      {"name": "GT01", "set": "alphamatting_train", "gt_kind": "alpha",
       "subclass": "portrait",                       # optional; default: the item's "set"
       "files": {"image": "a/GT01/image.png",        # required
                 "alpha": "a/GT01/alpha.png",        # optional: 8-bit, 0 = bg … 255 = fg
                 "mask": "…/mask.png",               # optional: main-object mask, 0/255
                 "instances": "…/instances.png",     # optional: instance indices, 0 = bg
                 "trimap": "…/trimap.png"},          # optional: 0 bg, 255 fg, else unknown
       "instance_labels": {"1": "bicycle", "2": "person"},   # optional, default "object"
       "main_instances": [1, 2],                     # optional: the GT main instances
       "roles": {"1": "main", "2": "interacting", "3": "distractor"},  # optional
       "ranks": {"1": 1, "2": 2, "3": 3},           # optional: 1 = most salient
       "ignore_value": 128}                          # optional: mask value not scored
    ]}

- Paths are relative to the manifest's folder (a top-level ``root`` field is ignored).
- Keys of ``instance_labels``, ``roles`` and ``ranks`` are instance indices as strings.
- The GT main region (selection metrics) is, in this order: the union of the main instances
  of ``instances``; else ``mask > 127``; else ``alpha > 127``. The main instances are
  ``main_instances`` when given, else the indices whose ``roles`` entry is ``main`` or
  ``interacting``, else every index in the map.
- Matting metrics need ``alpha`` (used as alpha/255). Other alpha-like files (e.g. the lemur's
  ``alpha_pseudo_cf``, pseudo ground truth) are deliberately not read as GT.
- ``ranks`` give SA-SOR; instances without a rank are left out of it.
- ``ignore_value``: pixels of ``mask`` with this value (GrabCut's 128: the unlabelled band
  along the object's boundary) are neither main region nor background: ``GroundTruth.ignore``
  marks them and the selection metrics do not score them.
- Subclass names: ``subclass``, else ``set``, else ``"default"``.

A folder instead of a manifest: every image file in it (sorted by name) becomes an item with no
ground truth, subclass = the folder's name: the report then only shows pictures.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
MAIN_ROLES = ("main", "interacting")
_FROZEN_EMPTY: Mapping[int, Any] = MappingProxyType({})


@dataclass(frozen=True)
class EvalItem:
    """One dataset entry: where its files are and what the manifest says about it."""

    name: str
    set_name: str
    subclass: str
    gt_kind: str
    image: Path
    alpha: Path | None = None
    mask: Path | None = None
    instances: Path | None = None
    trimap: Path | None = None
    instance_labels: Mapping[int, str] = field(default_factory=lambda: _FROZEN_EMPTY)
    main_instances: tuple[int, ...] | None = None
    roles: Mapping[int, str] = field(default_factory=lambda: _FROZEN_EMPTY)
    ranks: Mapping[int, int] = field(default_factory=lambda: _FROZEN_EMPTY)
    ignore_value: int | None = None


@dataclass(frozen=True)
class GroundTruth:
    """Decoded files of one item (all arrays at the image's ``H×W``).

    Attributes:
        image: ``H×W×3 uint8`` RGB.
        alpha: ``H×W float32`` in [0, 1] or None.
        main_mask: ``H×W bool`` GT main region or None (no selection GT).
        instance_map: ``H×W int32`` instance indices (0 = bg) or None.
        instance_ids: indices present in ``instance_map`` (ascending, 0 excluded).
        main_ids: the main instance indices (subset of ``instance_ids``).
        trimap: ``H×W uint8`` (0 bg, 255 fg, other = unknown) or None.
        ignore: ``H×W bool`` pixels not scored (the mask's ``ignore_value``) or None.
    """

    image: np.ndarray
    alpha: np.ndarray | None
    main_mask: np.ndarray | None
    instance_map: np.ndarray | None
    instance_ids: tuple[int, ...]
    main_ids: tuple[int, ...]
    trimap: np.ndarray | None
    ignore: np.ndarray | None = None

    @property
    def hw(self) -> tuple[int, int]:
        return self.image.shape[0], self.image.shape[1]


def _int_keys(raw: Any, field_name: str, item_name: str, value_type: type) -> dict[int, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ValueError(f"item {item_name!r}: {field_name} must be an object, got {raw!r}")
    try:
        return {int(k): value_type(v) for k, v in raw.items()}
    except (TypeError, ValueError):
        raise ValueError(f"item {item_name!r}: bad {field_name} {raw!r}") from None


def _item_from_entry(entry: Mapping[str, Any], base: Path, index: int) -> EvalItem:
    files = entry.get("files")
    name = str(entry.get("name") or f"item{index:04d}")
    if not isinstance(files, Mapping) or "image" not in files:
        raise ValueError(f"manifest item {name!r} has no files.image")

    def path(key: str) -> Path | None:
        value = files.get(key)
        return None if value is None else (base / str(value))

    set_name = str(entry.get("set") or "default")
    main = entry.get("main_instances")
    ignore_value = entry.get("ignore_value")
    if ignore_value is not None and (
        isinstance(ignore_value, bool)
        or not isinstance(ignore_value, int)
        or not 0 <= ignore_value <= 255
    ):
        raise ValueError(f"item {name!r}: ignore_value must be an integer in [0, 255]")
    return EvalItem(
        name=name,
        set_name=set_name,
        subclass=str(entry.get("subclass") or set_name),
        gt_kind=str(entry.get("gt_kind") or ""),
        image=base / str(files["image"]),
        alpha=path("alpha"),
        mask=path("mask"),
        instances=path("instances"),
        trimap=path("trimap"),
        instance_labels=MappingProxyType(
            _int_keys(entry.get("instance_labels"), "instance_labels", name, str)
        ),
        main_instances=None if main is None else tuple(int(i) for i in main),
        roles=MappingProxyType(_int_keys(entry.get("roles"), "roles", name, str)),
        ranks=MappingProxyType(_int_keys(entry.get("ranks"), "ranks", name, int)),
        ignore_value=ignore_value,
    )


def load_dataset(path: str | Path) -> list[EvalItem]:
    """Items of a manifest JSON file, or of a folder of images (no GT). ``ValueError`` when
    the path is missing or malformed."""
    source = Path(path)
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {source}")
        subclass = source.resolve().name or "images"
        return [EvalItem(p.stem, subclass, subclass, "none", p) for p in files]
    if not source.is_file():
        raise ValueError(f"dataset not found: {source}")
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"manifest {source} is not valid JSON: {exc}") from None
    entries = data.get("items") if isinstance(data, Mapping) else data
    if not isinstance(entries, list):
        raise ValueError(f"manifest {source} must hold a list of items (or {{'items': [...]}})")
    base = source.resolve().parent
    items = [_item_from_entry(entry, base, i) for i, entry in enumerate(entries)]
    names = [it.name for it in items]
    if len(set(names)) != len(names):
        duplicates = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"manifest {source}: duplicate item names {duplicates}")
    return items


def read_rgb(path: Path) -> np.ndarray:
    """``H×W×3 uint8`` RGB of an image file (grayscale and palette files are converted)."""
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB")).copy()


def read_gray(path: Path) -> np.ndarray:
    """``H×W uint8`` of an 8-bit single-channel file (alpha, mask, trimap)."""
    with Image.open(path) as img:
        return np.asarray(img.convert("L")).copy()


def read_indices(path: Path) -> np.ndarray:
    """``H×W int32`` instance indices; palette ('P') files keep their indices."""
    with Image.open(path) as img:
        if img.mode not in ("P", "L", "I", "I;16"):
            raise ValueError(f"instance map {path} must be an index image, got mode {img.mode}")
        return np.asarray(img).astype(np.int32)


def _same_size(arr: np.ndarray, hw: tuple[int, int], path: Path) -> np.ndarray:
    if arr.shape[:2] != hw:
        raise ValueError(f"{path} has shape {arr.shape[:2]}, the image is {hw}")
    return arr


def main_instance_ids(item: EvalItem, present: tuple[int, ...]) -> tuple[int, ...]:
    """The GT main instance indices: ``main_instances``, else roles main/interacting, else all."""
    if item.main_instances is not None:
        chosen = set(item.main_instances)
    elif item.roles:
        chosen = {i for i, role in item.roles.items() if role in MAIN_ROLES}
    else:
        chosen = set(present)
    return tuple(i for i in present if i in chosen)


def load_ground_truth(item: EvalItem) -> GroundTruth:
    """Decode the item's image and GT files; ``ValueError`` naming a file whose size differs."""
    image = read_rgb(item.image)
    hw = (image.shape[0], image.shape[1])
    alpha = alpha_u8 = None
    if item.alpha is not None:
        alpha_u8 = _same_size(read_gray(item.alpha), hw, item.alpha)
        alpha = alpha_u8.astype(np.float32) / np.float32(255.0)
    trimap = None if item.trimap is None else _same_size(read_gray(item.trimap), hw, item.trimap)
    instance_map, ids, main_ids, main_mask, ignore = None, (), (), None, None
    if item.instances is not None:
        instance_map = _same_size(read_indices(item.instances), hw, item.instances)
        ids = tuple(int(i) for i in np.unique(instance_map) if i != 0)
        main_ids = main_instance_ids(item, ids)
        main_mask = np.isin(instance_map, main_ids)
    elif item.mask is not None:
        mask_u8 = _same_size(read_gray(item.mask), hw, item.mask)
        main_mask = mask_u8 > 127
        if item.ignore_value is not None:
            ignore = mask_u8 == item.ignore_value
            main_mask &= ~ignore
            ignore = ignore if ignore.any() else None
    elif alpha_u8 is not None:
        main_mask = alpha_u8 > 127
    return GroundTruth(image, alpha, main_mask, instance_map, ids, main_ids, trimap, ignore)
