"""Detector and segmenter adapters through the real code paths.

Random weights of the real architectures test plumbing only (types, shapes, order, filtering,
errors, side effects); the real int8 ONNX detector from ../shared/weights tests classes and counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.config import DetectConfig
from pipeline.protocols import Detector, Segmenter
from pipeline.stages.detect import YoloDetector
from pipeline.stages.segment import MobileSamSegmenter, SamSegmenter, build_segmenter
from pipeline.stages.ultra import import_ultralytics, restore_threads
from pipeline.types import Instance
from tests.checkpoints import shared_weights_dir

REPO = Path(__file__).resolve().parents[1]
ASSETS = Path(import_ultralytics().__file__).parent / "assets"
# A random-weight YOLO-seg scores every box ≈ 1.56e-4 (its class-bias init): conf=1e-4 keeps
# 20 instances with masks, anything above 2e-4 keeps none.
RANDOM_CONFIG = DetectConfig(conf=1e-4, max_det=20, min_area_frac=0.0)


def load_rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def bus() -> np.ndarray:
    return load_rgb(ASSETS / "bus.jpg")


@pytest.fixture(scope="module")
def random_detector(checkpoints) -> YoloDetector:
    return YoloDetector(checkpoints.path("yolo11n-seg"), RANDOM_CONFIG, device="cpu", threads=0)


@pytest.fixture(scope="module")
def random_instances(random_detector, bus) -> list[Instance]:
    return random_detector.detect(bus)


@pytest.fixture(scope="module")
def mobile_sam(checkpoints) -> MobileSamSegmenter:
    return MobileSamSegmenter(checkpoints.path("mobile_sam"), device="cpu", threads=0)


@pytest.fixture
def keep_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


# --- detector, random weights ------------------------------------------------------------------


def test_detector_instances_types_shapes_order(random_detector, random_instances, bus):
    assert isinstance(random_detector, Detector)
    height, width = bus.shape[:2]
    assert len(random_instances) == RANDOM_CONFIG.max_det
    assert [inst.id for inst in random_instances] == list(range(len(random_instances)))
    scores = [inst.det_score for inst in random_instances]
    assert scores == sorted(scores, reverse=True)
    for inst in random_instances:
        assert inst.xyxy.dtype == np.float32 and inst.xyxy.shape == (4,)
        x0, y0, x1, y1 = inst.xyxy
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        assert inst.mask.shape == (height, width) and inst.mask.dtype == np.bool_
        assert inst.area_px > 0
        assert inst.soft_mask is None
        assert inst.label == random_detector.names[inst.class_id]
        assert inst.det_score >= RANDOM_CONFIG.conf
        assert inst.source == "detector"


def test_detector_mask_lies_inside_its_box(random_instances):
    for inst in random_instances:
        ys, xs = np.nonzero(inst.mask)
        x0, y0, x1, y1 = inst.xyxy
        assert xs.min() >= np.floor(x0) - 1 and xs.max() <= np.ceil(x1) + 1
        assert ys.min() >= np.floor(y0) - 1 and ys.max() <= np.ceil(y1) + 1


def test_min_area_frac_drops_small_instances(checkpoints, random_instances, bus):
    image_px = bus.shape[0] * bus.shape[1]
    areas = sorted(inst.area_px for inst in random_instances)
    min_area_frac = areas[len(areas) // 2] / image_px  # the median instance is just kept
    config = replace(RANDOM_CONFIG, min_area_frac=min_area_frac)
    kept = YoloDetector(checkpoints.path("yolo11n-seg"), config).detect(bus)
    expected = sum(area >= min_area_frac * image_px for area in areas)
    assert 0 < len(kept) == expected < len(random_instances)
    assert all(inst.area_px >= min_area_frac * image_px for inst in kept)
    assert [inst.id for inst in kept] == list(range(len(kept)))


def test_conf_above_every_score_drops_all(checkpoints, random_instances, bus):
    top_score = max(inst.det_score for inst in random_instances)
    config = replace(RANDOM_CONFIG, conf=min(1.0, top_score * 1.5))
    assert YoloDetector(checkpoints.path("yolo11n-seg"), config).detect(bus) == []


def test_max_det_caps_the_count(checkpoints, bus):
    config = replace(RANDOM_CONFIG, max_det=3)
    assert len(YoloDetector(checkpoints.path("yolo11n-seg"), config).detect(bus)) == 3


def test_threads_restored_after_detect(checkpoints, bus, keep_torch_threads):
    from ultralytics.utils import NUM_THREADS  # what Ultralytics' predictor sets on CPU

    wanted = NUM_THREADS + 1
    detector = YoloDetector(checkpoints.path("yolo11n-seg"), RANDOM_CONFIG, threads=wanted)
    torch.set_num_threads(NUM_THREADS)
    detector.detect(bus)
    assert torch.get_num_threads() == wanted


def test_restore_threads_values(keep_torch_threads):
    assert restore_threads(0) == (os.cpu_count() or 1) == torch.get_num_threads()
    assert restore_threads(1) == 1 == torch.get_num_threads()
    with pytest.raises(ValueError, match="threads"):
        restore_threads(-1)


def test_detector_rejects_bad_image(random_detector):
    with pytest.raises(ValueError, match=r"H×W×3"):
        random_detector.detect(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        random_detector.detect(np.zeros((8, 8, 3), np.float32))


def test_non_segmentation_checkpoint_is_refused(checkpoints):
    path = checkpoints.path("yolo11n")
    with pytest.raises(ValueError, match=r"yolo11n\.pt.*'detect' model, not an instance seg"):
        YoloDetector(path, RANDOM_CONFIG)


def test_missing_or_foreign_detector_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere-seg.pt"):
        YoloDetector(tmp_path / "nowhere-seg.pt", RANDOM_CONFIG)
    text = tmp_path / "weights.txt"
    text.write_text("not a model")
    with pytest.raises(ValueError, match=r"weights\.txt.*\.pt checkpoint or an \.onnx"):
        YoloDetector(text, RANDOM_CONFIG)
    for name in ("garbage-seg.pt", "garbage-seg.onnx"):
        garbage = tmp_path / name
        garbage.write_bytes(b"\x00not a model file" * 100)
        with pytest.raises(ValueError, match=f"cannot load .*{name}"):
            YoloDetector(garbage, RANDOM_CONFIG)


def test_bad_detect_config_is_refused(checkpoints):
    with pytest.raises(ValueError, match="detect.conf"):
        YoloDetector(checkpoints.path("yolo11n-seg"), replace(RANDOM_CONFIG, conf=1.5))
    with pytest.raises(ValueError, match="detect.max_det"):
        YoloDetector(checkpoints.path("yolo11n-seg"), replace(RANDOM_CONFIG, max_det=0))


# --- segmenters, random weights ----------------------------------------------------------------


def check_refined(before: list[Instance], after: list[Instance], hw: tuple[int, int]) -> None:
    assert len(after) == len(before)
    for old, new in zip(before, after, strict=True):
        assert (new.id, new.label, new.class_id, new.det_score) == (
            old.id,
            old.label,
            old.class_id,
            old.det_score,
        )
        np.testing.assert_array_equal(new.xyxy, old.xyxy)
        assert new.mask.shape == hw and new.mask.dtype == np.bool_ and new.mask.any()
        assert new.soft_mask is not None
        assert new.soft_mask.shape == hw and new.soft_mask.dtype == np.float32
        assert 0.0 <= new.soft_mask.min() and new.soft_mask.max() <= 1.0
        # the hard mask is the soft mask thresholded at one half (logit 0)
        np.testing.assert_array_equal(new.mask, new.soft_mask > 0.5)


def test_mobile_sam_refines_every_instance(mobile_sam, random_instances, bus, keep_torch_threads):
    assert isinstance(mobile_sam, Segmenter)
    restore_threads(1)  # Ultralytics' choice here; the segmenter must put back its own (0 = all)
    before = random_instances[:4]
    after = mobile_sam.segment(bus, before)
    check_refined(before, after, bus.shape[:2])
    assert any(not np.array_equal(a.mask, b.mask) for a, b in zip(before, after, strict=True))
    assert torch.get_num_threads() == (os.cpu_count() or 1)


def test_mobile_sam_no_instances_and_bad_masks(mobile_sam, random_instances, bus):
    assert mobile_sam.segment(bus, []) == []
    wrong = random_instances[0].replace(mask=np.zeros((10, 10), bool))
    with pytest.raises(ValueError, match=r"mask of instance 0 must have shape \(1080, 810\)"):
        mobile_sam.segment(bus, [wrong])


def test_mobile_sam_refuses_a_pickled_checkpoint(checkpoints):
    # An Ultralytics .pt holds pickled classes: weights_only loading must refuse it.
    with pytest.raises(ValueError, match=r"yolo11n-seg\.pt"):
        MobileSamSegmenter(checkpoints.path("yolo11n-seg"))


@pytest.mark.slow
def test_sam_vit_b_refines_every_instance(checkpoints, random_instances, bus):
    # ViT-B encodes a 1024² image in ~20 s on 2 cores: the only test that pays for it.
    segmenter = build_segmenter("sam_vit_b", checkpoints.path("sam_vit_b"), "cpu", 0)
    assert isinstance(segmenter, SamSegmenter)
    before = random_instances[:3]
    check_refined(before, segmenter.segment(bus, before), bus.shape[:2])


def test_build_segmenter_names(checkpoints, tmp_path):
    assert build_segmenter("none", None, "cpu", 0) is None
    with pytest.raises(ValueError, match="none, mobile_sam, sam_vit_b, sam_vit_l, sam_vit_h"):
        build_segmenter("sam_vit_x", None, "cpu", 0)
    with pytest.raises(ValueError, match="needs a weights file"):
        build_segmenter("mobile_sam", None, "cpu", 0)
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        build_segmenter("sam_vit_b", tmp_path / "absent.pth", "cpu", 0)
    built = build_segmenter("mobile_sam", checkpoints.path("mobile_sam"), "cpu", 0)
    assert isinstance(built, MobileSamSegmenter)


# --- side effects ------------------------------------------------------------------------------


def test_no_files_in_working_directory(
    tmp_path, monkeypatch, random_detector, mobile_sam, random_instances, bus
):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    instances = random_detector.detect(bus)
    mobile_sam.segment(bus, instances[:1])
    assert list(cwd.iterdir()) == []


def test_fresh_import_writes_only_into_layercut_cache(checkpoints, tmp_path):
    cwd, home, cache = tmp_path / "cwd", tmp_path / "home", tmp_path / "cache"
    for folder in (cwd, home, cache):
        folder.mkdir()
    script = textwrap.dedent(
        f"""
        import json, os
        import numpy as np
        from pipeline.config import DetectConfig
        from pipeline.stages.detect import YoloDetector
        detector = YoloDetector({str(checkpoints.path("yolo11n-seg"))!r},
                                DetectConfig(conf=1e-4, max_det=2, min_area_frac=0.0))
        found = detector.detect(np.full((96, 128, 3), 127, np.uint8))
        print(json.dumps({{"omp": os.environ.get("OMP_NUM_THREADS"), "n": len(found)}}))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YOLO_", "OMP_NUM"))}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(cache), XDG_CONFIG_HOME=str(home / ".config"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["omp"] is None  # Ultralytics' OMP_NUM_THREADS=1 does not leak
    assert list(cwd.iterdir()) == []
    assert not (home / ".config" / "Ultralytics").exists()
    settings_file = cache / "layercut" / "ultralytics" / "Ultralytics" / "settings.json"
    settings = json.loads(settings_file.read_text())
    assert settings["sync"] is False
    assert Path(settings["runs_dir"]).is_relative_to(cache)


# --- the real int8 ONNX detector from ../shared/weights ----------------------------------------

REAL_SEG = shared_weights_dir() / "yolov8n-seg_int8.onnx"
REAL_DET = shared_weights_dir() / "yolov8n_int8.onnx"
needs_real = pytest.mark.skipif(
    not REAL_SEG.is_file(), reason=f"real weights absent: {REAL_SEG} (set LAYERCUT_SHARED)"
)


@pytest.fixture(scope="module")
def real_detector() -> YoloDetector:
    return YoloDetector(REAL_SEG, DetectConfig(imgsz=320), device="cpu")


def labels_of(instances: list[Instance]) -> list[str]:
    return [inst.label for inst in instances]


@needs_real
def test_real_detector_bus(real_detector, bus):
    found = real_detector.detect(bus)
    labels = labels_of(found)
    assert labels.count("bus") == 1 and labels.count("person") >= 2
    assert found[labels.index("bus")].area_px > 0.2 * bus.shape[0] * bus.shape[1]


@needs_real
def test_real_detector_zidane(real_detector):
    image = load_rgb(ASSETS / "zidane.jpg")
    found = real_detector.detect(image)
    assert labels_of(found).count("person") == 2
    assert all(inst.mask.shape == image.shape[:2] for inst in found)


@needs_real
def test_real_detector_conf_threshold_between_scores(real_detector, bus):
    found = real_detector.detect(bus)
    assert len(found) >= 3
    conf = (found[1].det_score + found[2].det_score) / 2  # keeps exactly the two best
    strict = YoloDetector(REAL_SEG, DetectConfig(imgsz=320, conf=conf)).detect(bus)
    assert labels_of(strict) == labels_of(found[:2])
    assert all(inst.det_score >= conf for inst in strict)


@needs_real
def test_real_onnx_static_input_overrides_imgsz(caplog):
    with caplog.at_level("WARNING", logger="pipeline.stages.detect"):
        detector = YoloDetector(REAL_SEG, DetectConfig(imgsz=640))
    assert detector.imgsz == 320
    assert "fixed 320×320 input" in caplog.text


@needs_real
def test_real_detect_only_onnx_is_refused():
    if not REAL_DET.is_file():
        pytest.skip(f"real weights absent: {REAL_DET}")
    with pytest.raises(ValueError, match=r"yolov8n_int8\.onnx is a 'detect' model"):
        YoloDetector(REAL_DET, DetectConfig(imgsz=320))


def test_import_ultralytics_undoes_its_pillow_open_patch():
    # Ultralytics' wrapper pip-installs pi-heif when Pillow cannot identify a file
    from PIL import Image

    from pipeline.stages.ultra import import_ultralytics

    import_ultralytics()
    from ultralytics.utils import patches

    assert Image.open is patches._image_open
