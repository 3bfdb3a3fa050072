"""The one output path: the format table, ``encode``, the atomic writer, and the files of a
layer set written by ``Layers.save`` and by the server's ZIP."""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from pipeline.cli import build_parser
from pipeline.fakes import FakeRemover
from pipeline.outputs import (
    FORMAT_NAMES,
    FORMATS,
    OutputFormat,
    encode,
    get_format,
    save_image,
    write_file,
)
from pipeline.serve.app import create_app
from pipeline.serve.encode import layers_zip


def photo(h: int = 48, w: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.dstack([xx * 255 // w, yy * 255 // h, (xx + yy) % 256]).astype(np.uint8)


def rgba_sample(h: int = 48, w: int = 64) -> np.ndarray:
    alpha = np.zeros((h, w), np.uint8)
    alpha[8:-8, 10:-10] = 255
    alpha[8:-8, 10:20] = 100
    return np.dstack([photo(h, w), alpha])


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# -- the table drives every choice ----------------------------------------------------------
def test_cli_and_server_take_their_format_choices_from_the_table():
    (action,) = [a for a in build_parser()._actions if a.dest == "format"]
    assert tuple(action.choices) == FORMAT_NAMES == tuple(FORMATS)
    with TestClient(create_app([FakeRemover()])) as client:
        assert client.get("/v1/models").json()["formats"] == [*FORMAT_NAMES, "json"]
        spec = client.get("/openapi.json").json()
    params = spec["paths"]["/v1/remove"]["post"]["parameters"]
    (fmt,) = [p for p in params if p["name"] == "format"]
    schema = fmt["schema"]
    enum = (
        schema.get("enum") or spec["components"]["schemas"][schema["$ref"].split("/")[-1]]["enum"]
    )
    assert enum == [*FORMAT_NAMES, "json"]


def test_every_table_entry_is_consistent():
    for name, spec in FORMATS.items():
        assert spec.name == name
        assert spec.extension in Image.registered_extensions()
        assert Image.registered_extensions()[spec.extension] == spec.pillow_format
        assert spec.media_type.startswith("image/") and spec.mode in ("RGBA", "RGB", "L")
        data = encode(rgba_sample(), name)
        with decoded(data) as image:
            assert image.format == spec.pillow_format and image.mode == spec.mode
            assert Image.MIME[image.format] == spec.media_type
    assert get_format("PNG") is FORMATS["png"]
    with pytest.raises(ValueError, match="unknown output format 'gif'; expected one of: png"):
        get_format("gif")


# -- encode ---------------------------------------------------------------------------------
def test_png_round_trips_exactly_rgba_and_rgb():
    rgba = rgba_sample()
    with decoded(encode(rgba, "png", png_compress_level=0)) as image:
        assert image.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(image), rgba)
    small = encode(rgba, "png", png_compress_level=9)
    assert len(small) < len(encode(rgba, "png", png_compress_level=0))  # the level is applied
    with decoded(encode(photo(), "png")) as image:  # H×W×3: written opaque, as RGB
        assert image.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(image), photo())


def test_webp_keeps_alpha_lossless_and_colour_close():
    rgba = rgba_sample()
    with decoded(encode(rgba, "webp", webp_quality=90)) as image:
        assert image.mode == "RGBA"
        back = np.asarray(image)
    np.testing.assert_array_equal(back[..., 3], rgba[..., 3])
    opaque = rgba[..., 3] == 255
    diff = np.abs(back[opaque][:, :3].astype(int) - rgba[opaque][:, :3].astype(int))
    assert diff.mean() < 6.0
    worse = encode(rgba, "webp", webp_quality=5)
    assert len(worse) < len(encode(rgba, "webp", webp_quality=95))  # the quality is applied


def test_the_table_can_express_mask_and_opaque_outputs():
    mask_png = OutputFormat("mask", "mask", "PNG", ".png", "image/png", "L", FORMATS["png"].options)
    opaque_png = OutputFormat(
        "flat", "flat", "PNG", ".png", "image/png", "RGB", FORMATS["png"].options
    )
    rgba = rgba_sample()
    with decoded(encode(rgba, mask_png)) as image:
        assert image.mode == "L"
        np.testing.assert_array_equal(np.asarray(image), rgba[..., 3])
    assert not mask_png.carries_alpha and FORMATS["png"].carries_alpha
    with pytest.raises(ValueError, match="needs the background filled"):
        encode(rgba, opaque_png)
    filled = rgba.copy()
    filled[..., 3] = 255
    with decoded(encode(filled, opaque_png)) as image:
        assert image.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(image), filled[..., :3])
    with pytest.raises(ValueError, match="needs the alpha"):
        encode(photo(), mask_png)


def test_encode_refuses_bad_input_with_the_reason():
    with pytest.raises(ValueError, match="uint8"):
        encode(rgba_sample().astype(np.float32), "png")
    with pytest.raises(ValueError, match=r"got shape \(48, 64, 2\)"):
        encode(np.zeros((48, 64, 2), np.uint8), "png")
    with pytest.raises(ValueError, match=r"got shape \(0, 64, 4\)"):
        encode(np.zeros((0, 64, 4), np.uint8), "png")
    with pytest.raises(ValueError, match="png_compress_level must be in 0..9"):
        encode(rgba_sample(), "png", png_compress_level=10)
    with pytest.raises(ValueError, match="webp_quality must be in 0..100"):
        encode(rgba_sample(), "webp", webp_quality=101)
    with pytest.raises(ValueError, match="WebP is limited to 16383 px per side"):
        encode(np.zeros((1, 16384, 4), np.uint8), "webp")


# -- the atomic writer ----------------------------------------------------------------------
def test_write_file_replaces_atomically_and_leaves_no_temp_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    target.write_bytes(b"previous")
    assert write_file(target, b"new") == target and target.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["out.png"]
    assert target.stat().st_mode & 0o777 == 0o644

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_file(target, b"half")
    assert target.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["out.png"]  # the temp file went too


def test_write_file_never_writes_through_a_symlink(tmp_path, monkeypatch):
    victim = tmp_path / "victim.jpg"
    victim.write_bytes(b"an input photo")
    out = tmp_path / "out"
    out.mkdir()
    # a link at the output name itself is replaced, not followed
    (out / "a.png").symlink_to(victim)
    write_file(out / "a.png", b"result")
    assert victim.read_bytes() == b"an input photo"
    assert not (out / "a.png").is_symlink() and (out / "a.png").read_bytes() == b"result"
    # a link planted at the temp name the writer draws first is skipped, not followed
    if not hasattr(tempfile, "_get_candidate_names"):
        pytest.skip("this Python's tempfile draws names differently")
    planted = out / ".b.png.fixed.tmp"
    planted.symlink_to(victim)
    names = iter(["fixed", "other"])
    monkeypatch.setattr(tempfile, "_get_candidate_names", lambda: names)
    write_file(out / "b.png", b"result")
    assert victim.read_bytes() == b"an input photo" and planted.is_symlink()
    assert (out / "b.png").read_bytes() == b"result"
    assert sorted(os.listdir(out)) == [".b.png.fixed.tmp", "a.png", "b.png"]


def test_write_file_and_save_image_refuse_to_overwrite_an_input(tmp_path):
    source = tmp_path / "in.png"
    source.write_bytes(b"input")
    link = tmp_path / "link.png"
    link.symlink_to(source)
    for path in (source, link):
        with pytest.raises(ValueError, match="refusing to overwrite an input"):
            write_file(path, b"x", protect=[source])
        with pytest.raises(ValueError, match="refusing to overwrite an input"):
            save_image(path, rgba_sample(), protect=[source])
    assert source.read_bytes() == b"input"


# -- the files of a layer set -----------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_save_and_zip_write_the_same_files(fmt, tmp_path):
    layers = FakeRemover().run(photo(96, 128), keep="all")
    files = dict(layers.files(fmt, png_compress_level=1, webp_quality=80))
    ext = FORMATS[fmt].extension
    names = [f"01-person{ext}", f"02-dog{ext}", f"03-bag{ext}", f"04-cup{ext}"]
    assert list(files) == [*names, f"composite{ext}", "layers.json"]
    written = layers.save(tmp_path / "out", fmt, png_compress_level=1, webp_quality=80)
    assert [p.name for p in written] == list(files)
    assert sorted(os.listdir(tmp_path / "out")) == sorted(files)  # nothing else, no temp file
    for path in written:
        assert path.read_bytes() == files[path.name], path.name
    archive = zipfile.ZipFile(io.BytesIO(layers_zip(layers, fmt, webp_quality=80)))
    assert archive.namelist() == list(files)
    for name in names + [f"composite{ext}"]:
        assert archive.read(name) == files[name], name
    manifest = json.loads(files["layers.json"])
    zipped = json.loads(archive.read("layers.json"))
    for doc in (manifest, zipped):
        doc.pop("timings_s")  # the ZIP mattes every layer first and counts that time
    assert manifest == zipped
    assert [entry["file"] for entry in manifest["layers"]] == names
    assert manifest["composite"] == f"composite{ext}"
    with Image.open(tmp_path / "out" / names[0]) as image:
        assert image.size == (128, 96) and image.mode == FORMATS[fmt].mode


def test_zip_with_debug_adds_the_debug_view(tmp_path):
    layers = FakeRemover().run(photo(96, 128))
    archive = zipfile.ZipFile(io.BytesIO(layers_zip(layers, "png", debug=True)))
    names = archive.namelist()
    assert names[-2:] == ["debug.png", "layers.json"]
    assert json.loads(archive.read("layers.json"))["debug"] == "debug.png"
    with decoded(archive.read("debug.png")) as image:
        assert image.mode == "RGB" and image.width >= 128


def test_layers_save_never_follows_a_planted_json_temp_link(tmp_path):
    victim = tmp_path / "victim.jpg"
    victim.write_bytes(b"an input photo")
    out = tmp_path / "out"
    out.mkdir()
    (out / "layers.json.tmp").symlink_to(victim)  # the fixed temp name an older writer used
    (out / "layers.json").symlink_to(victim)
    layers = FakeRemover().run(photo())
    layers.save(out, protect=[tmp_path / "elsewhere.jpg"])
    assert victim.read_bytes() == b"an input photo"
    assert json.loads((out / "layers.json").read_text())["width"] == 64
    # the folder is replaced as a whole: one holding an input is refused, input kept
    with pytest.raises(ValueError, match="refusing to replace a folder that holds an input"):
        layers.save(out, protect=[out / "composite.png"])
    assert (out / "composite.png").is_file()
