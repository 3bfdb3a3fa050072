"""Per-item cache of the expensive stages, so selection research iterates in seconds.

    python -m tools.select_cache ../shared/data/eval/manifest.json -o /work/scratch/r12/cache/eval \
        --detect-weights ../shared/weights/yolov8n-seg_int8.onnx --imgsz 320 \
        --saliency-weights ../shared/weights/isnet_medium.onnx

For every item of the manifest with a selection ground truth (a main-object mask, an instance
map or an alpha), runs the product's detector (``pipeline.stages.detect.YoloDetector``, with
its rescue at ``detect.rescue_conf`` unless ``--rescue-conf`` says otherwise) and
salient map (``pipeline.stages.saliency.IsnetSaliency``) on the image exactly as
``pipeline.eval`` loads it (``load_ground_truth``) and writes ``OUT/<name>.npz``:

- ``masks``: ``N×H×W`` bits (``np.packbits`` along the last axis), the detector's masks;
- ``xyxy`` ``N×4 float32``, ``class_id`` ``N int64``, ``det_score`` ``N float64``,
  ``labels`` ``N str``;
- ``saliency``: ``H×W float32`` map in [0, 1] (absent with ``--saliency-weights none``);
- ``key``: what was computed from what (image sha256, weights file names, imgsz); an entry
  whose key differs is recomputed.

Everything downstream (the map's mask edges and rescue, features, rank, the keep decision) is
cheap and runs from the cache through the product's own functions (``tools.cv_select``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pipeline.eval.dataset import EvalItem, GroundTruth, load_dataset, load_ground_truth
from pipeline.types import Instance


@dataclass(frozen=True)
class CachedItem:
    """One item's cached stage outputs.

    Attributes:
        instances: the detector's instances (ids ``0..N-1``, ``source="detector"``).
        saliency: ``H×W float32`` map in [0, 1], or None when none was cached.
        key: the provenance mapping written with the entry.
    """

    instances: list[Instance]
    saliency: np.ndarray | None
    key: dict


def cache_file(cache_dir: Path, item: EvalItem) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in item.name)
    return Path(cache_dir) / f"{safe}.npz"


def item_key(
    item: EvalItem, detect_weights: str, imgsz: int, saliency_weights: str, rescue_conf: float
) -> dict:
    """Provenance of one entry: the image's sha256 and what the stages were."""
    digest = hashlib.sha256(Path(item.image).read_bytes()).hexdigest()
    return {
        "image_sha256": digest,
        "detect_weights": Path(detect_weights).name,
        "imgsz": int(imgsz),
        "rescue_conf": float(rescue_conf),
        "saliency_weights": Path(saliency_weights).name if saliency_weights != "none" else "none",
    }


def save_entry(path: Path, instances: Sequence[Instance], saliency, key: dict) -> None:
    """Write one entry (see the module docstring); atomic via a temporary file."""
    hw = saliency.shape if saliency is not None else None
    if instances:
        masks = np.stack([inst.mask for inst in instances])
        hw = masks.shape[1:]
    elif hw is None:
        hw = (0, 0)
    arrays = {
        "masks": np.packbits(masks, axis=-1) if instances else np.zeros((0, *hw), np.uint8),
        "hw": np.asarray(hw, np.int64),
        "xyxy": np.asarray([inst.xyxy for inst in instances], np.float32).reshape(-1, 4),
        "class_id": np.asarray([inst.class_id for inst in instances], np.int64),
        "det_score": np.asarray([inst.det_score for inst in instances], np.float64),
        "labels": np.asarray([inst.label for inst in instances], dtype=str),
        "key": np.asarray(json.dumps(key, sort_keys=True)),
    }
    if saliency is not None:
        arrays["saliency"] = saliency.astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def load_entry(path: Path) -> CachedItem:
    """Read one entry; ``ValueError`` naming the file when it is unreadable."""
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read cache entry {path}: {exc}") from None
    hw = tuple(int(v) for v in data["hw"])
    masks = np.unpackbits(data["masks"], axis=-1, count=hw[1]).astype(bool)
    instances = [
        Instance(
            id=k,
            xyxy=data["xyxy"][k],
            label=str(data["labels"][k]),
            class_id=int(data["class_id"][k]),
            det_score=float(data["det_score"][k]),
            mask=masks[k],
        )
        for k in range(len(data["xyxy"]))
    ]
    saliency = data["saliency"] if "saliency" in data.files else None
    return CachedItem(instances, saliency, json.loads(str(data["key"])))


def has_selection_gt(gt: GroundTruth) -> bool:
    return gt.main_mask is not None


def build(
    manifest: str | Path,
    out_dir: str | Path,
    detect_weights: str,
    imgsz: int,
    saliency_weights: str,
    sets: Sequence[str] = (),
    threads: int = 0,
    log=sys.stderr,
    rescue_conf: float | None = None,
) -> int:
    """Fill the cache for every item with selection GT; returns how many entries were written."""
    from pipeline.config import DetectConfig
    from pipeline.stages.detect import YoloDetector

    items = [it for it in load_dataset(manifest) if not sets or it.set_name in sets]
    detect_config = DetectConfig(weights=detect_weights, imgsz=imgsz)  # the product's rescue
    if rescue_conf is not None:
        detect_config = replace(detect_config, rescue_conf=rescue_conf)
    detector = YoloDetector(Path(detect_weights), detect_config, "cpu", threads)
    saliency_model = None
    if saliency_weights != "none":
        from pipeline.stages.saliency import IsnetSaliency

        saliency_model = IsnetSaliency(Path(saliency_weights), 1024, threads)
    written = 0
    for index, item in enumerate(items, 1):
        path = cache_file(Path(out_dir), item)
        key = item_key(item, detect_weights, imgsz, saliency_weights, detect_config.rescue_conf)
        if path.is_file():
            try:
                if load_entry(path).key == key:
                    continue
            except ValueError:
                pass  # unreadable: recomputed below
        gt = load_ground_truth(item)
        if not has_selection_gt(gt):
            continue
        start = time.perf_counter()
        instances = detector.detect(gt.image)
        saliency = None if saliency_model is None else saliency_model.predict(gt.image)
        save_entry(path, instances, saliency, key)
        written += 1
        if log is not None:
            seconds = time.perf_counter() - start
            print(f"[{index}/{len(items)}] {item.name}: {len(instances)} instances, "
                  f"{seconds:.1f} s", file=log, flush=True)  # fmt: skip
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.select_cache", description=__doc__.split("\n")[0]
    )
    parser.add_argument("manifest")
    parser.add_argument("-o", "--out", required=True, help="cache folder (outside the repo)")
    parser.add_argument("--detect-weights", required=True, help="a local YOLO-seg .pt/.onnx")
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--saliency-weights", required=True, help="a local ISNet .onnx or none")
    parser.add_argument("--sets", default="", help="comma-separated manifest sets (default all)")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument(
        "--rescue-conf",
        type=float,
        default=None,
        help="the detector's detect.rescue_conf (default the product's; 0.25 = no rescue, the "
        "instances the shipped keep model was trained on)",
    )
    args = parser.parse_args(argv)
    sets = tuple(s.strip() for s in args.sets.split(",") if s.strip())
    try:
        written = build(
            args.manifest,
            args.out,
            args.detect_weights,
            args.imgsz,
            args.saliency_weights,
            sets,
            args.threads,
            rescue_conf=args.rescue_conf,
        )
    except (ValueError, OSError) as exc:
        print(f"select_cache: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {written} entries to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
