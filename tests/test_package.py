"""The package a user installs: the wheel carries what the product reads at run time (presets,
weights manifest, ranker), read through ``importlib.resources``; only ``pipeline`` is importable.
``.ci/wheel-smoke`` installs that wheel into a fresh venv and runs it; this is the fast check."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from importlib.resources import files
from pathlib import Path

import pytest

from pipeline.config import CONFIGS_DIR, MODELS_DIR, load_config, ranker_path
from pipeline.weights import MANIFEST_PATH, load_manifest

REPO = Path(__file__).resolve().parents[1]


def test_run_time_data_is_read_from_the_package():
    package = files("pipeline")
    assert CONFIGS_DIR == package / "configs" and MODELS_DIR == package / "models"
    assert MANIFEST_PATH == package / "models" / "weights.json"
    assert {p.name for p in CONFIGS_DIR.iterdir()} >= {"cpu.toml", "quality.toml"}
    assert load_config("cpu").detect.weights  # a preset by name
    assert ranker_path("ranker") == MODELS_DIR / "ranker.json"
    assert "yolo11n-seg" in load_manifest(MANIFEST_PATH)
    assert not (REPO / "models").exists() and not (REPO / "configs").exists()  # one copy


@pytest.mark.slow
def test_the_wheel_carries_presets_manifest_and_ranker(tmp_path):
    src = tmp_path / "src"  # a copy, so the build leaves nothing in the checkout
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(
        REPO / "pipeline", src / "pipeline", ignore=shutil.ignore_patterns("__pycache__")
    )
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        + ["-w", str(tmp_path / "dist"), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = (tmp_path / "dist").glob("layercut-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.relative_to(REPO).as_posix() for p in CONFIGS_DIR.glob("*.toml")}
    shipped |= {p.relative_to(REPO).as_posix() for p in MODELS_DIR.glob("*.json")}
    assert shipped and shipped <= names
    tops = {n.split("/")[0] for n in names if ".dist-info/" not in n}
    assert tops == {"pipeline"}  # no top-level models/ or configs/ package
