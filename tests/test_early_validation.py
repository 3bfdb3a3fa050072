"""Bad settings stop a command at its start, in one line, before any model loads or any image
is read (issue 14, item 6). Through the real ``layercut`` and ``layercut serve`` entry points.

The config cases point ``detect.weights`` at a file that does not exist: were the value checked
late, the run would fail on the weights (exit 1) or per image instead of exit 2 naming the key.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipeline.cli import main


@pytest.fixture
def photos(tmp_path):
    paths = []
    for name in ("a.jpg", "b.jpg"):
        path = tmp_path / "in" / name
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(np.full((24, 32, 3), 100, np.uint8)).save(path)
        paths.append(str(path))
    return paths


@pytest.mark.parametrize(
    "override, key",
    [
        ("output.format=gif", "output.format"),
        ("output.png_compress_level=42", "output.png_compress_level"),
        ("select.keep=bogus", "select.keep"),
        ("detect.conf=nan", "detect.conf"),
        ("select.min_interaction=nan", "select.min_interaction"),
        ("refine.max_solve_px=-5", "refine.max_solve_px"),
        ("runtime.max_image_px=0", "runtime.max_image_px"),
    ],
)
def test_bad_config_value_exits_2_naming_the_key(photos, tmp_path, capsys, override, key):
    missing = tmp_path / "no-such-weights.pt"
    argv = [*photos, "-o", str(tmp_path / "out"), "--set", f"detect.weights={missing}"]
    assert main([*argv, "--set", override]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and key in err[0] and str(missing) not in err[0], err
    assert not (tmp_path / "out").exists()


def test_a_non_onnx_saliency_file_fails_at_start_in_one_line(
    checkpoints, photos, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("LAYERCUT_OFFLINE", "1")
    fake = tmp_path / "isnet.onnx"
    fake.write_text("this is not an ONNX model\n")
    argv = [*photos, "-o", str(tmp_path / "out"), "-q"]
    argv += ["--set", f"detect.weights={checkpoints.path('yolo11n-seg')}"]
    argv += ["--set", "saliency.model=isnet", "--set", f"saliency.weights={fake}"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # once for the run, not once per image
    assert str(fake) in err[0] and "not a loadable ONNX model" in err[0]
    assert "Traceback" not in err[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("port", ["99999", "-1"])
def test_serve_with_an_impossible_port_exits_2_in_one_line(capsys, port):
    with pytest.raises(SystemExit) as info:
        main(["serve", "--port", port, "--set", "detect.weights=/no/such/file.pt"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--port" in err[0] and port in err[0], err
