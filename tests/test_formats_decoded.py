"""Only the documented image formats are decoded, in the CLI, the Python API and the server
(issue 14, item 3), and a broken file of a decoded format is "corrupt", not "unsupported".

The EPS cases put a stub ``gs`` first on ``PATH`` that creates a flag file: Pillow's EPS plugin
runs Ghostscript to decode, so the flag proves whether a decoder outside the list was reached.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from pipeline.api import Remover
from pipeline.config import Config
from pipeline.fakes import FakeRemover
from pipeline.imageio import ImageError, load_image
from pipeline.serve.app import create_app

REPO = Path(__file__).resolve().parents[1]
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
# Pillow format → file name; each is written by Pillow itself, so each is a valid file
REFUSED = {
    "TGA": "x.tga",
    "SGI": "x.sgi",
    "PCX": "x.pcx",
    "DDS": "x.dds",
    "ICO": "x.ico",
    "JPEG2000": "x.jp2",
    "PPM": "x.ppm",
    "QOI": "x.qoi",
}


def pixels(h: int = 24, w: int = 32) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.dstack([xx * 8, yy * 10, (xx + yy) % 256]).astype(np.uint8)


def encoded(fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image = Image.fromarray(pixels())
    if fmt == "MPO":  # a phone-camera JPEG with a second picture
        image.save(out, "MPO", save_all=True, append_images=[image])
    else:
        image.save(out, fmt, **options)
    return out.getvalue()


def png_with_bad_crc() -> bytes:
    data = bytearray(encoded("PNG"))
    data[29] ^= 0xFF  # last byte of the IHDR chunk's CRC
    assert zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF != int.from_bytes(data[29:33], "big")
    return bytes(data)


@pytest.fixture
def fake_gs(tmp_path, monkeypatch) -> Path:
    """A ``gs`` first on PATH that leaves ``GS_RAN`` behind; returns that flag's path."""
    folder = tmp_path / "bin"
    folder.mkdir()
    flag = tmp_path / "GS_RAN"
    gs = folder / "gs"
    gs.write_text(f"#!/bin/sh\ntouch {flag}\nexit 1\n")
    gs.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return flag


class NoStage:
    """Any stage: fails the test if the pipeline gets past decoding."""

    def __getattr__(self, name):
        raise AssertionError("an undecodable input reached the pipeline")


def api() -> Remover:
    stage = NoStage()
    return Remover(
        Config(),
        detector=stage,
        segmenter=stage,
        saliency=stage,
        ranker=stage,
        selector=stage,
        refiner=stage,
    )


@pytest.mark.parametrize("fmt", sorted(REFUSED))
def test_api_refuses_other_pillow_formats_naming_the_file(tmp_path, fmt):
    path = tmp_path / REFUSED[fmt]
    path.write_bytes(encoded(fmt))
    with Image.open(path) as check:  # Pillow itself would read it
        assert min(check.size) > 0
    with pytest.raises(ImageError) as info:
        api()(path)
    message = str(info.value)
    assert message.startswith(f"{path}: not ") and "supported" in message and "\n" not in message


def test_eps_never_reaches_ghostscript_through_the_api(tmp_path, fake_gs):
    for name in ("x.eps", "disguised.jpg"):
        path = tmp_path / name
        path.write_bytes(EPS)
        with pytest.raises(ImageError, match=rf"{name}: not a supported image format \(EPS"):
            api()(path)
    assert not fake_gs.exists()


@pytest.mark.parametrize("fmt", ["JPEG", "MPO", "PNG", "WEBP", "TIFF", "BMP", "GIF"])
def test_documented_formats_are_decoded(tmp_path, fmt):
    path = tmp_path / f"x.{fmt.lower()}"
    path.write_bytes(encoded(fmt))
    loaded = load_image(path)
    assert loaded.rgb.shape == (24, 32, 3)


def test_png_with_a_bad_crc_is_corrupt_not_unsupported(tmp_path):
    path = tmp_path / "bad.png"
    path.write_bytes(png_with_bad_crc())
    with pytest.raises(ImageError, match=r"bad\.png: corrupt PNG data"):
        load_image(path)


def test_cli_refuses_eps_without_ghostscript_and_goes_on(checkpoints, tmp_path, fake_gs):
    """Two EPS files (one named .jpg) and a TGA fail one line each; the JPEG beside them is
    processed; Ghostscript never runs."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "x.eps").write_bytes(EPS)
    (inputs / "y.jpg").write_bytes(EPS)
    (inputs / "z.tga").write_bytes(encoded("TGA"))
    (inputs / "ok.jpg").write_bytes(encoded("JPEG"))
    weights = checkpoints.path("yolo11n-seg")
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *sorted(map(str, inputs.iterdir()))]
        + ["-o", str(tmp_path / "out"), "-q", "--set", f"detect.weights={weights}"]
        + ["--set", "saliency.model=none", "--set", "refine.method=none"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={**os.environ, "LAYERCUT_OFFLINE": "1", "YOLO_AUTOINSTALL": "false"},
    )
    assert not fake_gs.exists()
    assert result.returncode == 1, result.stderr
    # one line per refused file (the blank photo's "nothing found" warning aside)
    lines = [line for line in result.stderr.splitlines() if line.strip() and "warning:" not in line]
    assert len(lines) == 3, lines
    assert any(
        line.startswith(f"{inputs / 'x.eps'}: not a supported image format (EPS") for line in lines
    )
    assert any(
        line.startswith(f"{inputs / 'y.jpg'}: not a supported image format (EPS") for line in lines
    )
    assert any(
        line.startswith(f"{inputs / 'z.tga'}: not a supported image format (TGA") for line in lines
    )
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["ok.png"]


@pytest.fixture
def client(tmp_path):
    app = create_app([FakeRemover()], tmp_dir=str(tmp_path))
    with TestClient(app) as test_client:
        yield test_client


def test_server_refuses_eps_and_other_formats_with_415(client, fake_gs):
    for name, data in [("x.eps", EPS), ("x.tga", encoded("TGA")), ("x.ico", encoded("ICO"))]:
        response = client.post("/v1/remove", files={"file": (name, data, "image/png")})
        assert response.status_code == 415, response.text
        assert response.json()["error"] == "unsupported media type"
        assert "not a supported image format" in response.json()["detail"]
    assert not fake_gs.exists()


def test_server_bad_crc_is_400_corrupt_and_mpo_is_decoded(client):
    response = client.post("/v1/remove", content=png_with_bad_crc())
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "bad image"
    assert "corrupt PNG data" in response.json()["detail"]
    response = client.post("/v1/remove", content=encoded("MPO"))
    assert response.status_code == 200, response.text
