"""Loading awkward/broken files, saving atomically, expanding batch inputs and naming outputs."""

from __future__ import annotations

import os
import time
import warnings

import numpy as np
import pytest
from PIL import Image, ImageFile

from pipeline.imageio import ImageError, image_from_array, image_from_pil, load_image
from pipeline.outputs import save_image
from tests.badfiles import bomb_png_bytes, exif_orientation_bytes, source_rgb, write_bad_files

BAD_NAMES = [
    "jpeg",
    "truncated_jpeg",
    "zero_byte",
    "text_as_jpg",
    "cmyk_jpeg",
    "png16_grey",
    "png16_rgb48",
    "palette_transparent",
    "greyscale",
    "one_bit",
    "rgba_transparent",
    "exif_rotated",
    "decompression_bomb",
    "gif_multiframe",
    "webp_animated",
    "float_tiff",
]


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    return write_bad_files(tmp_path_factory.mktemp("bad"))


@pytest.fixture(scope="module")
def photo():
    return source_rgb()


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_badfiles_cover_the_list(bad):
    assert sorted(bad) == sorted(BAD_NAMES)


@pytest.mark.parametrize("name", BAD_NAMES)
def test_each_input_loads_or_fails_with_one_line_naming_the_file(bad, name):
    path, expect = bad[name]
    if expect.outcome == "ok":
        loaded = load_image(path)
        assert loaded.rgb.shape == (*expect.hw, 3)
        assert loaded.rgb.dtype == np.uint8
        assert loaded.path == path
        if loaded.alpha is not None:
            assert loaded.alpha.shape == expect.hw and loaded.alpha.dtype == np.float32
    else:
        with pytest.raises(ImageError) as info:
            load_image(path)
        message = str(info.value)
        assert message.startswith(f"{path}: ")
        assert expect.message in message
        assert "\n" not in message
        assert isinstance(info.value, ValueError)


def test_not_an_image_even_after_ultralytics_patched_pillow(bad, monkeypatch):
    # Ultralytics replaces PIL.Image.open on import with a wrapper that tries to pip-install
    # pi-heif for unidentifiable files and then raises ModuleNotFoundError.
    # pipeline.stages.ultra undoes that, but code that imports ultralytics directly leaves the
    # patch active: re-apply it here.
    patches = pytest.importorskip("ultralytics.utils.patches")
    monkeypatch.setattr(Image, "open", patches.image_open)
    path = bad["text_as_jpg"][0]
    with pytest.raises(ImageError, match="not an image"):
        load_image(path)
    assert not patches._pil_plugins_registered  # the pi-heif install path was not taken


def test_truncated_file_is_an_error_and_pillow_setting_untouched(bad):
    with pytest.raises(ImageError, match="truncated or corrupt image data"):
        load_image(bad["truncated_jpeg"][0])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_cmyk_jpeg_colours_match_the_rgb_photo(bad, photo):
    with Image.open(bad["cmyk_jpeg"][0]) as stored:
        assert stored.mode == "CMYK" and "adobe" in stored.info  # Adobe APP14: inverted samples
    loaded = load_image(bad["cmyk_jpeg"][0])
    assert loaded.original_mode == "CMYK"
    assert mean_abs_diff(loaded.rgb, photo) < 6.0


def test_16bit_grey_is_scaled_not_clipped(bad, photo):
    loaded = load_image(bad["png16_grey"][0])
    grey8 = np.asarray(Image.fromarray(photo).convert("L"))
    assert loaded.original_mode.startswith("I;16")
    np.testing.assert_array_equal(loaded.rgb[:, :, 0], grey8)
    np.testing.assert_array_equal(loaded.rgb[:, :, 0], loaded.rgb[:, :, 2])


def test_48bit_rgb_is_scaled_to_8bit(bad, photo):
    loaded = load_image(bad["png16_rgb48"][0])
    diff = np.abs(loaded.rgb.astype(np.int16) - photo.astype(np.int16))
    assert diff.max() <= 1  # Pillow keeps the high byte: v >> 8 vs round(v / 257)


def test_palette_transparency_becomes_alpha(bad, photo):
    loaded = load_image(bad["palette_transparent"][0])
    h, w = photo.shape[:2]
    assert loaded.alpha is not None
    assert (loaded.alpha[: h // 2, : w // 2] == 0).all()
    assert (loaded.alpha[h // 2 :, :] == 1).all()
    assert mean_abs_diff(loaded.rgb[h // 2 :], photo[h // 2 :]) < 12.0  # 255-colour palette


def test_greyscale_and_one_bit(bad, photo):
    grey = load_image(bad["greyscale"][0])
    grey8 = np.asarray(Image.fromarray(photo).convert("L"))
    np.testing.assert_array_equal(grey.rgb[:, :, 1], grey8)
    assert grey.alpha is None
    one_bit = load_image(bad["one_bit"][0])
    assert set(np.unique(one_bit.rgb).tolist()) <= {0, 255}


def test_rgba_alpha_is_returned_separately(bad, photo):
    loaded = load_image(bad["rgba_transparent"][0])
    h, w = photo.shape[:2]
    assert (loaded.alpha[: h // 2, : w // 2] == 0).all()
    assert np.allclose(loaded.alpha[: h // 2, w // 2 :], 128 / 255)
    assert (loaded.alpha[h // 2 :] == 1).all()
    np.testing.assert_array_equal(loaded.rgb, photo)


def test_exif_orientation_6_loads_upright(bad, photo):
    path = bad["exif_rotated"][0]
    with Image.open(path) as stored:
        assert stored.size == (photo.shape[0], photo.shape[1])  # stored sideways: W and H swap
    loaded = load_image(path)
    assert loaded.rgb.shape == photo.shape
    assert mean_abs_diff(loaded.rgb, photo) < 6.0
    assert mean_abs_diff(loaded.rgb, photo[::-1, ::-1]) > 20.0  # not turned the wrong way


def test_bomb_refused_from_the_header_quickly(bad):
    start = time.perf_counter()
    with pytest.raises(ImageError, match=r"too large \(900000000 px > limit 150000000;"):
        load_image(bad["decompression_bomb"][0])
    assert time.perf_counter() - start < 1.0


def test_own_pixel_limit_and_no_pillow_warning_leaks(tmp_path, bad):
    with pytest.raises(ImageError, match=r"too large \(43200 px > limit 1000;"):
        load_image(bad["jpeg"][0], max_image_px=1000)
    # 95 MP: above Pillow's warning threshold (89.5 MP), below its error threshold
    big = tmp_path / "big.png"
    big.write_bytes(bomb_png_bytes(9747))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageError, match="too large"):
            load_image(big, max_image_px=90_000_000)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]


def test_multiframe_first_frame(bad, photo):
    gif = load_image(bad["gif_multiframe"][0])
    assert mean_abs_diff(gif.rgb, photo) < 20.0  # GIF palette, but the photo, not flat red
    webp = load_image(bad["webp_animated"][0])
    np.testing.assert_array_equal(webp.rgb, photo)  # lossless frame


def test_float_image(bad, photo):
    loaded = load_image(bad["float_tiff"][0])
    grey8 = np.asarray(Image.fromarray(photo).convert("L")).astype(np.int16)
    assert loaded.original_mode == "F"
    assert np.abs(loaded.rgb[:, :, 0].astype(np.int16) - grey8).max() <= 1


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageError, match="nope.jpg: no such file"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="is a directory"):
        load_image(tmp_path)


def test_image_error_is_one_line():
    error = ImageError("a.png", "bad\nthing\n  here")
    assert str(error) == "a.png: bad thing here"


def test_image_from_array_dtypes_and_shapes():
    u16 = np.array([[[0, 257, 65535]]], np.uint16)
    np.testing.assert_array_equal(image_from_array(u16).rgb, [[[0, 1, 255]]])
    grey = image_from_array(np.full((2, 3), 7, np.uint8))
    assert grey.rgb.shape == (2, 3, 3) and (grey.rgb == 7).all() and grey.alpha is None
    rgba = np.zeros((2, 2, 4), np.float32)
    rgba[..., 3] = [[0.0, 0.5], [1.0, 1.0]]
    loaded = image_from_array(rgba)
    np.testing.assert_allclose(loaded.alpha, [[0, 128 / 255], [1, 1]], atol=1e-6)
    opaque = image_from_array(np.full((2, 2, 4), 255, np.uint8))
    assert opaque.alpha is None
    with pytest.raises(ValueError, match=r"\(2, 2, 2\)"):
        image_from_array(np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        image_from_array(np.full((2, 2, 3), 200.0, np.float32))


def test_image_from_pil_la_and_exif(tmp_path, photo):
    la = Image.fromarray(np.dstack([np.full((4, 5), 9, np.uint8), np.zeros((4, 5), np.uint8)]))
    assert la.mode == "LA"
    loaded = image_from_pil(la)
    assert loaded.rgb.shape == (4, 5, 3) and (loaded.alpha == 0).all()
    path = tmp_path / "rot.jpg"
    sideways = Image.fromarray(photo).transpose(Image.Transpose.ROTATE_90)
    sideways.save(path, quality=92, exif=exif_orientation_bytes(6))
    with Image.open(path) as img:
        assert image_from_pil(img).rgb.shape == photo.shape


# -- saving ---------------------------------------------------------------------------------------
def rgba_sample(photo: np.ndarray) -> np.ndarray:
    alpha = np.zeros(photo.shape[:2], np.uint8)
    alpha[20:-20, 30:-30] = 255
    alpha[20:-20, 30:40] = 100
    return np.dstack([photo, alpha])


def test_save_png_round_trip_leaves_no_temp_file(tmp_path, photo):
    rgba = rgba_sample(photo)
    out = save_image(tmp_path / "out.png", rgba, "png")
    assert os.listdir(tmp_path) == ["out.png"]
    with Image.open(out) as img:
        assert img.format == "PNG" and img.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(img), rgba)


def test_save_webp_keeps_alpha_lossless(tmp_path, photo):
    rgba = rgba_sample(photo)
    out = save_image(tmp_path / "out.webp", rgba, "webp", webp_quality=90)
    assert os.listdir(tmp_path) == ["out.webp"]
    with Image.open(out) as img:
        assert img.format == "WEBP" and img.mode == "RGBA"
        back = np.asarray(img)
    np.testing.assert_array_equal(back[:, :, 3], rgba[:, :, 3])
    opaque = rgba[:, :, 3] == 255
    assert mean_abs_diff(back[opaque][:, :3], rgba[opaque][:, :3]) < 6.0


def test_failed_write_keeps_old_file_and_no_temp(tmp_path, photo, monkeypatch):
    target = tmp_path / "out.png"
    target.write_bytes(b"previous")

    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"half a png")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_image(target, rgba_sample(photo))
    assert target.read_bytes() == b"previous"
    assert os.listdir(tmp_path) == ["out.png"]


def test_save_refuses_to_overwrite_an_input(tmp_path, photo):
    source = tmp_path / "in.png"
    source.write_bytes(b"input")
    rgba = rgba_sample(photo)
    with pytest.raises(ValueError, match="refusing to overwrite an input"):
        save_image(source, rgba, protect=[source])
    link = tmp_path / "link.png"
    link.symlink_to(source)
    with pytest.raises(ValueError, match="refusing"):
        save_image(link, rgba, protect=[source])
    hard = tmp_path / "hard.png"
    os.link(source, hard)
    with pytest.raises(ValueError, match="refusing"):
        save_image(hard, rgba, protect=[source])
    assert source.read_bytes() == b"input"
    save_image(tmp_path / "other.png", rgba, protect=[source])  # a different file is fine


def test_save_validates_array_and_format(tmp_path, photo):
    with pytest.raises(ValueError, match=r"H×W×4, got shape \(240, 180, 3\)"):
        save_image(tmp_path / "a.png", photo)
    with pytest.raises(ValueError, match="unknown output format 'jpg'"):
        save_image(tmp_path / "a.jpg", rgba_sample(photo), "jpg")
    assert os.listdir(tmp_path) == []
