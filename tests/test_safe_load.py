"""No code runs from a weights file (issue 14, item 1).

Each malicious checkpoint here really is one: its pickle calls ``os.system('touch FLAG')`` (or
builds an Ultralytics model class whose builder ``eval``\\ s a string), and every test checks the
flag file was never created. The random-weight checkpoints of ``pipeline.testing`` (what tests and
CI use) must still load.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.config import DetectConfig
from pipeline.stages.safe_load import CheckpointRefusedError, load_state_dict
from pipeline.stages.segment import MobileSamSegmenter, SamSegmenter

REPO = Path(__file__).resolve().parents[1]


class SystemCall:
    """Pickles as ``os.system(command)``: unpickling it in full runs the command."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class EvilModelBuild:
    """Pickles as ``SegmentationModel({... "activation": <code>})``: a class Ultralytics puts on
    torch's process-wide weights-only allow-list once it has loaded a detector; its builder
    ``eval``\\ s the activation string unless Ultralytics' restricted mode is on."""

    def __init__(self, flag: Path):
        self.flag = flag

    def __reduce__(self):
        from ultralytics.nn.tasks import SegmentationModel

        code = f"__import__('os').system('touch {self.flag}')"
        cfg = {"activation": code, "nc": 1, "backbone": [], "head": []}
        return (SegmentationModel, (cfg,))


def evil_checkpoint(path: Path, flag: Path) -> Path:
    torch.save({"model": SystemCall(f"touch {flag}")}, path)
    return path


def run_python(code: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "YOLO_AUTOINSTALL": "false",
        "LAYERCUT_OFFLINE": "1",
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
        env=environ,
    )


def test_api_after_import_ultralytics_refuses_a_pickled_payload(checkpoints, tmp_path):
    """The application imported Ultralytics first (so Ultralytics read its safe-load switch
    before layercut could set it): the payload must still not run, and the random-weight
    checkpoint of the real architecture must still load."""
    flag = tmp_path / "PWNED"
    evil = evil_checkpoint(tmp_path / "evil.pt", flag)
    good = checkpoints.path("yolo11n-seg")
    result = run_python(
        f"""
        import ultralytics  # first, as an application would
        from ultralytics.utils import SAFE_LOAD
        from pipeline import Remover
        print("SAFE_LOAD", SAFE_LOAD)
        try:
            Remover.from_config("cpu", overrides=["detect.weights={evil}"]).detector
            print("LOADED")
        except ValueError as exc:
            print("REFUSED", exc)
        det = Remover.from_config("cpu", overrides=["detect.weights={good}"]).detector
        print("GOOD", det.model.task)
        """,
        tmp_path,
        ULTRALYTICS_SAFE_LOAD="0",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert not flag.exists(), "the pickled payload ran"
    lines = result.stdout.splitlines()
    assert "SAFE_LOAD False" in lines  # Ultralytics' own switch is off in this process
    refused = [line for line in lines if line.startswith("REFUSED")]
    assert len(refused) == 1 and str(evil) in refused[0] and "posix.system" in refused[0]
    assert "ONNX" in refused[0]  # how to convert it
    assert "GOOD segment" in lines


def test_cli_with_ultralytics_safe_load_off_refuses_a_pickled_payload(tmp_path):
    flag = tmp_path / "PWNED"
    evil = evil_checkpoint(tmp_path / "evil.pt", flag)
    photo = tmp_path / "photo.jpg"
    Image.fromarray(np.full((32, 48, 3), 120, np.uint8)).save(photo)
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", str(photo), "-o", str(tmp_path / "out")]
        + ["--set", f"detect.weights={evil}", "--set", "saliency.model=none"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
        env={**os.environ, "ULTRALYTICS_SAFE_LOAD": "0", "LAYERCUT_OFFLINE": "1"},
    )
    assert not flag.exists(), "the pickled payload ran"
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and str(evil) in errors[0] and "refused" in errors[0], errors
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_detector_ignores_ultralytics_switch_in_process(checkpoints, tmp_path, monkeypatch):
    from ultralytics.nn import tasks

    from pipeline.stages.detect import YoloDetector

    monkeypatch.setattr(tasks, "SAFE_LOAD", False)  # as with ULTRALYTICS_SAFE_LOAD=0
    flag = tmp_path / "PWNED"
    evil = evil_checkpoint(tmp_path / "evil-seg.pt", flag)
    with pytest.raises(CheckpointRefusedError, match=r"evil-seg\.pt: refused.*posix\.system"):
        YoloDetector(evil, DetectConfig())
    assert not flag.exists()
    detector = YoloDetector(checkpoints.path("yolo11n-seg"), DetectConfig(conf=1e-4, max_det=3))
    assert detector.model.task == "segment"
    assert len(detector.detect(np.full((64, 64, 3), 128, np.uint8))) <= 3


@pytest.mark.parametrize("segmenter", [MobileSamSegmenter, SamSegmenter])
def test_sam_checkpoints_with_a_payload_are_refused(tmp_path, segmenter):
    flag = tmp_path / "PWNED"
    path = tmp_path / "sam.pth"
    torch.save({"image_encoder.weight": torch.zeros(2), "x": SystemCall(f"touch {flag}")}, path)
    with pytest.raises(CheckpointRefusedError, match=r"sam\.pth: refused.*posix\.system"):
        segmenter(path)
    assert not flag.exists()


def test_a_model_class_allowed_by_ultralytics_cannot_be_built_from_a_state_dict(
    checkpoints, tmp_path, monkeypatch
):
    """After a detector load Ultralytics has added its model classes to torch's process-wide
    weights-only allow-list; a SAM file that builds one of them (and so ``eval``\\ s a string)
    must be refused by the static check before torch unpickles anything."""
    from ultralytics.nn import tasks

    from pipeline.stages.detect import YoloDetector

    monkeypatch.setattr(tasks, "SAFE_LOAD", False)  # its restricted model builder is off
    YoloDetector(checkpoints.path("yolo11n-seg"), DetectConfig())  # registers its classes
    assert any(
        getattr(g, "__name__", None) == "SegmentationModel" or "SegmentationModel" in str(g)
        for g in torch.serialization.get_safe_globals()
    )
    flag = tmp_path / "PWNED"
    path = tmp_path / "mobile_sam.pt"
    torch.save({"model": {"w": EvilModelBuild(flag)}}, path)
    with pytest.raises(CheckpointRefusedError, match=r"ultralytics\.nn\.tasks\.SegmentationModel"):
        load_state_dict(path, "mobile_sam")
    assert not flag.exists()


def test_random_state_dicts_and_other_files(checkpoints, tmp_path):
    state = load_state_dict(checkpoints.path("mobile_sam"), "mobile_sam")
    assert state and all(isinstance(v, torch.Tensor) for v in state.values())
    nested = tmp_path / "nested.pt"
    torch.save({"model": {"a": torch.ones(2, dtype=torch.float16)}}, nested)
    assert set(load_state_dict(nested, "mobile_sam")) == {"a"}
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointRefusedError, match=r"notes\.pt: not a torch\.save zip"):
        load_state_dict(text, "mobile_sam")
    with pytest.raises(FileNotFoundError, match="absent.pt"):
        load_state_dict(tmp_path / "absent.pt", "mobile_sam")
