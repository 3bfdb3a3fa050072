"""Backgrounds (``pipeline.background``, ``Layers.composite(background=...)``) and the server's
``background`` and ``mask`` queries, on the fake pipeline's known geometry."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from pipeline.background import BLUR, fill, over, parse_background
from pipeline.fakes import FakeRemover
from pipeline.serve.app import create_app


def photo(h: int = 96, w: int = 128) -> np.ndarray:
    """A colour gradient with a fine checker on top (so a blur visibly smooths it)."""
    yy, xx = np.mgrid[0:h, 0:w]
    checker = ((xx // 2 + yy // 2) % 2) * 60
    return np.dstack([xx * 190 // w + checker, yy * 190 // h + checker, checker + 40]).astype(
        np.uint8
    )


@pytest.mark.parametrize(
    ("spec", "rgb"),
    [
        ("white", (255, 255, 255)),
        ("#00ff00", (0, 255, 0)),
        ("#0f0", (0, 255, 0)),
        (" rgb(1, 2, 3) ", (1, 2, 3)),
        ((10, 20, 30), (10, 20, 30)),
        ([0, 0, 255], (0, 0, 255)),
    ],
)
def test_colours_parse_to_rgb(spec, rgb):
    assert parse_background(spec) == rgb


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("#00ff0080", "must be opaque"),
        ((0, 0, 256), r"\(r, g, b\) ints in 0..255"),
        ((0, 0), r"\(r, g, b\) ints in 0..255"),
        ((0.5, 0, 0), r"\(r, g, b\) ints in 0..255"),
        ("", "must be a colour, 'blur' or an image"),
        ("no-such-colour-or-file", "is not a colour, 'blur' or an existing image file"),
        (np.zeros((4, 4), np.uint8), "must be H×W×3 uint8"),
        (np.zeros((4, 4, 4), np.uint8), "must be opaque"),
    ],
)
def test_bad_backgrounds_are_one_value_error(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_background(spec)


def test_a_server_never_takes_a_path(tmp_path):
    picture = tmp_path / "back.png"
    Image.fromarray(photo(8, 8)).save(picture)
    assert parse_background(str(picture)).shape == (8, 8, 3)  # the CLI reads files …
    with pytest.raises(ValueError, match="must be a colour or 'blur'"):
        parse_background(str(picture), files=False)  # … a server's query never does
    assert parse_background("BLUR", files=False) == BLUR


def test_an_image_is_scaled_to_cover_and_centred():
    tall = np.zeros((400, 100, 3), np.uint8)  # 4:1 for a 1:2 photo: scaled ×2, rows cropped
    tall[:200] = (255, 0, 0)
    tall[200:] = (0, 0, 255)
    out = fill(parse_background(tall), photo(100, 200))
    assert out.shape == (100, 200, 3) and out.dtype == np.uint8
    # rows 350..450 of the 800 scaled rows are kept: the seam (source row 200) is at row 50,
    # spread over ±6 rows by the Lanczos filter
    assert np.abs(out[:40].astype(int) - [255, 0, 0]).max() <= 2
    assert np.abs(out[60:].astype(int) - [0, 0, 255]).max() <= 2


def test_blur_smooths_the_photo_and_keeps_its_colours():
    image = photo()
    blurred = fill(BLUR, image).astype(float)
    assert blurred.shape == image.shape
    assert (
        np.abs(np.diff(blurred, axis=1)).mean()
        < 0.2 * np.abs(np.diff(image.astype(float), axis=1)).mean()
    )
    assert abs(blurred.mean() - image.mean()) < 3.0


def test_over_is_alpha_blending():
    colour = np.full((2, 3, 3), 200.0, np.float32)
    alpha = np.array([[0.0, 0.5, 1.0], [1.0, 0.25, 0.0]], np.float32)
    out = over(colour, alpha, (0, 100, 40), np.zeros((2, 3, 3), np.uint8))
    assert out.dtype == np.uint8 and out.shape == (2, 3, 3)
    np.testing.assert_array_equal(out[0, 0], [0, 100, 40])
    np.testing.assert_array_equal(out[0, 1], [100, 150, 120])
    np.testing.assert_array_equal(out[0, 2], [200, 200, 200])
    np.testing.assert_array_equal(out[1, 1], [50, 125, 80])


def test_layers_composite_over_a_background_has_no_alpha():
    layers = FakeRemover().run(photo())
    rgba = layers.composite()
    rgb = layers.composite(background="#102030")
    assert rgb.shape == (96, 128, 3) and rgb.dtype == np.uint8
    clear, solid = rgba[..., 3] == 0, rgba[..., 3] == 255
    assert clear.any() and solid.any()
    assert (rgb[clear] == [16, 32, 48]).all()
    np.testing.assert_array_equal(rgb[solid], rgba[solid][:, :3])
    on_blur = layers.composite(background="blur")
    np.testing.assert_array_equal(on_blur[solid], rgba[solid][:, :3])
    assert not np.array_equal(on_blur[clear], photo()[clear])


def encoded(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def test_server_background_and_mask_queries():
    body = encoded(photo())
    with TestClient(create_app([FakeRemover()])) as client:
        plain = client.post("/v1/remove", content=body)
        with Image.open(io.BytesIO(plain.content)) as image:
            rgba = np.asarray(image)
        green = client.post("/v1/remove", params={"background": "#00ff00"}, content=body)
        assert green.status_code == 200 and green.headers["content-type"] == "image/png"
        with Image.open(io.BytesIO(green.content)) as image:
            assert image.mode == "RGB"
            assert (np.asarray(image)[rgba[..., 3] == 0] == [0, 255, 0]).all()
        blur = client.post(
            "/v1/remove", params={"background": "blur", "format": "webp"}, content=body
        )
        assert blur.status_code == 200 and blur.headers["content-type"] == "image/webp"
        mask = client.post("/v1/remove", params={"mask": "true"}, content=body)
        with Image.open(io.BytesIO(mask.content)) as image:
            assert image.mode == "L"
            np.testing.assert_array_equal(np.asarray(image), rgba[..., 3])
        for params, detail in [
            ({"background": "/etc/passwd"}, "must be a colour or 'blur'"),
            ({"background": "white", "mask": "true"}, "does not apply to a mask"),
            ({"background": "white", "layers": "true"}, "does not apply to the layers"),
            ({"mask": "true", "format": "webp"}, "writes a PNG mask"),
        ]:
            refused = client.post("/v1/remove", params=params, content=body)
            assert refused.status_code == 422, params
            assert detail in refused.json()["detail"]
