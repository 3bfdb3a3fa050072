"""What moved an instance's rank: the few cues the debug view prints beside each instance.

Two sources, best first:

- **the ranker's contributions**, when the ranker can give them
  (``pipeline.protocols.ExplainingRanker``, e.g. the linear ranker): each cue's additive share
  of the score, ``weight × (value − mean) / scale`` in the units of the score before its link
  (logits for the shipped rankers). The cues with the largest ``|share|`` are what lifted or
  sank the instance; the view prints them signed (``area_frac+1.3``).
- otherwise **the cues that set the instance apart in this photo**: its value minus the median
  of that cue over the photo's instances, largest first (``blur=0.81``, the value itself, on the
  cue's documented scale, ``pipeline.features``). A cue every instance shares (no one is cut by
  the frame: ``truncation=0.00`` everywhere) explains nothing and is never chosen. With one
  instance, the distance from the middle of the scale (0.5) stands in for the median.

Bookkeeping values (an id, a flag, the per-side parts of ``truncation``) are never shown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from pipeline.types import Instance

# Bookkeeping values, not cues: an id, a flag, per-side parts of ``truncation``.
NOT_CUES = frozenset(
    {"partner_id", "has_saliency", "trunc_left", "trunc_top", "trunc_right", "trunc_bottom",
     # the fusion stage's decision (keep_prob stays: the decision's confidence is worth showing)
     "keep", "keep_at", "keep_fallback", "kept_area_rel"}
)  # fmt: skip
# a share smaller than this (in score units) moved nothing worth printing
MIN_CONTRIBUTION = 0.005


def ranker_contributions(ranker, instances: Sequence[Instance]) -> dict[int, dict[str, float]]:
    """instance id → {cue: contribution} from an ``ExplainingRanker``; {} for another ranker
    (then ``strongest_cues`` falls back to the photo's own spread)."""
    from pipeline.protocols import ExplainingRanker

    if not instances or not isinstance(ranker, ExplainingRanker):
        return {}
    table = np.asarray(ranker.contributions(instances), np.float64)
    names = list(ranker.features)
    return {
        inst.id: {name: float(v) for name, v in zip(names, row, strict=True)}
        for inst, row in zip(instances, table, strict=True)
    }


def strongest_cues(
    instance: Instance,
    others: Sequence[Instance],
    contributions: Mapping[str, float] | None = None,
    count: int = 2,
) -> tuple[tuple[str, float], ...]:
    """The ``count`` cues that explain ``instance``'s rank (module docstring), strongest first,
    as ``(name, value)``: signed contributions when ``contributions`` is given (non-empty),
    else the cue values. ``others`` are all of the photo's instances (``instance`` included)."""
    if contributions:
        items = [
            (name, float(v))
            for name, v in contributions.items()
            if name not in NOT_CUES and abs(float(v)) >= MIN_CONTRIBUTION
        ]
        items.sort(key=lambda kv: -abs(kv[1]))
        return tuple(items[:count])
    cues = [(k, float(v)) for k, v in instance.features.items() if k not in NOT_CUES]
    centre: dict[str, float] = {}
    for name, _ in cues:
        values = [float(o.features[name]) for o in others if name in o.features]
        centre[name] = float(np.median(values)) if len(values) > 1 else 0.5
    spread = [(name, value, abs(value - centre[name])) for name, value in cues]
    spread = [item for item in spread if item[2] > 1e-6]
    spread.sort(key=lambda item: -item[2])
    return tuple((name, value) for name, value, _ in spread[:count])
