"""``layers.json``: the manifest of a layer set (``Layers.to_json``), as ``Layers.save``, the
command line's ``--layers`` and the server's ZIP and JSON write it.

Layers are listed best first and named by ``rank`` (1 = best), the number of their file
(``01-person.png``), of the page and of the debug view; reasons and ``alternatives`` name
layers by rank too. ``id`` is the detector's proposal index, kept only to trace a layer back to
the detector's output. ``ambiguity`` is in [0, 1]: how close the keep policy came to choosing
another main subject (``pipeline.stages.select``); the web page offers the ``alternatives``
(lists of ranks) from ``pipeline.serve.encode.AMBIGUOUS_AT``. The README ("The manifest")
describes every field for users.
"""

from __future__ import annotations

from typing import Any


def manifest_json(layers) -> dict[str, Any]:
    """The JSON-serialisable manifest of ``layers`` (a ``pipeline.layers.Layers``)."""
    h, w = layers.hw
    return {
        "source": layers.source,
        "width": w,
        "height": h,
        "keep": layers.keep.value,
        "ambiguity": round(layers.ambiguity, 4),
        "alternatives": [list(alt) for alt in layers.alternatives],
        # "" or why the best candidate was kept when the keep policy would have kept nothing
        "fallback": layers.fallback,
        "timings_s": {k: round(v, 4) for k, v in layers.timings_s.items()},
        "layers": [layer_json(layer, h * w) for layer in layers],
    }


def layer_json(layer, image_px: int) -> dict[str, Any]:
    """One layer's entry: rank, id, label, scores, role, reason, switch, box, area, cues."""
    inst = layer.instance
    area = inst.area_px
    return {
        "rank": layer.rank,
        "id": inst.id,
        "label": inst.label,
        "class_id": inst.class_id,
        "score": round(float(inst.score), 6),
        "det_score": round(float(inst.det_score), 6),
        "role": layer.role.value,
        "reason": layer.reason,
        "enabled": layer.enabled,
        "source": inst.source,
        "box_xyxy": [round(float(v), 2) for v in inst.xyxy],
        "area_px": area,
        "area_frac": round(area / max(image_px, 1), 6),
        "features": {k: round(float(v), 6) for k, v in sorted(inst.features.items())},
    }
