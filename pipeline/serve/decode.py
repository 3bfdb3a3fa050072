"""Turning uploaded bytes into a ``LoadedImage`` safely.

Only the formats of ``pipeline.imageio.DECODED_FORMATS`` are parsed (no other Pillow plugin, no
Ghostscript). The header is read first (Pillow parses it without decoding pixels), so a
decompression bomb is refused by its declared size before any pixel memory is allocated.
Decoding itself goes through ``pipeline.imageio.load_image`` (EXIF rotation, CMYK, 16-bit,
palette, transparency) on a ``NamedTemporaryFile`` that is deleted when the ``with`` block ends,
whatever happens. The client's file name is never used as a path: the suffix comes from the
detected format.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

from PIL import Image

from pipeline.serve.errors import ApiError

# Pillow format name → file suffix for the temp file (imageio may dispatch on the suffix)
_SUFFIXES = {
    "JPEG": ".jpg",
    "MPO": ".jpg",
    "PNG": ".png",
    "WEBP": ".webp",
    "GIF": ".gif",
    "BMP": ".bmp",
    "TIFF": ".tif",
}
TEMP_PREFIX = "layercut-upload-"


def sniff(data: bytes, max_image_px: int) -> str:
    """Check that ``data`` is an image in a decoded format, no larger than ``max_image_px``.

    Only the formats of ``pipeline.imageio.DECODED_FORMATS`` are tried (Pillow parses the
    header without decoding pixels). Returns Pillow's format name (``"JPEG"``, ``"PNG"`` …).
    Raises ``ApiError``: 400 for an empty upload or a broken header of a decoded format (a PNG
    failing its CRC), 415 for another format (EPS, TGA, …) or no image, 413 for too many pixels.
    """
    from pipeline.imageio import ImageError, open_allowed, unidentified_reason

    if not data:
        raise ApiError(400, "empty upload", "the request carried no image bytes")
    try:
        with open_allowed(io.BytesIO(data), "upload") as image:
            fmt = str(image.format or "")
            width, height = image.size
    except Image.DecompressionBombError as exc:
        raise ApiError(413, "image too large", str(exc)) from None
    except ImageError:
        reason, corrupt = unidentified_reason(data[:64] + data[-26:])
        if corrupt:
            raise ApiError(
                400, "bad image", f"the upload ({len(data)} bytes) is {reason}"
            ) from None
        raise ApiError(
            415, "unsupported media type", f"the upload ({len(data)} bytes) is {reason}"
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
