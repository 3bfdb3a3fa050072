"""rembg's everyday habits through the real CLI (``pipeline.cli.main`` in process, or
``python -m pipeline.cli`` in a subprocess) and the real networks with random weights:
``-`` in and out, ``-o FILE``, ``--mask``, ``--background``, the input tree kept, ``--skip-
existing``, no self-reading, ``--device cuda`` without CUDA, an unusable ``-o``, and a ``--help``
that imports no torch. Random weights give meaningless masks: these tests check files, modes and
how the mask, the cut-out and the background agree, never quality."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.cli import main
from pipeline.imageio import DECODED_TITLES
from tests.checkpoints import MAP_OFF

REPO = Path(__file__).resolve().parents[1]
# A random YOLO finds nothing at ordinary thresholds: take its top few proposals instead.
# no salient map with random weights: tests.checkpoints.MAP_OFF
RANDOM_DETECTOR = ["--set", "detect.conf=0.0001", "--set", "detect.max_det=3", *MAP_OFF]


def bus_photo() -> Path:
    import ultralytics

    return Path(ultralytics.__file__).parent / "assets" / "bus.jpg"


@pytest.fixture
def env(checkpoints, tmp_path, monkeypatch):
    """The weights store on the random-weight manifest, an empty cache, offline afterwards."""
    manifest = checkpoints.manifest(["yolo11n-seg"])
    monkeypatch.setenv("LAYERCUT_MANIFEST", str(manifest))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("LAYERCUT_WEIGHTS", raising=False)
    monkeypatch.delenv("LAYERCUT_OFFLINE", raising=False)
    return {k: v for k, v in os.environ.items() if k != "LAYERCUT_WEIGHTS"}


@pytest.fixture
def photo(tmp_path) -> Path:
    """A small copy of bus.jpg (keeps matting fast)."""
    path = tmp_path / "bus.jpg"
    with Image.open(bus_photo()) as img:
        img.convert("RGB").resize((150, 200)).save(path, quality=92)
    return path


def run(*argv) -> int:
    return main([*map(str, argv), "-q", *RANDOM_DETECTOR])


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def subprocess_cli(args, env, stdin: bytes | None = None, timeout: int = 300):
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *map(str, args)],
        input=stdin,
        capture_output=True,
        env={**env, "PYTHONPATH": str(REPO)},
        cwd=REPO,
        timeout=timeout,
    )


def test_output_file_mask_and_background_agree(env, photo, tmp_path):
    out = tmp_path / "out"
    assert run(photo, "-o", out / "cut.png") == 0
    assert sorted(os.listdir(out)) == ["cut.png"]  # a file, not a folder
    cut = pixels(out / "cut.png")
    assert cut.shape == (200, 150, 4)
    assert run(photo, "-o", out / "mask.png", "--mask") == 0
    mask = pixels(out / "mask.png")
    with Image.open(out / "mask.png") as image:
        assert image.mode == "L"
    np.testing.assert_array_equal(mask, cut[..., 3])  # the mask is the cut-out's alpha
    assert (mask == 0).any(), "random weights kept the whole photo: nothing to check"

    assert run(photo, "-o", out / "green.png", "--background", "#00ff00") == 0
    with Image.open(out / "green.png") as image:
        assert image.mode == "RGB"  # no alpha
        green = np.asarray(image)
    assert (green[mask == 0] == [0, 255, 0]).all()
    np.testing.assert_array_equal(green[mask == 255], cut[mask == 255][:, :3])

    # wider than the photo: scaled ×2 to cover its height, centred, the sides cropped, so the
    # red/blue seam at x = 200 lands at x = 75
    back = np.zeros((100, 400, 3), np.uint8)
    back[:, :200] = (255, 0, 0)
    back[:, 200:] = (0, 0, 255)
    Image.fromarray(back).save(tmp_path / "back.png")
    assert run(photo, "-o", out / "on-image.png", "--background", tmp_path / "back.png") == 0
    on_image = pixels(out / "on-image.png").astype(int)
    left, right = np.zeros_like(mask, bool), np.zeros_like(mask, bool)
    left[:, :65], right[:, 85:] = True, True  # away from the seam (Lanczos spreads it ±6 px)
    assert (np.abs(on_image[(mask == 0) & left] - [255, 0, 0]).max(axis=1) <= 2).all()
    assert (np.abs(on_image[(mask == 0) & right] - [0, 0, 255]).max(axis=1) <= 2).all()

    assert run(photo, "-o", out / "blur.webp", "--background", "blur") == 0
    with Image.open(out / "blur.webp") as image:
        assert image.format == "WEBP" and image.mode == "RGB" and image.size == (150, 200)
        blurred = np.asarray(image).astype(float)
    original = pixels(photo).astype(float)
    rough = np.abs(np.diff(original, axis=1)).mean(axis=2)[:, :-1][mask[:, :-2] == 0]
    smooth = np.abs(np.diff(blurred, axis=1)).mean(axis=2)[:, :-1][mask[:, :-2] == 0]
    assert smooth.mean() < 0.5 * rough.mean()  # the background is a blurred photo


def test_stdin_to_stdout_is_the_same_cut_out(env, photo, tmp_path):
    assert run(photo, "-o", tmp_path / "file.png") == 0
    done = subprocess_cli(["-", "-o", "-", "-q", *RANDOM_DETECTOR], env, photo.read_bytes())
    assert done.returncode == 0, done.stderr.decode()
    assert done.stderr.decode().strip() == ""
    with Image.open(io.BytesIO(done.stdout)) as image:
        assert image.format == "PNG" and image.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(image), pixels(tmp_path / "file.png"))
    bad = subprocess_cli(["-", "-q", *RANDOM_DETECTOR], env, b"not an image")  # -o defaults to -
    assert bad.returncode == 1 and bad.stdout == b""
    unknown = f"not an image in a supported format (unrecognised data; decoded: {DECODED_TITLES})"
    assert bad.stderr.decode().strip() == f"<stdin>: {unknown}"


def test_folder_tree_skip_existing_and_no_self_reading(env, photo, tmp_path, capsys):
    tree = tmp_path / "in"
    for rel in ("a/x.jpg", "b/x.jpg", "b/c/y.png"):
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.open(photo).save(tree / rel)
    out = tree / "cut"  # inside the input folder
    assert run(tree, "-o", out) == 0
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["a/x.png", "b/c/y.png", "b/x.png"]
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    (out / "b" / "x.png").unlink()
    assert main([str(tree), "-o", str(out), "--skip-existing", *RANDOM_DETECTOR]) == 0
    assert "done 1, skipped 2 (done before), failed 0" in capsys.readouterr().err
    assert (out / "b" / "x.png").is_file()
    for path in (out / "a" / "x.png", out / "b" / "c" / "y.png"):
        assert path.stat().st_mtime_ns == stamps[path]  # not redone
    assert run(tree, "-o", out) == 0  # a rerun into OUT inside the input: same files, no more
    again = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert again == files
    assert run(tree, "-o", tree) == 2  # OUT the input folder itself: refused
    assert "is the input folder" in capsys.readouterr().err


def test_interrupted_batch_exits_130_without_partial_files(env, photo, tmp_path, monkeypatch):
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / "in").mkdir(exist_ok=True)
        Image.open(photo).save(tmp_path / "in" / name)

    def ctrl_c(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", ctrl_c)  # Ctrl-C while the first output is written
    assert run(tmp_path / "in", "-o", tmp_path / "out") == 130
    assert list((tmp_path / "out").rglob("*")) == []


def clean_env(tmp_path) -> dict[str, str]:
    """No weights anywhere and no downloads: a run that got as far as weights would fail with
    exit 1 naming them, so exit 2 proves the check came first."""
    keep = ("PATH", "HOME", "LANG", "SYSTEMROOT")
    env = {k: v for k, v in os.environ.items() if k in keep}
    return {**env, "XDG_CACHE_HOME": str(tmp_path / "empty"), "LAYERCUT_OFFLINE": "1"}


def test_device_cuda_without_cuda_is_one_line_exit_2(photo, tmp_path):
    env = {**clean_env(tmp_path), "CUDA_VISIBLE_DEVICES": ""}  # no GPU, even on a GPU machine
    done = subprocess_cli([photo, "-o", tmp_path / "o.png", "--device", "cuda"], env, timeout=120)
    lines = done.stderr.decode().strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr.decode()
    assert "CUDA is not available" in lines[0] and "--device cpu" in lines[0]
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize(
    ("output", "message"),
    [("notes.txt", "exists and is not a folder"), ("notes.txt/sub", "cannot create the folder")],
)
def test_unusable_output_fails_at_start(photo, tmp_path, capsys, monkeypatch, output, message):
    monkeypatch.setenv("LAYERCUT_OFFLINE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty"))  # exit 1 if weights were tried
    (tmp_path / "notes.txt").write_text("a file")
    assert main([str(photo), "-o", str(tmp_path / output)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and output in lines[0]


def test_help_imports_no_torch(tmp_path):
    code = (
        "import sys\nfrom pipeline.cli import main\nassert main(['--help']) == 0\n"
        "heavy = [m for m in ('torch', 'ultralytics', 'cv2', 'scipy', 'pymatting', 'sklearn', "
        "'onnxruntime') if m in sys.modules]\nprint('HEAVY', heavy)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**clean_env(tmp_path), "PYTHONPATH": str(REPO)},
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout
    for option in ("--mask", "--background", "--skip-existing", "standard output"):
        assert option in done.stdout
