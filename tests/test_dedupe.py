"""Duplicate detections merged before ranking (``pipeline.stages.dedupe``): synthetic masks with
known overlaps, the Remover with a detector that reports its subject twice, and the real
detector on the bike + rider photo where it reports the rider as two "person" instances."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from pipeline.api import Remover
from pipeline.config import DedupeConfig, load_config
from pipeline.stages.dedupe import mask_overlap, merge_duplicates
from pipeline.stages.refine import BinaryRefiner
from tests import scenes
from tests.checkpoints import shared_root, shared_weights_dir

HW = (120, 160)
CONFIG = DedupeConfig()


def rect(x0, y0, x1, y1):
    return scenes.rect_mask(HW, x0, y0, x1, y1)


def inst(inst_id, mask, label="person", det_score=0.5):
    return scenes.instance(inst_id, mask, label, det_score=det_score)


def test_overlap_counts_iou_and_the_share_of_the_smaller_mask():
    a, b = inst(0, rect(0, 0, 40, 40)), inst(1, rect(20, 0, 60, 40))  # half of each shared
    overlap = mask_overlap(a, b)
    assert overlap.iou == pytest.approx(800 / 2400) and overlap.contained_share == 0.5
    inner = inst(2, rect(10, 10, 20, 20))
    assert mask_overlap(a, inner).contained_share == 1.0
    assert mask_overlap(a, inst(3, rect(100, 80, 120, 100))).iou == 0.0
    assert mask_overlap(a, inst(4, np.zeros(HW, bool))) == mask_overlap(
        a, inst(5, rect(0, 0, 0, 0))
    )


def test_same_object_twice_becomes_one_instance_led_by_the_better_detection():
    whole = inst(0, rect(40, 10, 80, 110), det_score=0.4)
    shifted = inst(1, rect(42, 14, 82, 112), det_score=0.7)  # IoU ≈ 0.86
    other = inst(2, rect(110, 40, 150, 110), det_score=0.6)
    merged = merge_duplicates([whole, shifted, other], CONFIG)
    assert [m.id for m in merged] == [1, 2]  # the better detection leads, in input order
    lead = merged[0]
    assert lead.det_score == 0.7 and lead.label == "person"
    assert np.array_equal(lead.mask, whole.mask | shifted.mask)
    assert lead.xyxy.tolist() == [40, 10, 82, 112]
    assert merged[1] is other  # untouched


def test_a_part_found_on_its_own_joins_the_whole():
    body = rect(40, 10, 80, 110)
    torso = rect(45, 30, 75, 70)  # inside the body: IoU 0.3, contained share 1.0
    merged = merge_duplicates([inst(0, body, det_score=0.8), inst(1, torso, det_score=0.3)], CONFIG)
    assert len(merged) == 1 and merged[0].id == 0 and np.array_equal(merged[0].mask, body)


def test_neighbours_riders_and_held_objects_are_not_merged():
    left, right = rect(20, 10, 70, 110), rect(60, 10, 110, 110)  # two people, shoulders touch
    rider, bike = rect(50, 10, 90, 80), rect(30, 50, 110, 110)  # rider's legs over the bike
    person, phone = rect(40, 10, 80, 110), rect(50, 40, 60, 55)  # phone inside the person mask
    for pair in ([inst(0, left), inst(1, right)],
                 [inst(0, rider), inst(1, bike, "bicycle")],
                 [inst(0, person), inst(1, phone, "cell phone")]):  # fmt: skip
        assert merge_duplicates(pair, CONFIG) == pair


def test_two_labels_on_the_same_pixels_are_one_object():
    car = inst(0, rect(20, 30, 120, 90), "car", det_score=0.6)
    truck = inst(1, rect(21, 30, 120, 91), "truck", det_score=0.61)
    merged = merge_duplicates([car, truck], CONFIG)
    assert len(merged) == 1 and merged[0].label == "truck" and merged[0].id == 1


def test_soft_masks_take_the_maximum_and_a_missing_one_counts_as_the_hard_mask():
    a = inst(0, rect(40, 10, 80, 110), det_score=0.9)
    b = inst(1, rect(40, 12, 80, 110), det_score=0.5)
    soft = np.where(b.mask, 0.6, 0.0).astype(np.float32)
    merged = merge_duplicates([a, b.replace(soft_mask=soft)], CONFIG)[0]
    assert merged.soft_mask is not None and merged.soft_mask.dtype == np.float32
    assert merged.soft_mask[50, 50] == 1.0 and merged.soft_mask[5, 5] == 0.0


def test_thresholds_and_switch_come_from_the_config():
    a, b = inst(0, rect(40, 10, 80, 110)), inst(1, rect(42, 14, 82, 112))
    assert len(merge_duplicates([a, b], CONFIG)) == 1
    assert len(merge_duplicates([a, b], dataclasses.replace(CONFIG, enabled=False))) == 2
    strict = dataclasses.replace(CONFIG, min_mask_iou=0.95, min_contained_share=0.95)
    assert len(merge_duplicates([a, b], strict)) == 2  # IoU 0.86, contained share 0.93
    config = load_config("cpu", ["dedupe.min_mask_iou=0.95"], device="cpu")
    assert config.dedupe.min_mask_iou == 0.95
    with pytest.raises(ValueError, match="dedupe.min_contained_share"):
        load_config("cpu", ["dedupe.min_contained_share=1.5"], device="cpu")


class TwiceDetector:
    """Reports the subject twice (a whole-body and a slightly shifted copy) and a cup."""

    def __init__(self, instances):
        self.instances = instances

    def detect(self, image):
        return list(self.instances)


def _scene_with_a_duplicate():
    hw = (240, 320)
    image = scenes.background(hw)
    subject = scenes.person_mask(hw, 120, 30, 80, 200)
    copy = np.roll(subject, 3, axis=0)
    cup = scenes.rect_mask(hw, 20, 150, 50, 190)
    image = scenes.paint(image, subject | copy | cup, scenes.texture(hw, seed=3))
    detections = [
        scenes.instance(0, subject, "person", det_score=0.8),
        scenes.instance(1, copy, "person", det_score=0.6),
        scenes.instance(2, cup, "cup", det_score=0.5),
    ]
    return image, detections


@pytest.mark.parametrize("enabled", [True, False])
def test_remover_merges_a_duplicate_so_the_choice_is_not_ambiguous(enabled):
    image, detections = _scene_with_a_duplicate()
    config = load_config(
        "cpu",
        [
            "rank.model=prior",
            "detect.weights=/no/such.onnx",
            f"dedupe.enabled={str(enabled).lower()}",
            "saliency.model=none",
        ],
        device="cpu",
    )
    remover = Remover(config, detector=TwiceDetector(detections), refiner=BinaryRefiner())
    layers = remover.run(image, keep="main")
    people = [layer for layer in layers if layer.label == "person"]
    if enabled:
        assert len(people) == 1 and people[0].instance.id == 0
        assert layers.ambiguity < 0.5
        assert "dedupe" in layers.timings_s
    else:  # what happens without the step: the copy reads as a rival subject
        assert len(people) == 2 and layers.ambiguity >= 0.5  # the page would offer a choice


REAL_SEG = shared_weights_dir() / "yolov8n-seg_int8.onnx"
BIKE = shared_root() / "data" / "eval" / "instance_examples" / "cutie_bike_00000"


@pytest.mark.skipif(
    not (REAL_SEG.is_file() and (BIKE / "image.jpg").is_file()),
    reason=f"needs ../shared: {REAL_SEG} and {BIKE} (set LAYERCUT_SHARED)",
)
def test_real_detector_reports_the_rider_twice_and_the_step_merges_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # Ultralytics must not write runs or settings here
    image = np.asarray(Image.open(BIKE / "image.jpg").convert("RGB"))
    gt_rider = np.asarray(Image.open(BIKE / "instances.png")) == 2  # manifest: 2 = rider
    overrides = [f"detect.weights={REAL_SEG}", "detect.imgsz=320", "refine.method=none"]
    remover = Remover.from_config("cpu", [*overrides, "saliency.model=none"], device="cpu")
    raw = remover.detector.detect(image)
    riders = [d for d in raw if d.label == "person"]
    assert len(riders) == 2  # the detector's two copies of the one rider
    assert mask_overlap(*riders).iou >= CONFIG.min_mask_iou
    layers = remover.run(image, keep="main")
    people = [layer for layer in layers if layer.label == "person"]
    assert len(people) == 1 and [layer.label for layer in layers].count("bicycle") == 1
    rider = people[0].instance.mask
    assert (rider & gt_rider).sum() > 0.6 * gt_rider.sum()
    assert layers.ambiguity < 0.5  # was 0.99: the copy ranked as a rival main subject
