"""Turning uploaded bytes into a ``LoadedImage`` safely.

The header is read first (Pillow parses it without decoding pixels), so a decompression bomb is
refused by its declared size before any pixel memory is allocated. Decoding itself goes through
``pipeline.imageio.load_image`` (EXIF rotation, CMYK, 16-bit, palette, transparency) on a
``NamedTemporaryFile`` that is deleted when the ``with`` block ends, whatever happens. The
client's file name is never used as a path: the suffix comes from the detected format.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from pipeline.serve.errors import ApiError

# Pillow format name → file suffix for the temp file (imageio may dispatch on the suffix)
_SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp"}
TEMP_PREFIX = "layercut-upload-"


def sniff(data: bytes, max_image_px: int) -> str:
    """Check that ``data`` is an image Pillow knows, no larger than ``max_image_px`` pixels.

    Returns Pillow's format name (``"JPEG"``, ``"PNG"`` …). Raises ``ApiError``: 400 for an
    empty upload or a broken header, 415 for something that is not an image, 413 for too many
    pixels.
    """
    if not data:
        raise ApiError(400, "empty upload", "the request carried no image bytes")
    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt = str(image.format or "")
            width, height = image.size
    except Image.DecompressionBombError as exc:
        raise ApiError(413, "image too large", str(exc)) from None
    except UnidentifiedImageError:
        raise ApiError(
            415,
            "unsupported media type",
            f"the upload ({len(data)} bytes) is not an image format this server reads "
            "(JPEG, PNG, WebP, TIFF, BMP, GIF …)",
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ApiError(400, "bad image", f"cannot read the image header: {exc}") from None
    pixels = width * height
    if pixels > max_image_px:
        raise ApiError(
            413,
            "image too large",
            f"{width}×{height} = {pixels} pixels exceeds this server's limit of "
            f"{max_image_px} pixels",
        )
    if pixels < 1:
        raise ApiError(400, "bad image", f"the image is {width}×{height} pixels")
    return fmt


def decode_upload(data: bytes, max_image_px: int, tmp_dir: str | Path | None = None):
    """Decode an upload into ``pipeline.imageio.LoadedImage`` (``rgb`` ``H×W×3 uint8``,
    ``alpha`` ``H×W float32`` or None). Raises ``ApiError`` (400/413/415) on bad input."""
    from pipeline.imageio import ImageError, load_image

    fmt = sniff(data, max_image_px)
    suffix = _SUFFIXES.get(fmt, f".{fmt.lower() or 'img'}")
    with tempfile.NamedTemporaryFile(prefix=TEMP_PREFIX, suffix=suffix, dir=tmp_dir) as tmp:
        tmp.write(data)
        tmp.flush()
        try:
            return load_image(Path(tmp.name), max_image_px)
        except ImageError as exc:
            # the message names the temp file; the client knows it as its upload
            detail = str(exc).replace(tmp.name, "upload").splitlines()[0]
            raise ApiError(400, "bad image", detail) from None
