"""Image input at the boundary: decode anything a user may throw at us into ``H×W×3 uint8 RGB``
(+ optional ``H×W float32`` alpha). Outputs are written by ``pipeline.outputs``; batch inputs
are found by ``pipeline.batch``.

Only the formats of ``DECODED_FORMATS`` are decoded (Pillow's ``formats=`` allow-list), so an
EPS never reaches Ghostscript and no other Pillow plugin (TGA, SGI, PCX, DDS, ICO, JPEG 2000 …)
parses untrusted bytes. Every decoding failure is an ``ImageError`` (a ``ValueError``) whose
``str()`` is one line naming the file and the reason, e.g. ``"x.jpg: truncated or corrupt image
data"`` or ``"x.eps: not a supported image format (EPS; decoded: JPEG, PNG, …)"``. Pillow's
global settings (``MAX_IMAGE_PIXELS``, ``ImageFile.LOAD_TRUNCATED_IMAGES``) are never changed:
the size limit is our own check on the header, done before any pixel is decoded.
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
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".mpo"}
)
# Pillow format names that are decoded; every other plugin is never asked. MPO is JPEG: phone and
# 3D cameras add a second picture (depth map, HDR gain map, other eye) to a JPEG with the
# Multi-Picture extension, and Pillow's JPEG opener reports such a file as "MPO".
DECODED_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "TIFF", "BMP", "GIF")
_PILLOW_OPENERS = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF")  # MPO is opened by JPEG's
DECODED_TITLES = "JPEG, PNG, WebP, TIFF, BMP, GIF"
_PILLOW_PIXELS = re.compile(r"\((\d+) pixels\)")
# Leading bytes → format name, only to say what a refused or broken file is (never decoded).
_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"%!PS", "EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"%PDF", "PDF"),
    (b"DDS ", "DDS"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"\x00\x00\x02\x00", "CUR"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xffO\xffQ", "JPEG 2000"),
    (b"\x01\xda", "SGI"),
    (b"8BPS", "PSD"),
    (b"icns", "ICNS"),
    (b"qoif", "QOI"),
    (b"v/1\x01", "OpenEXR"),
    (b"\x0a\x05\x01", "PCX"),
)


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
            with open_allowed(path, path) as img:
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
        raise ImageError(path, _too_large(pixels, limit)) from None
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


def sniff_format(head: bytes) -> str | None:
    """The format the first bytes of a file announce (``"PNG"``, ``"EPS"``, ``"HEIF"`` …), or
    None. Only names things for messages: nothing is decoded."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return "AVIF" if brand in (b"avif", b"avis") else "HEIF"
    if head.endswith(b"TRUEVISION-XFILE.\x00"):  # the TGA 2.0 footer, when the file has one
        return "TGA"
    if re.match(rb"P[1-7]\s", head):
        return "PNM"
    for signature, name in _SIGNATURES:
        if head.startswith(signature):
            return name
    return None


def unidentified_reason(head: bytes) -> tuple[str, bool]:
    """``(reason, corrupt)`` for bytes that no allowed decoder accepted.

    ``corrupt`` is True when they announce a decoded format (a PNG whose header fails its CRC, a
    JPEG cut short): the file is broken, not of an unsupported kind.
    """
    fmt = sniff_format(head)
    if fmt in DECODED_FORMATS:
        return f"corrupt {fmt} data (its header cannot be parsed)", True
    if fmt is not None:
        return f"not a supported image format ({fmt}; decoded: {DECODED_TITLES})", False
    return (
        f"not an image in a supported format (unrecognised data; decoded: {DECODED_TITLES})",
        False,
    )


def open_allowed(fp, name: str | os.PathLike) -> Image.Image:
    """``Image.open`` restricted to ``DECODED_FORMATS`` (Pillow's own opener, see
    ``_pillow_open``). Raises ``ImageError`` naming ``name`` when no allowed decoder accepts the
    bytes (``unidentified_reason`` says why); Pillow's other errors propagate."""
    try:
        img = _pillow_open(fp)
    except Image.UnidentifiedImageError:
        head = _head(fp)
        raise ImageError(name, unidentified_reason(head)[0]) from None
    if img.format not in DECODED_FORMATS:  # a plugin outside the list answered: never decode
        img.close()
        raise ImageError(name, f"not a supported image format ({img.format})")
    return img


def _head(fp, size: int = 64) -> bytes:
    """The first bytes of ``fp`` (a path or a seekable binary file), for ``sniff_format``;
    the end of a short file too, for the TGA footer."""
    if isinstance(fp, (str, os.PathLike)):
        with open(fp, "rb") as handle:
            return _head(handle, size)
    fp.seek(0)
    head = fp.read(size)
    fp.seek(0, os.SEEK_END)
    if fp.tell() > size:
        fp.seek(-26, os.SEEK_END)
        head += fp.read(26)
    fp.seek(0)
    return head


def _pillow_open(fp) -> Image.Image:
    """Pillow's own ``Image.open``, even after Ultralytics has replaced it.

    Importing ``ultralytics`` (which the detector does) swaps ``PIL.Image.open`` for a wrapper
    that, on any file Pillow cannot identify, runs ``check_requirements("pi-heif")`` — a pip
    install attempt — and then fails with ``ModuleNotFoundError``. A text file named ``.jpg``
    must give "not an image", with no side effects, so we call the original it keeps. Only the
    ``DECODED_FORMATS`` plugins are tried.
    """
    opener = Image.open
    if getattr(opener, "__module__", "") != Image.__name__:
        patcher = sys.modules.get(getattr(opener, "__module__", ""))
        original = getattr(patcher, "_image_open", None)
        if getattr(original, "__module__", "") == Image.__name__:
            opener = original
    return opener(fp, formats=_PILLOW_OPENERS)


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


def _too_large(pixels: int | str, limit: int) -> str:
    return (
        f"too large ({pixels} px > limit {limit}; the default limit follows this machine's "
        "memory, --set runtime.max_image_px=N changes it)"
    )


def _check_pixels(path: Path, size: tuple[int, int], max_image_px: int) -> None:
    width, height = size
    pixels = int(width) * int(height)
    if pixels > max_image_px:
        raise ImageError(path, _too_large(pixels, max_image_px))
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
