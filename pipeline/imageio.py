"""Image input at the boundary: decode anything a user may throw at us into ``H×W×3 uint8 RGB``
(+ optional ``H×W float32`` alpha). Outputs are written by ``pipeline.outputs``; batch inputs
are found by ``pipeline.batch``.

Every decoding failure is an ``ImageError`` (a ``ValueError``) whose ``str()`` is one line naming
the file and the reason, e.g. ``"x.jpg: truncated or corrupt image data"``. Pillow's global
settings (``MAX_IMAGE_PIXELS``, ``ImageFile.LOAD_TRUNCATED_IMAGES``) are never changed: the size
limit is our own check on the header, done before any pixel is decoded.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# the file extensions a folder or glob input is searched for (an explicit file is read whatever
# its extension: the decoder, not the name, decides what it is)
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
_PILLOW_PIXELS = re.compile(r"\((\d+) pixels\)")


class ImageError(ValueError):
    """An input that cannot be turned into an image; ``str()`` is ``"<file>: <reason>"``."""

    def __init__(self, name: str | os.PathLike, reason: str) -> None:
        self.name = str(name)
        # one line, whatever the library said (some Pillow messages span lines)
        self.reason = " ".join(str(reason).split())
        super().__init__(f"{self.name}: {self.reason}")


@dataclass(frozen=True)
class LoadedImage:
    """A decoded, upright image.

    ``rgb``: ``H×W×3 uint8`` RGB. ``alpha``: ``H×W float32`` in [0, 1], or None when the input
    had no transparency (no alpha channel, or one that is fully opaque). ``path``: the file it
    came from (None for arrays / PIL images). ``original_mode``: the Pillow mode before
    conversion (``"CMYK"``, ``"I;16"``, ``"P"`` …) or ``"array <dtype> <C>ch"``.
    """

    rgb: np.ndarray
    alpha: np.ndarray | None
    path: Path | None
    original_mode: str


# -- loading ------------------------------------------------------------------------------------
def load_image(path: str | Path, max_image_px: int = 150_000_000) -> LoadedImage:
    """Decode the first frame of ``path`` into a ``LoadedImage`` (upright per EXIF).

    Raises ``ImageError`` for a missing/empty/unreadable/truncated file or one whose header
    claims more than ``max_image_px`` pixels (checked before decoding: decompression bombs).
    """
    path = Path(path)
    if max_image_px < 1:
        raise ValueError(f"max_image_px must be >= 1, got {max_image_px}")
    try:
        size_bytes = path.stat().st_size
    except FileNotFoundError:
        raise ImageError(path, "no such file") from None
    except OSError as exc:
        raise ImageError(path, f"cannot read ({exc.strerror or exc})") from None
    if path.is_dir():
        raise ImageError(path, "is a directory, not an image")
    if size_bytes == 0:
        raise ImageError(path, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Our own limit below decides; Pillow's warning (> 89 MP) must not leak or refuse.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with _pillow_open(path) as img:
                _check_pixels(path, img.size, max_image_px)
                img.seek(0)  # multi-frame GIF/TIFF/WebP: the first frame
                img.load()
                rgb, alpha, mode = _from_pil(img, path)
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        match = _PILLOW_PIXELS.search(str(exc))
        pixels = match.group(1) if match else "?"
        limit = min(max_image_px, 2 * (Image.MAX_IMAGE_PIXELS or 0)) or max_image_px
        raise ImageError(path, f"too large ({pixels} px > limit {limit})") from None
    except Image.UnidentifiedImageError:
        raise ImageError(path, "not an image (cannot identify image file)") from None
    except PermissionError as exc:
        raise ImageError(path, f"cannot read ({exc.strerror or exc})") from None
    except MemoryError:
        raise ImageError(path, "not enough memory to decode") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow reports truncation as OSError("image file is truncated …"), broken streams
        # as OSError/SyntaxError/ValueError depending on the plugin.
        detail = " ".join(str(exc).split())[:120]
        reason = "truncated or corrupt image data"
        raise ImageError(path, f"{reason} ({detail})" if detail else reason) from None
    return LoadedImage(rgb, alpha, path, mode)


def _pillow_open(path: Path) -> Image.Image:
    """Pillow's own ``Image.open``, even after Ultralytics has replaced it.

    Importing ``ultralytics`` (which the detector does) swaps ``PIL.Image.open`` for a wrapper
    that, on any file Pillow cannot identify, runs ``check_requirements("pi-heif")`` — a pip
    install attempt — and then fails with ``ModuleNotFoundError``. A text file named ``.jpg``
    must give "not an image", with no side effects, so we call the original it keeps.
    """
    opener = Image.open
    if getattr(opener, "__module__", "") != Image.__name__:
        patcher = sys.modules.get(getattr(opener, "__module__", ""))
        original = getattr(patcher, "_image_open", None)
        if getattr(original, "__module__", "") == Image.__name__:
            opener = original
    return opener(path)


def image_from_pil(img: Image.Image) -> LoadedImage:
    """``LoadedImage`` from a PIL image (first frame, EXIF orientation applied, any mode)."""
    if not isinstance(img, Image.Image):
        raise ValueError(f"expected a PIL.Image.Image, got {type(img).__name__}")
    name = getattr(img, "filename", "") or "<PIL image>"
    try:
        img.load()
        rgb, alpha, mode = _from_pil(img, name)
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(name, f"truncated or corrupt image data ({exc})") from None
    return LoadedImage(rgb, alpha, None, mode)


def image_from_array(array: np.ndarray) -> LoadedImage:
    """``LoadedImage`` from ``H×W``, ``H×W×1``, ``H×W×3`` or ``H×W×4`` array.

    dtypes: ``uint8`` as is; ``uint16`` scaled by 255/65535 (rounded); ``bool`` to 0/255; float
    must lie in [0, 1] (a float image in 0..255 is refused rather than guessed). A fourth
    channel is alpha (None when fully opaque).
    """
    if not isinstance(array, np.ndarray):
        raise ValueError(f"expected a numpy array, got {type(array).__name__}")
    shape = array.shape
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4) or 0 in array.shape[:2]:
        raise ValueError(f"image array must be H×W, H×W×1, H×W×3 or H×W×4, got shape {shape}")
    if array.dtype == np.uint8:
        u8 = array
    elif array.dtype == np.uint16:
        u8 = _u16_to_u8(array)
    elif array.dtype == np.bool_:
        u8 = array.astype(np.uint8) * 255
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError(f"float image array of shape {shape} has NaN or infinite values")
        lo, hi = float(array.min()), float(array.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"float image array of shape {shape} must lie in [0, 1], got [{lo:g}, {hi:g}]"
            )
        u8 = np.rint(array * 255.0).astype(np.uint8)
    else:
        raise ValueError(f"unsupported image dtype {array.dtype} (shape {shape})")
    channels = u8.shape[2]
    rgb = np.repeat(u8, 3, axis=2) if channels == 1 else u8[:, :, :3]
    alpha = _alpha_or_none(u8[:, :, 3]) if channels == 4 else None
    mode = f"array {array.dtype} {channels}ch"
    return LoadedImage(np.ascontiguousarray(rgb), alpha, None, mode)


def _check_pixels(path: Path, size: tuple[int, int], max_image_px: int) -> None:
    width, height = size
    pixels = int(width) * int(height)
    if pixels > max_image_px:
        raise ImageError(path, f"too large ({pixels} px > limit {max_image_px})")
    if pixels < 1:
        raise ImageError(path, f"has no pixels ({width}×{height})")


def _from_pil(img: Image.Image, name) -> tuple[np.ndarray, np.ndarray | None, str]:
    """(rgb, alpha or None, original mode) of a loaded PIL image, upright per EXIF."""
    mode = img.mode
    try:
        upright = ImageOps.exif_transpose(img)
    except (OSError, ValueError, KeyError, TypeError, SyntaxError) as exc:
        # A broken EXIF block should not make a viewable photo unusable: say so, keep going.
        warnings.warn(f"{name}: ignoring unreadable EXIF orientation ({exc})", stacklevel=3)
        upright = img
    rgb, alpha = _to_rgb_alpha(upright, str(name))
    return rgb, _alpha_or_none(alpha), mode


def _to_rgb_alpha(img: Image.Image, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(``H×W×3 uint8`` RGB, ``H×W uint8`` alpha or None) for any Pillow mode."""
    mode = img.mode
    if "transparency" in img.info and mode in ("1", "L", "P", "RGB"):
        img = img.convert("RGBA")  # palette / colour-key transparency becomes real alpha
    elif mode in ("LA", "La", "PA", "RGBa"):
        img = img.convert("RGBA")  # La / RGBa are premultiplied: convert() divides it out
    elif mode == "CMYK":
        # Pillow's JPEG decoder has already un-inverted Adobe (APP14) CMYK; an embedded ICC
        # profile is not applied (no CMYK profile ships here to test that path with)
        img = img.convert("RGB")
    elif mode.startswith("I;16"):
        return _grey(_u16_to_u8(np.asarray(img))), None
    elif mode in ("I", "F"):
        return _grey(_wide_to_u8(np.asarray(img), mode, name)), None
    elif mode not in ("RGB", "RGBA"):
        img = img.convert("RGBA" if "A" in img.getbands() else "RGB")  # 1, L, P, YCbCr, LAB …
    array = np.asarray(img)
    if array.ndim == 2:
        return _grey(array), None
    return np.ascontiguousarray(array[:, :, :3]), array[:, :, 3] if array.shape[2] == 4 else None


def _grey(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(array.astype(np.uint8)[:, :, None], 3, axis=2))


def _wide_to_u8(array: np.ndarray, mode: str, name: str) -> np.ndarray:
    """32-bit int (``I``) or float (``F``) greyscale → uint8.

    ``I`` holding 0..65535 (how some Pillow versions open 16-bit PNG/TIFF) is scaled by
    255/65535; ``F`` in [0, 1] by 255; anything else is stretched min..max → 0..255.
    """
    if not np.isfinite(array).all():
        raise ImageError(name, f"{mode} image has NaN or infinite pixel values")
    values = array.astype(np.float64)
    lo, hi = float(values.min()), float(values.max())
    if mode == "I" and lo >= 0 and hi <= 65535:
        return _u16_to_u8(array.astype(np.uint16))
    if mode == "F" and lo >= 0 and hi <= 1:
        return np.rint(values * 255.0).astype(np.uint8)
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return np.rint((values - lo) * scale).astype(np.uint8)


def _u16_to_u8(array: np.ndarray) -> np.ndarray:
    # round(v * 255 / 65535) == round(v / 257): scaling, never clipping
    return ((array.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _alpha_or_none(alpha_u8: np.ndarray | None) -> np.ndarray | None:
    """``H×W float32`` in [0, 1] from ``H×W uint8``; None when it is fully opaque."""
    if alpha_u8 is None or bool((alpha_u8 == 255).all()):
        return None
    return alpha_u8.astype(np.float32) / np.float32(255.0)
