"""The evaluation loop: run the pipeline on every item, measure it, draw it, write the report.

``evaluate(dataset, remover, out_dir, options)`` writes ``out_dir/report.json``,
``out_dir/report.html`` and ``out_dir/thumbs/*.jpg`` (the contact-sheet pictures, also used by
``compare``) and returns the report dict. An item that fails is recorded with its error and
the loop goes on. The pipeline is reached only through the small protocols below, so tests
drive the loop with a fake remover and the real ``pipeline.api.Remover`` satisfies them.
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Protocol, TextIO

import numpy as np

from pipeline.eval import thumbs
from pipeline.eval.aggregate import aggregate
from pipeline.eval.dataset import EvalItem, GroundTruth, load_dataset, load_ground_truth
from pipeline.eval.metrics_matting import matting_metrics, unknown_region
from pipeline.eval.metrics_select import boundary_f, iou, precision_at_1, sa_sor
from pipeline.eval.proposals import PROPOSAL_MODES, gt_masks, make_proposals
from pipeline.eval.rules import SALIENT_AT, rule_metrics
from pipeline.types import Instance

REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
THUMBS_DIR = "thumbs"
THUMB_KINDS = ("photo", "gt", "result", "error", "debug")


class LayerLike(Protocol):
    rank: int
    instance: Instance
    enabled: bool


class LayersLike(Protocol):
    """What the evaluation reads from ``pipeline.layers.Layers``."""

    image: np.ndarray
    timings_s: Mapping[str, float]
    ambiguity: float
    saliency: np.ndarray | None  # the run's salient-object map, when one was computed

    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[LayerLike]: ...
    def __getitem__(self, index: int) -> LayerLike: ...
    def kept_mask(self, keep: Any = None) -> np.ndarray: ...
    def alpha(self, keep: Any = None) -> np.ndarray: ...
    def composite(self, keep: Any = None) -> np.ndarray: ...


class RemoverLike(Protocol):
    """What the evaluation needs from ``pipeline.api.Remover``."""

    config: Any  # has to_dict()

    def run(self, image: np.ndarray, proposals: Sequence[Instance] | None = None) -> LayersLike: ...


@dataclass(frozen=True)
class EvalOptions:
    proposals: str = "gt"  # detector | gt | gt-jittered | gt-trimap
    seed: int = 0  # for gt-jittered
    limit: int | None = None  # evaluate only the first N items
    thumb_px: int = thumbs.DEFAULT_THUMB_PX
    sets: tuple[str, ...] = ()  # only items of these sets (manifest "set"); empty = every item

    def __post_init__(self) -> None:
        if self.proposals not in PROPOSAL_MODES:
            raise ValueError(f"proposals must be one of {', '.join(PROPOSAL_MODES)}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be ≥ 1, got {self.limit}")


def build_remover(
    config: str | None = None, overrides: Iterable[str] = (), device: str | None = None
) -> RemoverLike:
    """The real pipeline (``pipeline.api.Remover.from_config``)."""
    from pipeline.api import Remover

    return Remover.from_config(config, overrides=tuple(overrides), device=device)


def header_note(options: EvalOptions) -> str:
    """The sentence the report header shows about where the instances came from."""
    if options.proposals == "gt":
        return (
            "Instances come from ground truth (--proposals gt): ranking, selection and matting "
            "are measured without a detector, as if detection and segmentation were perfect. "
            "Use --proposals detector to measure the whole pipeline."
        )
    if options.proposals == "gt-trimap":
        return (
            "Instances carry the ground-truth trimap (--proposals gt-trimap): the matting "
            "upper bound, the refiner solves only the trimap's unknown pixels."
        )
    if options.proposals == "gt-jittered":
        return (
            "Instances come from ground truth degraded the way a segmenter errs "
            f"(--proposals gt-jittered, seed {options.seed}): edges moved, thin parts and "
            "small holes lost."
        )
    return "Instances come from the configured detector (--proposals detector)."


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "item"


def _clean(value: Any) -> Any:
    """JSON-safe: numpy scalars → Python, NaN/inf → None."""
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def selection_metrics(item: EvalItem, gt: GroundTruth, layers: LayersLike) -> dict[str, Any]:
    """``iou``, ``boundary_f``, ``empty``, ``p_at_1``, rule/oracle IoUs and ``sa_sor`` where GT
    allows. Pixels of the GT's ignore band (``GroundTruth.ignore``) are not scored.

    ``p_at_1`` needs at least two instances (one GT main-object mask handed over as the only
    proposal would always score 1); ``sa_sor`` needs an instance map with ≥ 2 ranked instances.
    """
    out: dict[str, Any] = {}
    ranked = list(layers)
    if gt.main_mask is not None:
        kept = layers.kept_mask()
        out["iou"] = iou(kept, gt.main_mask, gt.ignore)
        out["boundary_f"] = boundary_f(kept, gt.main_mask)
        # an empty result where the GT keeps something (the failure users see as a blank PNG)
        out["empty"] = float(not kept.any() and bool(gt.main_mask.any()))
        if len(ranked) >= 2:  # with a single instance there is no ranking to judge
            out["p_at_1"] = precision_at_1(ranked[0].instance.mask, gt.main_mask, gt.ignore)
        # the rules and oracles choose among the instances the keep decision chose from
        candidates = getattr(layers, "candidates", None)
        if candidates is None:
            candidates = [layer.instance for layer in ranked]
        instances = list(candidates)
        out.update(rule_metrics(instances, gt.main_mask, layers.saliency, gt.ignore))
    ranked_gt = [(item.ranks[idx], m) for idx, _, m in gt_masks(item, gt) if idx in item.ranks]
    if gt.instance_map is not None and len(ranked_gt) >= 2:
        out["sa_sor"] = sa_sor(
            [m for _, m in ranked_gt],
            [r for r, _ in ranked_gt],
            [layer.instance.mask for layer in ranked],
            [float(layer.instance.score) for layer in ranked],
        )
    return out


def item_metrics(item: EvalItem, gt: GroundTruth, layers: LayersLike) -> dict[str, Any]:
    """Every metric of one item as a flat mapping (``None`` where it does not apply)."""
    out: dict[str, Any] = {
        "n_instances": len(layers),
        "n_kept": sum(1 for layer in layers if layer.enabled),
        "ambiguity": float(layers.ambiguity),
    }
    out.update(selection_metrics(item, gt, layers))
    if gt.alpha is not None:
        region = unknown_region(gt.alpha, gt.trimap)
        out.update(matting_metrics(layers.alpha(), gt.alpha, region))
    timings = dict(layers.timings_s)
    if "total" in timings:
        out["seconds"] = float(timings["total"])
    for stage, seconds in timings.items():
        if stage != "total":
            out[f"seconds_{stage}"] = float(seconds)
    return {k: _clean(v) for k, v in out.items()}


def _gt_picture(gt: GroundTruth, max_px: int) -> np.ndarray | None:
    if gt.instance_map is not None:
        return thumbs.instance_map(gt.instance_map, gt.main_ids, max_px)
    if gt.alpha is not None:
        return thumbs.gray(gt.alpha, max_px)
    if gt.main_mask is not None:
        return thumbs.gray(gt.main_mask, max_px)
    if gt.trimap is not None:
        return thumbs.gray(gt.trimap.astype(np.float32) / 255.0, max_px)
    return None


def _debug_picture(layers: LayersLike, max_px: int, warnings: list[str]) -> np.ndarray:
    """``layers.debug_view()`` (pipeline.viz) when it works, else a plain outline overlay;
    a failing debug view is reported in the item's warnings, not hidden."""
    view = getattr(layers, "debug_view", None)
    if view is not None:
        try:
            return thumbs.shrink(np.asarray(view()), max_px).astype(np.uint8)
        except Exception as exc:  # the overlay below still shows the instances
            warnings.append(f"debug_view failed: {type(exc).__name__}: {exc}")
    masks = [(layer.instance.mask, bool(layer.enabled)) for layer in layers]
    return thumbs.outline_overlay(layers.image, masks, max_px)


def write_item_thumbs(
    item: EvalItem,
    gt: GroundTruth | None,
    layers: LayersLike | None,
    out_dir: Path,
    max_px: int,
    warnings: list[str],
) -> dict[str, str]:
    """Write the item's pictures under ``out_dir/thumbs``; kind → path relative to out_dir."""
    pictures: dict[str, np.ndarray | None] = {}
    if gt is not None:
        pictures["photo"] = thumbs.photo(gt.image, max_px)
        pictures["gt"] = _gt_picture(gt, max_px)
    if layers is not None:
        pictures["result"] = thumbs.checkerboard(layers.composite(), max_px)
        reference = gt.alpha if gt is not None and gt.alpha is not None else None
        if reference is None and gt is not None:
            reference = gt.main_mask
        if reference is not None:
            pictures["error"] = thumbs.error_map(layers.alpha(), reference, gt.image, max_px)
        pictures["debug"] = _debug_picture(layers, max_px, warnings)
        saliency = layers.saliency
        if saliency is not None and gt is not None:
            # the single-map remover's cut-out (map ≥ SALIENT_AT), beside ours in the sheet
            keep = (saliency >= SALIENT_AT).astype(np.uint8) * 255
            pictures["salient"] = thumbs.checkerboard(np.dstack([gt.image, keep]), max_px)
    written = {}
    for kind, rgb in pictures.items():
        if rgb is not None:
            rel = f"{THUMBS_DIR}/{_safe(item.name)}_{kind}.jpg"
            thumbs.write_thumb(rgb, out_dir / rel)
            written[kind] = rel
    return written


def evaluate_item(
    item: EvalItem, remover: RemoverLike, out_dir: Path, options: EvalOptions
) -> dict[str, Any]:
    """One item's record: metadata, status (ok | no_gt | failed), error, metrics, thumbs."""
    record: dict[str, Any] = {
        "name": item.name,
        "set": item.set_name,
        "subclass": item.subclass,
        "gt_kind": item.gt_kind,
        "image": str(item.image),
        "status": "ok",
        "error": None,
        "metrics": {},
        "thumbs": {},
        "warnings": [],
    }
    gt = layers = None
    start = time.perf_counter()
    try:
        gt = load_ground_truth(item)
        proposals = make_proposals(options.proposals, item, gt, options.seed)
        if proposals is not None and not proposals:
            record["status"] = "no_gt"  # nothing to propose from: a picture of the photo only
        else:
            layers = remover.run(gt.image, proposals=proposals)
            record["metrics"] = item_metrics(item, gt, layers)
            record["kept"] = [layer.instance.label for layer in layers if layer.enabled]
            record["fallback"] = getattr(layers, "fallback", "")  # what the user was warned of
    except Exception as exc:  # one bad item must not stop the run; the error is recorded
        record["status"] = "failed"
        record["error"] = f"{type(exc).__name__}: {exc}"
    try:
        record["thumbs"] = write_item_thumbs(
            item, gt, layers, out_dir, options.thumb_px, record["warnings"]
        )
    except Exception as exc:
        record["warnings"].append(f"pictures failed: {type(exc).__name__}: {exc}")
    record["wall_seconds"] = time.perf_counter() - start
    return record


def _progress_line(index: int, total: int, record: Mapping[str, Any]) -> str:
    metrics = record["metrics"]
    shown = " ".join(f"{k}={metrics[k]:.3f}" for k in ("iou", "sad") if metrics.get(k) is not None)
    status = record["status"] if record["status"] != "failed" else f"FAILED {record['error']}"
    return (
        f"[{index}/{total}] {record['subclass']}/{record['name']}: {status} {shown} "
        f"({record['wall_seconds']:.1f} s)"
    )


def evaluate(
    dataset: str | Path,
    remover: RemoverLike,
    out_dir: str | Path,
    options: EvalOptions | None = None,
    log: TextIO | None | Literal["stderr"] = "stderr",
) -> dict[str, Any]:
    """Evaluate every item of ``dataset``; write report.json and report.html into ``out_dir``.
    A progress line per item goes to ``log``: ``"stderr"`` (the stream current at the call,
    not the one at import, which a test harness may have closed since), a stream, or None."""
    from pipeline.eval.report_html import write_report_html

    log = sys.stderr if log == "stderr" else log
    opts = options or EvalOptions()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    items = load_dataset(dataset)
    if opts.sets:
        known = {item.set_name for item in items}
        unknown = sorted(set(opts.sets) - known)
        if unknown:
            raise ValueError(f"unknown set(s) {unknown}; the dataset has {sorted(known)}")
        items = [item for item in items if item.set_name in opts.sets]
    if opts.limit is not None:
        items = items[: opts.limit]
    records = []
    for i, item in enumerate(items, 1):
        record = evaluate_item(item, remover, out, opts)
        records.append(record)
        if log is not None:
            print(_progress_line(i, len(items), record), file=log, flush=True)
    overall, by_subclass = aggregate(records)
    report = {
        "meta": {
            "dataset": str(dataset),
            "proposals": opts.proposals,
            "seed": opts.seed,
            "limit": opts.limit,
            "sets": list(opts.sets),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "note": header_note(opts),
        },
        "overall": overall,
        "by_subclass": by_subclass,
        "items": records,
        "config": remover.config.to_dict(),
    }
    tmp = out / (REPORT_JSON + ".tmp")
    tmp.write_text(json.dumps(report, indent=1, allow_nan=False), encoding="utf-8")
    tmp.replace(out / REPORT_JSON)
    write_report_html(report, out)
    return report


def load_report(run_dir: str | Path) -> dict[str, Any]:
    """The report.json of a run folder (or the file itself); ``ValueError`` if missing."""
    path = Path(run_dir)
    if path.is_dir():
        path = path / REPORT_JSON
    if not path.is_file():
        raise ValueError(f"no {REPORT_JSON} at {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
