"""``--layers`` never follows a planted symlink, and a full disk leaves no partial layer folder
and no temp file (issue 14, item 4). Through the real CLI with a random-weight detector.

``os.replace``/``rename`` over a symlink replaces the link itself; these tests plant links at
every name a run writes (and the old fixed ``.tmp`` names) and check the targets are untouched.
The full disk is simulated by making ``os.fsync`` raise ``OSError(ENOSPC)`` for one chosen file.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.cli import main

NAMES = ("layers.json", "layers.json.tmp", "composite.png", "composite.png.tmp")
LAYER_NAMES = ("01-person.png", "01-object.png", "02-person.png", "01-bus.png")


@pytest.fixture
def run(checkpoints, tmp_path, monkeypatch):
    """``run(out)`` runs ``layercut photo.jpg -o out --layers`` with a random-weight detector
    (a few instances whatever the photo) and returns the exit status."""
    monkeypatch.setenv("LAYERCUT_OFFLINE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    photo = tmp_path / "in" / "photo.jpg"
    photo.parent.mkdir()
    yy, xx = np.mgrid[0:96, 0:128]
    pixels = np.dstack([xx * 2, yy * 2, 255 - xx]).astype(np.uint8)
    pixels[30:80, 40:90] = (220, 40, 40)
    Image.fromarray(pixels).save(photo, quality=95)
    weights = checkpoints.path("yolo11n-seg")

    def run_cli(out: Path) -> int:
        return main(
            [str(photo), "-o", str(out), "-q", "--layers", "--keep", "all"]
            + ["--set", f"detect.weights={weights}", "--set", "detect.conf=0.0001"]
            + ["--set", "detect.max_det=3", "--set", "saliency.model=none"]
        )

    return run_cli


def plant(folder: Path, target: Path, names) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).symlink_to(target)


def leftovers(out: Path) -> list[str]:
    """Temp files or folders anywhere under ``out`` (they all start with a dot)."""
    return sorted(str(p.relative_to(out)) for p in out.rglob(".*"))


def test_planted_symlinks_are_replaced_never_followed(run, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("victim")
    out = tmp_path / "out"
    plant(out / "photo", victim, NAMES + LAYER_NAMES)
    (out / "photo.png").symlink_to(victim)
    assert run(out) == 0
    assert victim.read_text() == "victim"
    folder = out / "photo"
    assert folder.is_dir() and not folder.is_symlink()
    for path in [out / "photo.png", *folder.iterdir()]:
        assert path.is_file() and not path.is_symlink(), path
    manifest = json.loads((folder / "layers.json").read_text())
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [entry["file"] for entry in manifest["layers"]] + ["composite.png", "layers.json"]
    )  # the planted names are gone with the folder they were in
    assert leftovers(out) == []


def test_a_symlinked_layer_folder_is_replaced_not_written_through(run, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "layers.json").write_text("victim")
    (elsewhere / "composite.png").write_text("victim")
    out = tmp_path / "out"
    out.mkdir()
    (out / "photo").symlink_to(elsewhere, target_is_directory=True)
    assert run(out) == 0
    assert sorted(p.name for p in elsewhere.iterdir()) == ["composite.png", "layers.json"]
    assert (elsewhere / "layers.json").read_text() == "victim"
    assert (elsewhere / "composite.png").read_text() == "victim"
    assert (out / "photo").is_dir() and not (out / "photo").is_symlink()
    assert json.loads((out / "photo" / "layers.json").read_text())["layers"]


def fail_fsync_for(monkeypatch, pattern: str) -> list[str]:
    """Make ``os.fsync`` raise ENOSPC for files whose path contains ``pattern``; returns the
    list of paths it failed."""
    real_fsync = os.fsync
    failed: list[str] = []

    def fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if pattern in Path(path).name:
            failed.append(path)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return failed


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd (Linux)")
@pytest.mark.parametrize("pattern", ["01-", "composite.png", "layers.json"])
def test_a_full_disk_leaves_no_partial_layer_folder_nor_temp_file(
    run, tmp_path, monkeypatch, capsys, pattern
):
    out = tmp_path / "out"
    failed = fail_fsync_for(monkeypatch, f".{pattern}" if pattern != "01-" else ".01-")
    assert run(out) == 1
    assert failed, "the simulated full disk was never hit"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and "photo.jpg" in err[0]
    assert not (out / "photo").exists()  # no partial layer folder
    assert leftovers(out) == []  # no temp file, no temp folder


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd (Linux)")
def test_a_full_disk_on_a_rerun_keeps_the_previous_layer_folder(run, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert run(out) == 0
    before = {p.name: p.read_bytes() for p in (out / "photo").iterdir()}
    fail_fsync_for(monkeypatch, ".layers.json")
    assert run(out) == 1
    after = {p.name: p.read_bytes() for p in (out / "photo").iterdir()}
    assert after == before
    assert leftovers(out) == []
