"""Backgrounds for a composite without alpha: the kept subjects laid over a colour, an image or
a blurred copy of the photo (``Layers.composite(background=...)``, ``layercut --background``,
the server's ``background`` query).

A background spec is one of:

- a colour: a CSS name or hex string Pillow's ``ImageColor`` reads (``"white"``, ``"#00ff00"``,
  ``"#0f0"``, ``"rgb(0,255,0)"``) or an ``(r, g, b)`` tuple of ints in 0..255; it must be opaque;
- ``"blur"``: the photo itself, Gaussian-blurred with a radius of ``BLUR_RADIUS_FRAC`` of its
  longest side;
- an image: an ``H×W×3`` (or opaque ``H×W×4``) ``uint8`` array, or the path of an image file
  (any string that is neither ``"blur"`` nor a colour is taken as a path); it is scaled to
  cover the photo (aspect ratio kept) and centred, the overhang cropped.

``parse_background`` checks a spec once (a bad one raises ``ValueError`` naming it), so a batch
can fail at start and read a background image once; ``over`` lays colour and alpha over it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageColor, ImageFilter

# Gaussian radius (Pillow's, ~ the standard deviation) as a share of the photo's longest side:
# 2 % turns a 1000 px background into soft shapes while keeping its colours where they were.
BLUR_RADIUS_FRAC = 0.02
BLUR = "blur"

# what parse_background returns: an RGB colour, "blur", or an H×W×3 uint8 image
Background = tuple[int, int, int] | Literal["blur"] | np.ndarray


def parse_background(spec, max_image_px: int = 150_000_000, *, files: bool = True) -> Background:
    """The checked form of a background spec (see the module docstring): an ``(r, g, b)`` tuple,
    ``"blur"``, or an ``H×W×3 uint8`` array (an image file is read here, once).

    Raises ``ValueError`` naming the spec when it is none of these (an unknown colour name is
    reported as a missing file, since any other string is a path). With ``files=False`` (a
    server's query) a string is never taken as a path: only colours and ``"blur"``."""
    if isinstance(spec, np.ndarray):
        return _image_array(spec)
    if isinstance(spec, (tuple, list)):
        return _colour_tuple(spec)
    if isinstance(spec, Path):
        return _image_file(spec, max_image_px)
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"background must be a colour, 'blur' or an image; got {spec!r}")
    text = spec.strip()
    if text.lower() == BLUR:
        return BLUR
    try:
        rgba = ImageColor.getcolor(text, "RGBA")
    except ValueError:
        if not files:
            raise ValueError(f"background must be a colour or 'blur'; got {spec!r}") from None
        return _image_file(Path(text), max_image_px)
    if rgba[3] != 255:
        raise ValueError(f"background colour {spec!r} must be opaque (the output has no alpha)")
    return (int(rgba[0]), int(rgba[1]), int(rgba[2]))


def _colour_tuple(values) -> tuple[int, int, int]:
    ok = len(values) == 3 and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v <= 255
        for v in values
    )
    if not ok:
        raise ValueError(f"background colour must be (r, g, b) ints in 0..255; got {values!r}")
    return (int(values[0]), int(values[1]), int(values[2]))


def _image_array(array: np.ndarray) -> np.ndarray:
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(
            f"background image must be H×W×3 uint8; got {array.dtype} shape {array.shape}"
        )
    if 0 in array.shape[:2]:
        raise ValueError(f"background image is empty: shape {array.shape}")
    if array.shape[2] == 4:
        if not bool((array[:, :, 3] == 255).all()):
            raise ValueError("background image must be opaque (the output has no alpha)")
        array = array[:, :, :3]
    return np.ascontiguousarray(array)


def _image_file(path: Path, max_image_px: int) -> np.ndarray:
    from pipeline.imageio import load_image

    if not path.is_file():
        raise ValueError(
            f"background {str(path)!r} is not a colour, 'blur' or an existing image file"
        )
    loaded = load_image(path, max_image_px)  # ImageError (a ValueError) names the file
    return loaded.rgb  # an image's own transparency is dropped: it is the bottom layer


def fill(background: Background, image: np.ndarray) -> np.ndarray:
    """The parsed ``background`` at the size of ``image`` (``H×W×3 uint8``): ``H×W×3 uint8``."""
    h, w = image.shape[:2]
    if isinstance(background, tuple):
        return np.broadcast_to(np.asarray(background, np.uint8), (h, w, 3))
    if isinstance(background, str):  # "blur"
        radius = BLUR_RADIUS_FRAC * max(h, w)
        blurred = Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius))
        return np.asarray(blurred)
    return _cover(background, h, w)


def _cover(picture: np.ndarray, h: int, w: int) -> np.ndarray:
    """``picture`` scaled (aspect kept) so it covers ``h×w``, centred, the overhang cropped."""
    ph, pw = picture.shape[:2]
    scale = max(h / ph, w / pw)
    sh, sw = max(h, round(ph * scale)), max(w, round(pw * scale))
    if (sh, sw) != (ph, pw):
        picture = np.asarray(Image.fromarray(picture).resize((sw, sh), Image.Resampling.LANCZOS))
    y0, x0 = (sh - h) // 2, (sw - w) // 2
    return picture[y0 : y0 + h, x0 : x0 + w]


def over(colour: np.ndarray, alpha: np.ndarray, background, image: np.ndarray) -> np.ndarray:
    """``H×W×3 uint8``: ``colour`` (``H×W×3``, any real dtype) with ``alpha`` (``H×W`` in
    [0, 1]) over ``background`` (a spec or ``parse_background``'s result) made for ``image``
    (the photo, ``H×W×3 uint8``, which ``"blur"`` blurs)."""
    back = fill(parse_background(background), image).astype(np.float32)
    a = alpha.astype(np.float32)[..., None]
    out = colour.astype(np.float32) * a + back * (1.0 - a)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
