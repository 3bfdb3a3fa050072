"""Response bodies built from a ``pipeline.layers.Layers``: one image, a ZIP of layers, or the
JSON document the web page re-composites from.

All of it is built in memory (no temp files); the image encoding is ``pipeline.outputs.encode``
and the files of a layer set are ``Layers.files``, as for the command line.
"""

from __future__ import annotations

import base64
import io
import zipfile
from typing import Any

import numpy as np

from pipeline.outputs import encode
from pipeline.types import KeepMode, mask_to_xyxy

ZIP_MEDIA_TYPE = "application/zip"
# ambiguity at or above this makes the page offer the alternatives (README, "The manifest")
AMBIGUOUS_AT = 0.5


def layers_zip(layers, fmt: str, debug: bool = False, **options: Any) -> bytes:
    """A ZIP of ``Layers.files(fmt, debug=debug, **options)``: one full-size RGBA file per layer
    (``01-person.png`` …), ``composite.<ext>``, with ``debug`` ``debug.png``, and
    ``layers.json``. Stored uncompressed: PNG/WebP do not shrink further."""
    layers.matte_all()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in layers.files(fmt, debug=debug, **options):
            archive.writestr(name, data)
    return out.getvalue()


def _mask_crop(mask: np.ndarray, png_compress_level: int) -> dict[str, Any]:
    """``mask_png`` (base64 grey PNG of the ``H×W bool`` mask on its tight box, 255 inside;
    one black pixel for an empty mask) and its corner ``mask_x0``, ``mask_y0``."""
    x0, y0, x1, y1 = (int(v) for v in mask_to_xyxy(mask))
    crop = mask[y0:y1, x0:x1] if x1 > x0 else np.zeros((1, 1), bool)
    grey = np.repeat((crop.astype(np.uint8) * 255)[..., None], 3, axis=2)
    data = encode(grey, "png", png_compress_level=png_compress_level)
    return {"mask_png": base64.b64encode(data).decode("ascii"), "mask_x0": x0, "mask_y0": y0}


def _keep_modes(layers) -> dict[str, dict[str, Any]]:
    """Roles, reasons and switches under every keep mode, so the page switches modes without a
    request. Only the keep policy runs (no network); the current mode and toggles are restored."""
    current = layers.keep
    switches = [layer.switched for layer in layers]
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
                "fallback": layers.fallback,
            }
    finally:
        layers.set_keep(current)
        for layer, switched in zip(layers, switches, strict=True):
            layer.switched = switched
    return modes


def layers_document(layers, debug: bool = False, png_compress_level: int = 1) -> dict[str, Any]:
    """The JSON the page uses: ``Layers.to_json()`` plus, per layer, ``png`` (base64 RGBA crop)
    with ``x0``/``y0``/``crop_width``/``crop_height`` and ``mask_png`` (its instance mask, a
    grey PNG cropped to the mask, white inside) at ``mask_x0``/``mask_y0``: a composite keeps
    each shown layer's soft edge off the masks of the hidden ones (``Layers.composite``);
    ``modes`` (see ``_keep_modes``); ``ambiguous``; and with ``debug`` a base64 ``debug_png``
    of the server's debug view."""
    layers.matte_all()
    png = {"png_compress_level": png_compress_level}
    doc = layers.to_json()
    for entry, layer in zip(doc["layers"], layers, strict=True):
        rgba, x0, y0 = layer.crop_rgba()
        entry.update(
            x0=x0,
            y0=y0,
            crop_width=int(rgba.shape[1]),
            crop_height=int(rgba.shape[0]),
            png=base64.b64encode(encode(rgba, "png", **png)).decode("ascii"),
            **_mask_crop(layer.instance.mask, png_compress_level),
        )
    doc["modes"] = _keep_modes(layers)
    doc["ambiguous"] = bool(doc["ambiguity"] >= AMBIGUOUS_AT and doc["alternatives"])
    doc["ambiguous_at"] = AMBIGUOUS_AT
    if debug:
        debug_png = encode(layers.debug_view(), "png", **png)
        doc["debug_png"] = base64.b64encode(debug_png).decode("ascii")
    return doc
