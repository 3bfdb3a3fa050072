"""Write awkward and broken image files, derived from a real photo, into a folder.

``write_bad_files(folder)`` returns ``{name: (path, Expectation)}``; tests of the loader and the
CLI batch use the same files. The source photo is ``ultralytics_bus`` from the shared eval data
(``$LAYERCUT_SHARED`` or ``../shared`` next to the repo) when present, else the copy of the same
photo that ships inside the ``ultralytics`` package. Photos are downscaled to ``SOURCE_MAX_SIDE_PX``
so every file is small and fast to decode.
"""

from __future__ import annotations

import importlib.resources
import io
import os
import struct
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

SOURCE_MAX_SIDE_PX = 240
BOMB_SIDE_PX = 30_000  # 900 MP claimed; the file itself is ~110 KB of deflated zeros


class Expectation(NamedTuple):
    """``outcome`` "ok" (``hw`` = expected (H, W) after loading) or "error" (``message``: a
    substring the one-line ``ImageError`` must contain)."""

    outcome: str
    hw: tuple[int, int] | None = None
    message: str = ""


def shared_dir() -> Path:
    """``$LAYERCUT_SHARED`` or ``<repo>/../shared``."""
    env = os.environ.get("LAYERCUT_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared"


def source_photo_path() -> Path:
    """A real photo: the shared smoke-set bus, else Ultralytics' bundled ``bus.jpg``."""
    shared = shared_dir() / "data" / "eval" / "pypi_smoke" / "ultralytics_bus" / "image.jpg"
    if shared.is_file():
        return shared
    bundled = Path(str(importlib.resources.files("ultralytics") / "assets" / "bus.jpg"))
    if not bundled.is_file():
        raise FileNotFoundError(f"no source photo: neither {shared} nor {bundled} exists")
    return bundled


def source_rgb(max_side_px: int = SOURCE_MAX_SIDE_PX) -> np.ndarray:
    """The source photo, upright, downscaled to ``max_side_px``: ``H×W×3 uint8``."""
    with Image.open(source_photo_path()) as img:
        img = img.convert("RGB")
        img.thumbnail((max_side_px, max_side_px), Image.Resampling.LANCZOS)
        return np.asarray(img).copy()


def png_bytes(array: np.ndarray, bit_depth: int, color_type: int) -> bytes:
    """A minimal valid PNG (no filter, one IDAT) for ``H×W`` / ``H×W×C`` data; for the
    sample formats Pillow cannot write (RGB 48-bit). ``color_type``: 0 grey, 2 RGB, 6 RGBA."""
    h, w = array.shape[:2]
    dtype = ">u2" if bit_depth == 16 else "u1"
    rows = np.ascontiguousarray(array.astype(dtype)).reshape(h, -1).view(np.uint8)
    raw = np.hstack([np.zeros((h, 1), np.uint8), rows]).tobytes()  # filter byte 0 per row
    header = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    return _png(header, zlib.compress(raw, 6))


def _png(ihdr: bytes, idat: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    signature = b"\x89PNG\r\n\x1a\n"
    return signature + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width × height`` but carries almost no pixel data (a bomb
    as far as any header check is concerned)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return _png(ihdr, zlib.compress(b"\x00" * 64))


def bomb_png_bytes(side_px: int = BOMB_SIDE_PX) -> bytes:
    """A valid 1-bit black PNG of ``side_px``² pixels, compressed to a few hundred KB at most:
    decoding it would need ``side_px``² bytes of memory in Pillow (1 byte per 1-bit pixel)."""
    row = bytes(1 + (side_px + 7) // 8)  # filter byte + packed bits, all zero
    packer = zlib.compressobj(9)
    chunks = [packer.compress(row * 1000) for _ in range(side_px // 1000)]
    chunks.append(packer.compress(row * (side_px % 1000)))
    chunks.append(packer.flush())
    return _png(struct.pack(">IIBBBBB", side_px, side_px, 1, 0, 0, 0, 0), b"".join(chunks))


def exif_orientation_bytes(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation tag
    return exif.tobytes()


def write_bad_files(folder: Path) -> dict[str, tuple[Path, Expectation]]:
    """Write every awkward input into ``folder``; return ``{name: (path, Expectation)}``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rgb = source_rgb()
    h, w = rgb.shape[:2]
    photo = Image.fromarray(rgb)
    files: dict[str, tuple[Path, Expectation]] = {}

    def put(name: str, filename: str, data: bytes, expect: Expectation) -> None:
        path = folder / filename
        path.write_bytes(data)
        files[name] = (path, expect)

    def encode(img: Image.Image, fmt: str, **options) -> bytes:
        buf = io.BytesIO()
        img.save(buf, fmt, **options)
        return buf.getvalue()

    ok = Expectation("ok", (h, w))
    jpeg = encode(photo, "JPEG", quality=92)
    put("jpeg", "plain.jpg", jpeg, ok)
    # cut inside the entropy-coded data: the header is intact, the pixels are not all there
    put(
        "truncated_jpeg",
        "truncated.jpg",
        jpeg[: len(jpeg) // 2],
        Expectation("error", None, "truncated"),
    )
    put("zero_byte", "empty.jpg", b"", Expectation("error", None, "empty file (0 bytes)"))
    text = b"this is a text file, not a photo\n" * 4
    put("text_as_jpg", "notes.jpg", text, Expectation("error", None, "not an image"))
    # Pillow writes CMYK JPEGs Adobe-style (APP14 marker, inverted samples)
    put("cmyk_jpeg", "cmyk.jpg", encode(photo.convert("CMYK"), "JPEG", quality=95), ok)

    # 16-bit: value*257 is the exact 16-bit version of an 8-bit value; the added low bits
    # (|noise| <= 128) must be scaled away (round(v/257)), never clipped to 255.
    noise = np.random.default_rng(0).integers(-128, 129, size=rgb.shape)
    rgb16 = np.clip(rgb.astype(np.int32) * 257 + noise, 0, 65535).astype(np.uint16)
    grey8 = np.asarray(photo.convert("L"))
    grey16 = np.clip(grey8.astype(np.int32) * 257 + noise[:, :, 0], 0, 65535).astype(np.uint16)
    put("png16_grey", "grey16.png", encode(Image.fromarray(grey16), "PNG"), ok)
    put("png16_rgb48", "rgb48.png", png_bytes(rgb16, 16, 2), ok)

    # palette with a transparent index over the top-left quarter
    palette = photo.quantize(colors=255)
    index = np.asarray(palette).copy()
    index[: h // 2, : w // 2] = 255
    pal_img = Image.fromarray(index, "P")
    pal_img.putpalette(palette.getpalette()[: 255 * 3] + [0, 0, 0])
    put("palette_transparent", "palette.png", encode(pal_img, "PNG", transparency=255), ok)

    put("greyscale", "grey.png", encode(photo.convert("L"), "PNG"), ok)
    put("one_bit", "onebit.png", encode(photo.convert("1"), "PNG"), ok)

    # RGBA: fully transparent top-left quarter, half-transparent top-right quarter
    alpha = np.full((h, w), 255, np.uint8)
    alpha[: h // 2, : w // 2] = 0
    alpha[: h // 2, w // 2 :] = 128
    rgba = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    put("rgba_transparent", "rgba.png", encode(rgba, "PNG"), ok)

    # EXIF orientation 6 = "rotate 90° clockwise to view": store the photo turned 90° counter-
    # clockwise so the upright result is the original (H×W); the stored file is W×H.
    sideways = photo.transpose(Image.Transpose.ROTATE_90)
    exif = exif_orientation_bytes(6)
    put("exif_rotated", "exif6.jpg", encode(sideways, "JPEG", quality=92, exif=exif), ok)

    bomb = Expectation("error", None, "too large")
    put("decompression_bomb", "bomb.png", bomb_png_bytes(), bomb)

    # three frames: the first is the photo, then flat red and blue
    frames = [photo] + [Image.new("RGB", (w, h), c) for c in ((255, 0, 0), (0, 0, 255))]
    gif = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    put("gif_multiframe", "animated.gif", gif, ok)
    webp = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    put("webp_animated", "animated.webp", webp, ok)

    float_img = Image.fromarray(grey8.astype(np.float32) / np.float32(255.0), "F")
    put("float_tiff", "float.tif", encode(float_img, "TIFF"), ok)
    return files
