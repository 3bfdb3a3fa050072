"""Evaluation honours a GT's ignore band (GrabCut's 128) and counts empty results."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pipeline.eval.aggregate import aggregate_items
from pipeline.eval.dataset import load_dataset, load_ground_truth
from pipeline.eval.metrics_select import iou, precision_at_1
from pipeline.eval.rules import oracle_segments_iou, rule_metrics
from pipeline.eval.run import EvalOptions, evaluate
from pipeline.types import Instance, mask_to_xyxy
from tests.test_eval_report import FakeRemover

HW = (40, 40)


def _banded_item(root):
    """A 20×20 object with a 2-px band of 128 around it (the GrabCut convention)."""
    mask = np.zeros(HW, np.uint8)
    mask[8:32, 8:32] = 128
    mask[10:30, 10:30] = 255
    photo = np.full((*HW, 3), 90, np.uint8)
    root.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask).save(root / "mask.png")
    Image.fromarray(photo).save(root / "image.png")
    entry = {
        "name": "banded",
        "set": "grabcut",
        "gt_kind": "binary_mask",
        "files": {"image": "image.png", "mask": "mask.png"},
        "ignore_value": 128,
    }
    (root / "manifest.json").write_text(json.dumps({"items": [entry]}))
    return root / "manifest.json"


def test_ignore_band_is_neither_object_nor_background(tmp_path):
    (item,) = load_dataset(_banded_item(tmp_path))
    assert item.ignore_value == 128
    gt = load_ground_truth(item)
    assert gt.main_mask.sum() == 400 and gt.ignore.sum() == 24 * 24 - 400
    # a prediction that fills the band exactly is as good as one that stops at the object
    filled = np.zeros(HW, bool)
    filled[8:32, 8:32] = True
    assert iou(filled, gt.main_mask, gt.ignore) == 1.0
    assert iou(filled, gt.main_mask) == pytest.approx(400 / 576)
    assert precision_at_1(filled, gt.main_mask, gt.ignore) == 1.0
    inst = Instance(0, mask_to_xyxy(filled), "object", -1, 1.0, filled)
    metrics = rule_metrics([inst], gt.main_mask, None, gt.ignore)
    assert metrics["iou_rule_largest"] == 1.0 and metrics["iou_oracle_union"] == 1.0
    assert oracle_segments_iou([inst], gt.main_mask, None, gt.ignore) == 1.0


def test_ignore_value_must_be_a_byte(tmp_path):
    path = _banded_item(tmp_path)
    doc = json.loads(path.read_text())
    doc["items"][0]["ignore_value"] = "128"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="ignore_value"):
        load_dataset(path)


class EmptyRemover(FakeRemover):
    """Keeps nothing at all."""

    def __init__(self):
        super().__init__(keep_labels=set())


def test_empty_results_are_counted(tmp_path):
    manifest = _banded_item(tmp_path / "data")
    report = evaluate(manifest, EmptyRemover(), tmp_path / "run", EvalOptions(), log=None)
    (item,) = report["items"]
    assert item["metrics"]["empty"] == 1.0 and item["metrics"]["iou"] == 0.0
    assert report["overall"]["n_empty"] == 1
    report = evaluate(manifest, FakeRemover(), tmp_path / "run2", EvalOptions(), log=None)
    assert report["overall"]["n_empty"] == 0 and report["items"][0]["metrics"]["iou"] == 1.0
    # an item whose GT is empty and that keeps nothing is not an empty *result*
    agg = aggregate_items([{"status": "ok", "metrics": {"empty": 0.0}}])
    assert agg["n_empty"] == 0
