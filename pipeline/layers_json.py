"""What ``layers.json`` and the debug view say about each layer (``pipeline.layers``)."""

from __future__ import annotations

from typing import Any

from pipeline.types import Instance

# Bookkeeping values, not cues: an id, flags, per-side parts of ``truncation``, the fusion
# stage's decision (``keep_prob`` stays: the decision's own confidence is worth showing)
_NOT_CUES = frozenset(
    {"partner_id", "has_saliency", "trunc_left", "trunc_top", "trunc_right", "trunc_bottom",
     "keep", "keep_fallback", "kept_area_rel"}
)  # fmt: skip


def strongest_features(instance: Instance, count: int = 2) -> tuple[tuple[str, float], ...]:
    """The ``count`` cues furthest from neutral (0.5 on their [0, 1] scale): what the debug
    view prints beside each instance."""
    cues = [(k, float(v)) for k, v in instance.features.items() if k not in _NOT_CUES]
    items = sorted(cues, key=lambda kv: -abs(kv[1] - 0.5))
    return tuple((name, float(value)) for name, value in items[:count])


def layer_json(layer, image_px: int) -> dict[str, Any]:
    """One layer's entry of ``layers.json`` (``Layers.to_json``)."""
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
