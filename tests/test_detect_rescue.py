"""The detector's rescue (``detect.rescue_conf``): when no detection reaches ``detect.conf``,
the most confident one at or above ``rescue_conf`` is proposed instead, and a result that
keeps it says so.

The real-photo tests use ``../shared``'s real int8 YOLOv8n-seg export on a GrabCut photo where
it finds nothing at the default 0.25 (a stone), through both detector backends and the
``Remover``; they skip with the reason when ``../shared`` is absent."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pipeline.config import DetectConfig, load_config
from pipeline.stages.detect import YoloDetector, check_detect_config
from pipeline.stages.onnx_seg import OnnxSegDetector
from pipeline.stages.select_learned import note_rescued
from pipeline.types import Decision, Instance, Role, Selection
from tests.checkpoints import shared_root, shared_weights_dir

SEG = shared_weights_dir() / "yolov8n-seg_int8.onnx"
EVAL = shared_root() / "data" / "eval"
STONE = EVAL / "grabcut" / "stone1" / "image.jpg"  # nothing at conf 0.25
BEAR = EVAL / "davis2016_val"  # photos where the detector is sure
needs_real = pytest.mark.skipif(
    not (SEG.is_file() and STONE.is_file() and BEAR.is_dir()),
    reason=f"{SEG} or {STONE} absent (../shared weights and data)",
)


def rgb(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def backends(**overrides):
    config = DetectConfig(weights=str(SEG), imgsz=320, **overrides)
    return OnnxSegDetector(SEG, config), YoloDetector(SEG, config, "cpu")


def test_a_rescue_level_outside_zero_to_one_is_refused_naming_the_key():
    with pytest.raises(ValueError, match="detect.rescue_conf"):
        check_detect_config(DetectConfig(rescue_conf=1.5))
    with pytest.raises(ValueError, match="detect.rescue_conf"):
        load_config(None, ["detect.rescue_conf=-0.1"])
    assert load_config(None, ["detect.rescue_conf=0.05"]).detect.rescue_conf == 0.05


@needs_real
@pytest.mark.parametrize("backend", [0, 1], ids=["onnx", "ultralytics"])
def test_a_photo_with_nothing_sure_gets_the_most_confident_detection_alone(backend):
    image = rgb(STONE)
    off = backends(rescue_conf=0.25)[backend]  # rescue_conf = conf: no rescue
    assert off.detect(image) == []
    everything = backends(conf=0.01)[backend].detect(image)
    assert len(everything) >= 2, "the photo no longer tests choosing among unsure detections"
    found = backends()[backend].detect(image)
    assert len(found) == 1 and found[0].id == 0
    assert 0.01 <= found[0].det_score < 0.25
    assert found[0].det_score == max(inst.det_score for inst in everything)
    assert (found[0].mask == everything[0].mask).all()


@needs_real
def test_both_backends_rescue_the_same_detections():
    image = rgb(STONE)
    ours, theirs = backends()
    a, b = ours.detect(image), theirs.detect(image)
    assert [i.label for i in a] == [i.label for i in b]
    for x, y in zip(a, b, strict=True):
        assert abs(x.det_score - y.det_score) < 1e-4
        assert (x.mask & y.mask).sum() / (x.mask | y.mask).sum() > 0.99


@needs_real
@pytest.mark.parametrize("backend", [0, 1], ids=["onnx", "ultralytics"])
def test_the_rescue_changes_nothing_where_a_detection_is_sure(backend):
    image = rgb(sorted(BEAR.iterdir())[0] / "image.jpg")
    with_rescue = backends()[backend].detect(image)
    without = backends(rescue_conf=0.25)[backend].detect(image)
    assert with_rescue and all(inst.det_score >= 0.25 for inst in with_rescue)
    assert [(i.label, i.det_score) for i in with_rescue] == [
        (i.label, i.det_score) for i in without
    ]


def instance(k: int, det_score: float, source: str = "detector") -> Instance:
    mask = np.zeros((8, 8), bool)
    mask[k : k + 2, k : k + 2] = True
    return Instance(k, np.array([k, k, k + 2, k + 2]), "person", 0, det_score, mask,
                    source=source)  # fmt: skip


def test_a_kept_detection_below_conf_is_said_and_a_dropped_one_is_not():
    instances = [instance(0, 0.04), instance(1, 0.02), instance(2, 0.9, "saliency")]
    keep_first = Selection(
        (Decision(Role.MAIN, "m"), Decision(Role.DROPPED, "d"), Decision(Role.KEPT, "k")), 0.0, ()
    )
    said = note_rescued(instances, keep_first, 0.25)
    assert "detect.conf 0.25" in said.fallback and "best guess (person, " in said.fallback
    assert "confidence 0.04" in said.fallback
    assert said.decisions == keep_first.decisions
    dropped = Selection(
        (Decision(Role.DROPPED, "d"), Decision(Role.DROPPED, "d"), Decision(Role.MAIN, "m")),
        0.0,
        (),
    )
    assert note_rescued(instances, dropped, 0.25) is dropped
    earlier = Selection(keep_first.decisions, 0.0, (), "the main policy kept nothing")
    both = note_rescued(instances, earlier, 0.25).fallback
    assert both.startswith("the main policy kept nothing; no detection reached")


@needs_real
def test_a_remover_without_the_map_cuts_out_the_rescued_detection_and_says_so():
    from pipeline.api import Remover

    overrides = (f"detect.weights={SEG}", "detect.imgsz=320", "refine.method=none",
                 "saliency.model=none")  # fmt: skip
    image = rgb(STONE)
    layers = Remover.from_config("cpu", overrides=overrides, device="cpu").run(image)
    assert len(layers) > 0
    assert any(layer.enabled for layer in layers)
    assert "no detection reached detect.conf 0.25" in layers.fallback
    off = Remover.from_config("cpu", overrides=(*overrides, "detect.rescue_conf=0.25"))
    empty = off.run(image)
    assert len(empty) == 0 and "detect.conf" not in empty.fallback


@needs_real
def test_the_evaluation_counts_the_rescued_photo_as_a_fallback_not_an_empty(tmp_path):
    from pipeline.api import Remover
    from pipeline.eval.run import EvalOptions, evaluate

    doc = json.loads((EVAL / "manifest.json").read_text())
    (item,) = [it for it in doc["items"] if it["name"] == "grabcut-stone1"]
    item["files"] = {key: str(EVAL / rel) for key, rel in item["files"].items()}
    doc["items"] = [item]
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(doc))
    overrides = (f"detect.weights={SEG}", "detect.imgsz=320", "refine.method=none",
                 "saliency.model=none")  # fmt: skip
    runs = {}
    for rescue in ("0.01", "0.25"):
        remover = Remover.from_config("cpu", overrides=(*overrides, f"detect.rescue_conf={rescue}"))
        runs[rescue] = evaluate(manifest, remover, tmp_path / rescue, EvalOptions("detector"),
                                log=None)  # fmt: skip
    rescued, off = runs["0.01"], runs["0.25"]
    assert rescued["overall"]["n_fallback"] == 1 and rescued["overall"]["n_empty"] == 0
    assert "no detection reached detect.conf" in rescued["items"][0]["fallback"]
    assert rescued["items"][0]["metrics"]["iou"] > 0.5  # the stone (taken for a banana at 0.11)
    assert off["overall"]["n_fallback"] == 0 and off["overall"]["n_empty"] == 1
