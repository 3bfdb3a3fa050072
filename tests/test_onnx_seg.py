"""The torch-free ONNX YOLO-seg detector (``pipeline.stages.onnx_seg``): its steps on synthetic
inputs with known answers, and, with ``../shared``'s real int8 export, the same instances as
Ultralytics' own predictor (``YoloDetector``) and no torch imported by a CPU remover."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.config import DetectConfig
from pipeline.stages.onnx_seg import PAD_VALUE, OnnxSegDetector, letterbox, masks_native, nms
from tests.checkpoints import shared_root, shared_weights_dir

REPO = Path(__file__).resolve().parents[1]
SEG = shared_weights_dir() / "yolov8n-seg_int8.onnx"
ISNET = shared_weights_dir() / "isnet_medium.onnx"
DAVIS = shared_root() / "data" / "eval" / "davis2016_val"
needs_seg = pytest.mark.skipif(not SEG.is_file(), reason=f"{SEG} absent (../shared weights)")


def test_nms_keeps_the_best_of_overlapping_boxes_and_separate_ones():
    boxes = np.array(
        [[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9.5]], np.float32
    )
    scores = np.array([0.8, 0.9, 0.5, 0.7], np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]  # 0 and 3 overlap 1 (IoU > 0.5)
    assert nms(boxes, scores, 0.95).tolist() == [1, 0, 3, 2]  # nothing overlaps that much
    assert nms(boxes[:0], scores[:0], 0.5).tolist() == []


def test_letterbox_keeps_the_aspect_and_pads_with_grey_around_the_centre():
    image = np.full((100, 200, 3), 7, np.uint8)
    padded, (top, left, new_h, new_w) = letterbox(image, 320)
    assert padded.shape == (320, 320, 3) and (new_h, new_w) == (160, 320)
    assert (top, left) == (80, 0)
    assert (padded[:top] == PAD_VALUE).all() and (padded[top + new_h :] == PAD_VALUE).all()
    assert (padded[top : top + new_h] == 7).all()


def test_native_masks_follow_the_prototypes_and_stay_inside_the_box():
    # one prototype positive on the left half of the letterboxed content, one coefficient
    height, width, side = 100, 200, 320
    protos = np.full((1, side // 4, side // 4), -1.0, np.float32)
    protos[0, :, : side // 8] = 1.0  # left half of the 80×80 grid (content spans all columns)
    boxes = np.array([[0, 0, 200, 100], [0, 0, 60, 100]], np.float32)
    masks = masks_native(protos, np.ones((2, 1), np.float32), boxes, (height, width))
    assert masks.shape == (2, height, width) and masks.dtype == bool
    assert masks[0, :, :95].all() and not masks[0, :, 105:].any()  # the left half, ±blur
    assert masks[1, :, :60].all() and not masks[1, :, 60:].any()  # cut at the box's edge


def test_a_file_that_is_not_a_model_is_named_in_one_line(tmp_path):
    bad = tmp_path / "x.onnx"
    bad.write_bytes(b"junk")
    with pytest.raises(ValueError, match=str(bad)):
        OnnxSegDetector(bad, DetectConfig(weights=str(bad)))
    with pytest.raises(FileNotFoundError, match="x2.onnx"):
        OnnxSegDetector(tmp_path / "x2.onnx", DetectConfig())


@needs_seg
@pytest.mark.skipif(not DAVIS.is_dir(), reason=f"{DAVIS} absent (../shared data)")
def test_the_same_instances_as_ultralytics_on_real_photos():
    from pipeline.stages.detect import YoloDetector

    config = DetectConfig(weights=str(SEG), imgsz=320)
    ours, theirs = OnnxSegDetector(SEG, config), YoloDetector(SEG, config, "cpu")
    compared = 0
    for item in sorted(DAVIS.iterdir())[:4]:
        image = np.asarray(Image.open(item / "image.jpg").convert("RGB"))
        a, b = ours.detect(image), theirs.detect(image)
        assert [i.label for i in a] == [i.label for i in b], item.name
        for x, y in zip(a, b, strict=True):
            np.testing.assert_allclose(x.xyxy, y.xyxy, atol=0.5)
            assert abs(x.det_score - y.det_score) < 1e-4
            assert (x.mask & y.mask).sum() / (x.mask | y.mask).sum() > 0.995
            compared += 1
    assert compared >= 4


@needs_seg
@pytest.mark.skipif(not ISNET.is_file(), reason=f"{ISNET} absent (../shared weights)")
def test_a_cpu_remover_with_onnx_models_never_imports_torch(tmp_path):
    code = (
        "import sys, numpy as np\n"
        "from pipeline.api import Remover\n"
        "from pipeline.config import load_config\n"
        f"c = load_config(None, ['detect.weights={SEG}', 'detect.imgsz=320', "
        f"'saliency.model=isnet', 'saliency.weights={ISNET}'], device='cpu')\n"
        "r = Remover(c)\n"
        "r.warm_up()\n"
        "r.run(np.full((64, 96, 3), 120, np.uint8))\n"
        "print('torch' in sys.modules, 'ultralytics' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "LAYERCUT_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "False"]


def test_auto_device_without_a_gpu_driver_is_cpu_without_importing_torch():
    from pipeline.config import gpu_driver_present

    if gpu_driver_present():
        pytest.skip("a GPU driver is loaded here: torch is asked")
    code = (
        "import sys\n"
        "from pipeline.config import load_config, resolve_device\n"
        "print(resolve_device('auto'), load_config().runtime.device, 'torch' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[0] == "cpu" and done.stdout.split()[2] == "False"
