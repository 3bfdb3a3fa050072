"""The whole pipeline with the real int8 ONNX YOLOv8n-seg from ``../shared/weights`` (no SAM).

Quality tests on real photos (issue 7): ``--keep=all`` on bus.jpg keeps the bus and the people as
separate layers; on zidane.jpg both men are found and ranked; on the bike + rider instance example
``--keep=main`` and ``--keep=interacting`` keep rider and bike together. Assertions are on
classes, counts and overlap with the GT instance map, not on exact scores that another
onnxruntime could shift. The evaluation test runs ``layercut eval --proposals detector`` on two
DAVIS items and checks the rule and oracle columns of the report.

Every test skips with the reason when ``../shared/weights`` (or ``../shared/data``) is absent.
The detector costs ~0.15 s per photo; matting is off (``refine.method=none``): selection is
what is tested here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.api import Remover
from pipeline.eval.cli import main as eval_main
from pipeline.eval.metrics_select import iou
from pipeline.stages.ultra import import_ultralytics
from pipeline.types import Role
from tests.checkpoints import real_isnet, shared_root, shared_weights_dir

REAL_SEG = shared_weights_dir() / "yolov8n-seg_int8.onnx"
REAL_MAP = real_isnet()
EVAL_DIR = shared_root() / "data" / "eval"
BIKE = EVAL_DIR / "instance_examples" / "cutie_bike_00000"
ASSETS = Path(import_ultralytics().__file__).parent / "assets"
KEPT_ROLES = (Role.MAIN, Role.INTERACTING, Role.KEPT)

needs_weights = pytest.mark.skipif(
    not (REAL_SEG.is_file() and REAL_MAP.is_file()),
    reason=f"real weights absent: {REAL_SEG}, {REAL_MAP} (set LAYERCUT_SHARED)",
)
needs_bike = pytest.mark.skipif(
    not (BIKE / "instances.png").is_file(),
    reason=f"shared eval data absent: {BIKE} (set LAYERCUT_SHARED)",
)


def load_rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def remover() -> Remover:
    """The default preset (the salient map on) with the real detector and ISNet."""
    overrides = (f"detect.weights={REAL_SEG}", "detect.imgsz=320", "refine.method=none")
    return Remover.from_config(
        "cpu", overrides=(*overrides, f"saliency.weights={REAL_MAP}"), device="cpu"
    )


def kept(layers) -> list:
    return [layer for layer in layers if layer.enabled and layer.role in KEPT_ROLES]


@needs_weights
def test_bus_keep_all_keeps_bus_and_people_as_separate_layers(remover, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # Ultralytics must not write runs or settings here
    layers = remover.run(load_rgb(ASSETS / "bus.jpg"), keep="all")
    labels = [layer.instance.label for layer in kept(layers)]
    assert labels.count("bus") == 1
    assert labels.count("person") >= 3
    # separate layers: no two kept instances are the same region
    masks = [layer.instance.mask for layer in kept(layers)]
    assert all(iou(a, b) < 0.5 for i, a in enumerate(masks) for b in masks[i + 1 :])
    assert [layer.rank for layer in layers] == list(range(1, len(layers) + 1))
    assert list(tmp_path.iterdir()) == []


@needs_weights
def test_ultralytics_never_pip_installs():
    from ultralytics.utils import checks

    import_ultralytics()
    assert checks.AUTOINSTALL is False


@needs_weights
def test_zidane_both_men_found_and_ranked(remover):
    layers = remover.run(load_rgb(ASSETS / "zidane.jpg"), keep="main")
    people = [layer for layer in layers if layer.instance.label == "person"]
    assert len(people) == 2
    assert sorted(layer.rank for layer in people) == [1, 2]
    assert people[0].instance.score >= people[1].instance.score
    assert iou(people[0].instance.mask, people[1].instance.mask) < 0.1
    # the two men are the subjects of this photo: both kept
    assert all(layer.role is Role.MAIN for layer in people)


@needs_weights
@needs_bike
@pytest.mark.parametrize("keep", ["main", "interacting"])
def test_rider_and_bike_kept_together(remover, keep):
    image = load_rgb(BIKE / "image.jpg")
    gt = np.asarray(Image.open(BIKE / "instances.png"))
    gt_bike, gt_rider = gt == 1, gt == 2  # manifest: 1 = bicycle, 2 = rider
    layers = remover.run(image, keep=keep)
    labels = [layer.instance.label for layer in kept(layers)]
    assert "person" in labels and "bicycle" in labels, [
        (layer.instance.label, layer.role.value, layer.reason) for layer in layers
    ]
    region = layers.kept_mask()
    # the kept region holds most of both GT instances: neither the bike nor the rider is lost
    assert (region & gt_rider).sum() > 0.6 * gt_rider.sum()
    assert (region & gt_bike).sum() > 0.3 * gt_bike.sum()  # the 320-px mask misses thin spokes
    assert iou(region, gt_bike | gt_rider) > 0.5


@needs_weights
@pytest.mark.skipif(
    not (EVAL_DIR / "manifest.json").is_file(), reason=f"shared eval data absent: {EVAL_DIR}"
)
def test_eval_with_detector_reports_rules_and_oracle(tmp_path, capsys):
    out = tmp_path / "run"
    status = eval_main(
        [
            str(EVAL_DIR / "manifest.json"),
            "-o",
            str(out),
            "--proposals",
            "detector",
            "--sets",
            "davis2016_val",
            "--limit",
            "2",
            "--set",
            f"detect.weights={REAL_SEG}",
            "--set",
            "detect.imgsz=320",
            "--set",
            "refine.method=none",
            "--set",
            "saliency.model=none",
        ]
    )
    assert status == 0
    report = json.loads((out / "report.json").read_text())
    assert [item["set"] for item in report["items"]] == ["davis2016_val"] * 2
    columns = (
        "iou",
        "iou_rule_top_score",
        "iou_rule_largest",
        "iou_rule_central",
        "iou_rule_all",
        "iou_oracle_union",
    )
    for aggregate in (report["overall"], *report["by_subclass"].values()):
        assert all(0.0 <= aggregate[name] <= 1.0 for name in columns)
        # the greedy union is a ceiling for every single-proposal rule on the same proposals
        for rule in ("iou_rule_top_score", "iou_rule_largest", "iou_rule_central"):
            assert aggregate[rule] <= aggregate["iou_oracle_union"] + 1e-9
    # no saliency model in this run: the map rule is left out, not reported as 0
    assert "iou_rule_salient" not in report["overall"]
    # blackswan: one bird, found by this detector (measured IoU ≈ 0.8 with the GT mask)
    assert report["items"][0]["kept"] == ["bird"]
    assert report["items"][0]["metrics"]["iou"] > 0.6


def test_eval_unknown_set_is_a_clear_error(tmp_path, capsys):
    manifest = tmp_path / "manifest.json"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    manifest.write_text(
        json.dumps({"items": [{"name": "a", "set": "s", "files": {"image": "a.png"}}]})
    )
    status = eval_main([str(manifest), "-o", str(tmp_path / "out"), "--sets", "nope"])
    assert status == 2
    assert "unknown set(s) ['nope']" in capsys.readouterr().err
