"""The salient map as a baseline rule and as a ranking cue (issue 8).

Fast part (no weights): ``iou_rule_salient`` — the map alone thresholded at 0.5 — is measured
only in runs that computed a map, and the map reaches the rules from ``Layers.saliency``.

Real part (ISNet, ~2–3 s a photo): on DAVIS breakdance frame 62 (a dancer among an in-focus,
partly salient crowd) the int8 detector's instances, edged and ranked with the map (the
``salient`` preset), keep the dancer and beat the map alone by a wide margin (measured: 0.75 vs
0.48 IoU with the GT mask). Skipped with the reason when ``../shared`` is absent.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.api import Remover
from pipeline.eval.rules import RULES, SALIENCY_RULES, rule_metrics
from pipeline.eval.run import EvalOptions, evaluate
from pipeline.types import Instance, mask_to_xyxy
from tests.checkpoints import shared_root, shared_weights_dir

REAL_SEG = shared_weights_dir() / "yolov8n-seg_int8.onnx"
ISNET = shared_weights_dir() / "isnet_medium.onnx"
DAVIS = shared_root() / "data" / "eval" / "davis2016_val"
BREAKDANCE = DAVIS / "breakdance_00062"


def salient_remover() -> Remover:
    """The ``salient`` preset with the real int8 detector and ISNet, binary masks (no matting)."""
    overrides = (
        f"detect.weights={REAL_SEG}",
        "detect.imgsz=320",
        f"saliency.weights={ISNET}",
        "refine.method=none",
    )
    return Remover.from_config("salient", overrides=overrides, device="cpu")


def box_instance(index: int, mask: np.ndarray) -> Instance:
    return Instance(
        id=index, xyxy=mask_to_xyxy(mask), label="person", class_id=0, det_score=0.9, mask=mask
    )


def test_salient_rule_is_registered_as_needing_the_map():
    assert "salient" in RULES and "salient" in SALIENCY_RULES


def test_salient_rule_thresholds_the_map_and_ignores_proposals():
    gt = np.zeros((20, 30), bool)
    gt[5:15, 5:15] = True
    saliency = np.zeros((20, 30), np.float32)
    saliency[5:15, 5:15] = 0.9  # the subject
    saliency[0:4, 20:30] = 0.4  # below 0.5: not salient
    wrong = np.zeros((20, 30), bool)
    wrong[10:20, 20:30] = True
    metrics = rule_metrics([box_instance(0, wrong)], gt, saliency)
    assert metrics["iou_rule_salient"] == pytest.approx(1.0)
    assert metrics["iou_rule_largest"] == pytest.approx(0.0)
    saliency[0:4, 20:30] = 0.6  # now salient: 40 extra pixels against 100 of the subject
    assert rule_metrics([], gt, saliency)["iou_rule_salient"] == pytest.approx(100 / 140)


def test_without_a_map_the_salient_rule_is_left_out_not_zero():
    gt = np.ones((8, 8), bool)
    metrics = rule_metrics([box_instance(0, gt.copy())], gt)
    assert "iou_rule_salient" not in metrics
    assert metrics["iou_rule_all"] == pytest.approx(1.0)


def test_salient_rule_names_a_wrong_map_shape():
    gt = np.ones((8, 8), bool)
    with pytest.raises(ValueError, match=r"\(8, 8\).*\(4, 4\)"):
        rule_metrics([], gt, np.zeros((4, 4), np.float32))


@pytest.mark.skipif(
    not (REAL_SEG.is_file() and ISNET.is_file()),
    reason=f"real weights absent: {REAL_SEG} / {ISNET} (set LAYERCUT_SHARED)",
)
@pytest.mark.skipif(
    not (BREAKDANCE / "mask.png").is_file(), reason=f"shared eval data absent: {BREAKDANCE}"
)
def test_breakdance_dancer_beats_the_map_alone(tmp_path):
    manifest = tmp_path / "manifest.json"
    entry = {
        "name": BREAKDANCE.name,
        "set": "davis2016_val",
        "gt_kind": "binary_mask",
        "files": {"image": str(BREAKDANCE / "image.jpg"), "mask": str(BREAKDANCE / "mask.png")},
    }  # absolute paths: the manifest's folder is only the base of relative ones
    manifest.write_text(json.dumps({"items": [entry]}))
    remover = salient_remover()
    report = evaluate(manifest, remover, tmp_path / "run", EvalOptions("detector"), log=None)
    item = report["items"][0]
    assert item["status"] == "ok", item["error"]
    metrics = item["metrics"]
    # one dancer among a dozen people: the dancer is kept, the crowd the map finds mostly not
    # (this photo is one the shipped keep model was trained on: the held-out, cross-validated
    # numbers are in pipeline/models/KEEP_CARD.md)
    assert "person" in item["kept"]
    assert metrics["iou"] > 0.6
    # the map alone keeps parts of the crowd; instance selection must beat it clearly
    assert metrics["iou"] > metrics["iou_rule_salient"] + 0.15
    assert report["overall"]["iou_rule_salient"] == pytest.approx(metrics["iou_rule_salient"])


FRAGMENTED = DAVIS / "breakdance_00021"  # the dancer comes as 3-4 detector pieces
CART = DAVIS / "soapbox_00024"  # COCO has no soapbox cart: only its riders are detected


@pytest.mark.skipif(
    not (REAL_SEG.is_file() and ISNET.is_file()),
    reason=f"real weights absent: {REAL_SEG} / {ISNET} (set LAYERCUT_SHARED)",
)
@pytest.mark.skipif(
    not ((FRAGMENTED / "mask.png").is_file() and (CART / "mask.png").is_file()),
    reason=f"shared eval data absent: {FRAGMENTED} / {CART}",
)
def test_map_joins_a_fragmented_dancer_and_rescues_an_undetected_cart(tmp_path):
    manifest = tmp_path / "manifest.json"
    entries = [
        {
            "name": folder.name,
            "set": "davis2016_val",
            "gt_kind": "binary_mask",
            "files": {"image": str(folder / "image.jpg"), "mask": str(folder / "mask.png")},
        }
        for folder in (FRAGMENTED, CART)
    ]
    manifest.write_text(json.dumps({"items": entries}))
    remover = salient_remover()
    report = evaluate(manifest, remover, tmp_path / "run", EvalOptions("detector"), log=None)
    dancer, cart = report["items"]
    assert dancer["status"] == "ok" and cart["status"] == "ok", (dancer["error"], cart["error"])
    # several detector pieces of the dancer are kept together, and the map's region is cut only
    # where the keep decision is confident, so the result is not below the map alone. (A
    # symmetric decision scored 0.82 here against 0.40 for the map, but only because the shipped
    # model was trained on this photo: held out it scored 0.30–0.34, the thresholded one
    # 0.38–0.48; pipeline/models/KEEP_CARD.md.)
    assert len(dancer["kept"]) >= 3
    assert dancer["metrics"]["iou"] >= dancer["metrics"]["iou_rule_salient"] - 0.01
    # the riders are detected, the cart is rescued from the map and kept with them
    assert "object" in cart["kept"] and cart["kept"].count("person") >= 1
    # the map-alone cut-out is pictured beside ours for the contact sheet
    assert (tmp_path / "run" / cart["thumbs"]["salient"]).is_file()
    # not below the map alone (0.80). Held out the keep decision gives exactly the map's 0.80 here
    # (both fold deals, round 2's ranker and round 3's); only a model trained on this photo
    # scored more (round 2's shipped one: > 0.85), so that is not asserted.
    assert cart["metrics"]["iou"] > 0.75
    assert cart["metrics"]["iou"] >= cart["metrics"]["iou_rule_salient"] - 0.01
