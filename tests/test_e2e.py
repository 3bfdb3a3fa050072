"""End to end through the real Ultralytics (and MobileSAM) code with random-weight checkpoints.

The checkpoints are registered in a temporary manifest with their sha256 and ``file://`` URLs, so
the CLI and the API resolve them by name through the real weights store (download, checksum,
atomic move into a temporary cache). Random weights give meaningless masks: these tests assert
files, shapes, JSON schema and exit codes, never quality.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.cli import main
from tests.checkpoints import MAP_OFF, shared_root

# A random YOLO finds nothing at ordinary thresholds: take its top few proposals instead (and no
# salient map: see tests.checkpoints.MAP_OFF).
RANDOM_DETECTOR = ["--set", "detect.conf=0.0001", "--set", "detect.max_det=4", *MAP_OFF]


def bus_photo() -> Path:
    import ultralytics

    return Path(ultralytics.__file__).parent / "assets" / "bus.jpg"


@pytest.fixture
def store_env(checkpoints, tmp_path, monkeypatch):
    """Point the weights store at the random-weight manifest and an empty cache."""
    manifest = checkpoints.manifest(["yolo11n-seg", "mobile_sam"])
    monkeypatch.setenv("LAYERCUT_MANIFEST", str(manifest))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("LAYERCUT_WEIGHTS", raising=False)
    monkeypatch.delenv("LAYERCUT_OFFLINE", raising=False)
    return tmp_path


@pytest.fixture
def photo(tmp_path) -> Path:
    """A small copy of bus.jpg (keeps matting fast)."""
    path = tmp_path / "in" / "bus.jpg"
    path.parent.mkdir()
    with Image.open(bus_photo()) as img:
        img.convert("RGB").resize((405, 540)).save(path, quality=92)
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cli_single_photo_writes_rgba_and_resolves_weights_through_store(store_env, photo):
    out = store_env / "out"
    before = digest(photo)
    assert main([str(photo), "-o", str(out), "-q", *RANDOM_DETECTOR]) == 0
    with Image.open(out / "bus.png") as img:
        assert img.mode == "RGBA" and img.size == (405, 540)
    assert digest(photo) == before
    cached = store_env / "cache" / "layercut" / "yolo11n-seg.pt"
    assert cached.is_file() and not list(cached.parent.glob("*.part"))


def test_cli_layers_and_debug_outputs_match_manifest(store_env, photo):
    out = store_env / "out"
    args = [str(photo), "-o", str(out), "-q", "--layers", "--debug", "--keep", "all"]
    assert main([*args, *RANDOM_DETECTOR]) == 0
    manifest = json.loads((out / "bus" / "layers.json").read_text())
    assert manifest["keep"] == "all" and manifest["width"] == 405
    assert 1 <= len(manifest["layers"]) <= 4
    ranks = [entry["rank"] for entry in manifest["layers"]]
    assert ranks == list(range(1, len(ranks) + 1))
    scores = [entry["score"] for entry in manifest["layers"]]
    assert scores == sorted(scores, reverse=True)
    for entry in manifest["layers"]:
        assert entry["role"] in ("main", "interacting", "kept", "dropped")
        assert entry["reason"] and entry["features"] and len(entry["box_xyxy"]) == 4
        assert entry["file"] == f"{entry['rank']:02d}-{entry['label'].replace(' ', '_')}.png"
        with Image.open(out / "bus" / entry["file"]) as layer_png:
            assert layer_png.mode == "RGBA" and layer_png.size == (405, 540)
    assert (out / "bus" / "composite.png").is_file()
    with Image.open(out / "bus.debug.png") as debug:
        assert debug.width >= 405 and debug.height >= 540


def test_cli_webp_and_mobile_sam(store_env, photo):
    out = store_env / "out"
    args = [
        str(photo),
        "-o",
        str(out),
        "-q",
        "--format",
        "webp",
        "--set",
        "segment.model=mobile_sam",
    ]
    assert main([*args, *RANDOM_DETECTOR]) == 0
    with Image.open(out / "bus.webp") as img:
        # libwebp drops a fully opaque alpha channel, so the mode may read back as RGB; alpha
        # round-trips are tested in test_imageio with a partly transparent image
        assert img.format == "WEBP" and img.size == (405, 540)


def test_local_checkpoint_path_is_used_as_given(checkpoints, photo, tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERCUT_OFFLINE", "1")  # nothing may be downloaded
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    mine = tmp_path / "my-seg.pt"
    shutil.copy(checkpoints.path("yolo11n-seg"), mine)
    args = [str(photo), "-o", str(tmp_path / "out"), "-q", *RANDOM_DETECTOR]
    code = main([*args, "--set", f"detect.weights={mine}", "--set", "segment.model=none"])
    assert code == 0 and (tmp_path / "out" / "bus.png").is_file()


def test_missing_weights_offline_is_one_clear_line(photo, tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "LAYERCUT_OFFLINE": "1",
    }
    run = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", str(photo), "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        timeout=120,
    )
    assert run.returncode == 1
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, run.stderr
    assert "Traceback" not in run.stderr
    assert "yolo11n-seg" in lines[0] and "layercut weights fetch" in lines[0]
    assert not (tmp_path / "out" / "bus.png").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["x.jpg"],  # no -o
        ["{photo}", "-o", "{out}", "--set", "detect.nosuch=1"],
        ["{photo}", "-o", "{out}", "--keep", "everything"],
        ["{missing}", "-o", "{out}"],
    ],
)
def test_bad_usage_exits_2(argv, photo, tmp_path, capsys):
    fill = {"photo": str(photo), "out": str(tmp_path / "o"), "missing": str(tmp_path / "no.jpg")}
    assert main([a.format(**fill) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "error" in err[-1]


def test_output_never_overwrites_input(store_env, photo):
    png = photo.with_suffix(".png")
    Image.open(photo).save(png)
    before = digest(png)
    assert main([str(png), "-o", str(png.parent), "-q", *RANDOM_DETECTOR]) == 0
    assert digest(png) == before
    assert (png.parent / "bus-cutout.png").is_file()


def test_api_layers_toggle_and_recomposite(store_env, photo):
    from pipeline import KeepMode, Remover

    overrides = ["detect.conf=0.0001", "detect.max_det=4", MAP_OFF[1]]
    remover = Remover.from_config("cpu", overrides=overrides)
    layers = remover(str(photo))
    assert len(layers) >= 1
    assert [layer.rank for layer in layers] == list(range(1, len(layers) + 1))
    rgba = layers.composite()
    assert rgba.shape == (540, 405, 4) and rgba.dtype == np.uint8
    all_rgba = layers.composite(keep=KeepMode.ALL)
    assert all_rgba.shape == rgba.shape
    for layer in layers:
        layers.set_enabled(layer.rank, False)
    assert layers.composite()[..., 3].max() == 0  # every layer off: fully transparent
    stages = {"detect", "features", "rank", "fusion", "select", "refine", "total"}
    assert set(layers.timings_s) >= stages
    doc = layers.to_json()
    assert len(doc["layers"]) == len(layers) and json.dumps(doc)
    # arrays and PIL images are accepted too
    with Image.open(photo) as img:
        assert len(remover(img.convert("RGB"))) == len(layers)
        assert len(remover(np.asarray(img.convert("RGB")))) == len(layers)


def test_console_script_is_installed():
    exe = shutil.which("layercut")
    if exe is None:
        pytest.skip("the layercut console script is not on PATH (run pip install -e .)")
    run = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "--keep" in run.stdout


def test_smoke_photos_if_shared_present(store_env):
    smoke = shared_root() / "data" / "eval" / "pypi_smoke"
    if not smoke.is_dir():
        pytest.skip(f"shared smoke photos not found at {smoke}")
    photos = sorted(smoke.glob("*/image.*"))[:3]
    out = store_env / "out"
    assert main([*map(str, photos), "-o", str(out), "-q", *RANDOM_DETECTOR]) == 0
    assert len(list(out.glob("*.png"))) == len(photos)


def test_cli_warns_when_nothing_at_all_is_found(store_env, tmp_path, capsys):
    flat = tmp_path / "flat.png"
    Image.new("RGB", (64, 48), (128, 128, 128)).save(flat)  # nothing to detect, map off
    out = store_env / "out"
    assert main([str(flat), "-o", str(out), *MAP_OFF]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and str(flat) in warnings[0] and "nothing found" in warnings[0]
    with Image.open(out / "flat.png") as img:
        assert np.asarray(img)[..., 3].max() == 0  # empty, and said so


def test_cli_warns_when_the_best_candidate_is_kept_rather_than_nothing(store_env, photo, capsys):
    from tests.test_keep_decision import never

    out = store_env / "out"
    model = never(store_env)  # a keep decision that keeps nothing by itself
    args = [str(photo), "-o", str(out), "--layers", *RANDOM_DETECTOR]
    assert main([*args, "--set", f"select.model={model}"]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and str(photo) in warnings[0]
    assert "rather than nothing" in warnings[0]
    manifest = json.loads((out / "bus" / "layers.json").read_text())
    assert "rather than nothing" in manifest["fallback"]
    assert sum(entry["enabled"] for entry in manifest["layers"]) == 1
    with Image.open(out / "bus.png") as img:  # not an empty PNG
        assert np.asarray(img)[..., 3].max() > 0
