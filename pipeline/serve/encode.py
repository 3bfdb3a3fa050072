"""Response bodies built from a ``pipeline.layers.Layers``: one image, a ZIP of layers, or the
JSON document the web page re-composites from.

All encoders work in memory (no temp files). Images are ``H×W×4 uint8`` RGBA; PNG uses a low
zlib level because on CPU the encoder, not the network, sets the pace for large photos.
"""

from __future__ import annotations

import base64
import io
import json
import time
import zipfile
from typing import Any

import numpy as np
from PIL import Image

from pipeline.types import KeepMode

MEDIA_TYPES = {"png": "image/png", "webp": "image/webp", "zip": "application/zip"}
# ambiguity at or above this makes the page offer the alternatives
AMBIGUOUS_AT = 0.5


def encode_image(
    pixels: np.ndarray, fmt: str = "png", png_compress_level: int = 1, webp_quality: int = 90
) -> bytes:
    """Encode an ``H×W×4`` (RGBA) or ``H×W×3`` (RGB) ``uint8`` array as PNG or WebP bytes."""
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] not in (3, 4):
        raise ValueError(f"expected H×W×3|4 uint8, got shape {pixels.shape} dtype {pixels.dtype}")
    image = Image.fromarray(pixels, "RGBA" if pixels.shape[2] == 4 else "RGB")
    out = io.BytesIO()
    if fmt == "png":
        image.save(out, "PNG", compress_level=png_compress_level)
    elif fmt == "webp":
        image.save(out, "WEBP", quality=webp_quality, exact=True)
    else:
        raise ValueError(f"format must be png or webp, got {fmt!r}")
    return out.getvalue()


def layer_crop_rgba(layers, layer) -> tuple[np.ndarray, int, int]:
    """One layer as an ``h×w×4 uint8`` RGBA crop of its matte, with its top-left ``(x0, y0)``.

    The input file's own transparency, when it had one, is multiplied in, as in
    ``Layers.composite``.
    """
    matte = layer.matte
    h, w = matte.alpha.shape
    if h == 0 or w == 0:  # an empty mask: one transparent pixel keeps every decoder happy
        return np.zeros((1, 1, 4), np.uint8), int(matte.x0), int(matte.y0)
    alpha = matte.alpha
    if layers.input_alpha is not None:
        alpha = alpha * layers.input_alpha[matte.y0 : matte.y0 + h, matte.x0 : matte.x0 + w]
    rgba = np.empty((h, w, 4), np.uint8)
    rgba[..., :3] = matte.foreground
    rgba[..., 3] = np.clip(alpha * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return rgba, int(matte.x0), int(matte.y0)


def layers_zip(layers, fmt: str, debug: bool = False, **options: Any) -> bytes:
    """A ZIP with one full-size RGBA file per layer (``01-person.png`` …), ``composite.<fmt>``,
    ``layers.json`` (``Layers.to_json()`` plus each layer's ``file``) and, with ``debug``,
    ``debug.png``. Stored uncompressed: PNG/WebP do not shrink further."""
    _matte_all(layers)
    manifest = layers.to_json()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for entry, layer in zip(manifest["layers"], layers, strict=True):
            entry["file"] = f"{layer.filename_stem}.{fmt}"
            archive.writestr(entry["file"], encode_image(layer.rgba(), fmt, **options))
        manifest["composite"] = f"composite.{fmt}"
        archive.writestr(manifest["composite"], encode_image(layers.composite(), fmt, **options))
        if debug:
            manifest["debug"] = "debug.png"
            archive.writestr("debug.png", encode_image(layers.debug_view(), "png"))
        archive.writestr("layers.json", json.dumps(manifest, indent=1))
    return out.getvalue()


def _matte_all(layers) -> None:
    """Matte every layer now (not only the kept ones), so the manifest's ``timings_s`` counts
    that work in ``refine`` (``Layers`` does) and in ``total``."""
    start = time.perf_counter()
    for layer in layers:
        _ = layer.matte
    if "total" in layers.timings_s:
        layers.timings_s["total"] += time.perf_counter() - start


def _keep_modes(layers) -> dict[str, dict[str, Any]]:
    """Roles, reasons and switches under every keep mode, so the page switches modes without a
    request. Only the keep policy runs (no network); the current mode and toggles are restored."""
    current = layers.keep
    enabled = [layer.enabled for layer in layers]
    modes = {}
    try:
        for mode in KeepMode:
            layers.set_keep(mode)
            modes[mode.value] = {
                "roles": [layer.role.value for layer in layers],
                "reasons": [layer.reason for layer in layers],
                "enabled": [layer.enabled for layer in layers],
                "ambiguity": round(float(layers.ambiguity), 4),
                "alternatives": [list(alt) for alt in layers.alternatives],
            }
    finally:
        layers.set_keep(current)
        for layer, on in zip(layers, enabled, strict=True):
            layer.enabled = on
    return modes


def layers_document(layers, debug: bool = False, png_compress_level: int = 1) -> dict[str, Any]:
    """The JSON the page uses: ``Layers.to_json()`` plus, per layer, ``png`` (base64 RGBA crop)
    with ``x0``/``y0``/``crop_width``/``crop_height``; ``modes`` (see ``_keep_modes``);
    ``ambiguous``; and with ``debug`` a base64 ``debug_png`` of the server's debug view."""
    _matte_all(layers)
    doc = layers.to_json()
    for entry, layer in zip(doc["layers"], layers, strict=True):
        rgba, x0, y0 = layer_crop_rgba(layers, layer)
        entry.update(
            x0=x0,
            y0=y0,
            crop_width=int(rgba.shape[1]),
            crop_height=int(rgba.shape[0]),
            png=base64.b64encode(encode_image(rgba, "png", png_compress_level)).decode("ascii"),
        )
    doc["modes"] = _keep_modes(layers)
    doc["ambiguous"] = bool(doc["ambiguity"] >= AMBIGUOUS_AT and doc["alternatives"])
    doc["ambiguous_at"] = AMBIGUOUS_AT
    if debug:
        debug_png = encode_image(layers.debug_view(), "png", png_compress_level)
        doc["debug_png"] = base64.b64encode(debug_png).decode("ascii")
    return doc
