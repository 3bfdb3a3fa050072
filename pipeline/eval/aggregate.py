"""Metric names, their direction, and per-subclass / overall aggregation.

An aggregate is a flat mapping: ``n_items``, ``n_ok``, ``n_failed``, ``n_empty`` (results that
kept nothing where the GT keeps something), ``n_fallback`` (results the pipeline flagged: the
best candidate kept rather than nothing, or an unsure detection kept) and, per metric, the mean
over the items where the metric applies (items without the needed GT report ``null`` and are
left out, so e.g. ``sad`` of a subclass averages only its items with a GT alpha). A metric that
applies to none of the items is absent. ``overall`` averages items, not subclass means.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# the headline metrics, in the order tables show them
HEADLINE = ("iou", "boundary_f", "p_at_1", "sa_sor", "sad", "mse", "grad", "conn", "seconds")

HIGHER_IS_BETTER_PREFIXES = ("iou", "boundary_f", "p_at_1", "sa_sor")
LOWER_IS_BETTER_PREFIXES = ("sad", "mse", "grad", "conn", "seconds")
COUNT_KEYS = ("n_items", "n_ok", "n_failed", "n_empty", "n_fallback")


def higher_is_better(metric: str) -> bool | None:
    """True / False for a quality metric's direction, None for descriptive values
    (``n_instances``, ``ambiguity``, ``unknown_frac`` …) that are neither better nor worse."""
    if metric.startswith(HIGHER_IS_BETTER_PREFIXES):
        return True
    if metric.startswith(LOWER_IS_BETTER_PREFIXES):
        return False
    return None


def metric_order(names: Iterable[str]) -> list[str]:
    """Headline metrics first (in ``HEADLINE`` order), then the rest alphabetically."""
    names = set(names)
    head = [m for m in HEADLINE if m in names]
    return head + sorted(names - set(head))


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def aggregate_items(items: Sequence[Mapping[str, Any]]) -> dict[str, float | int]:
    """Flat aggregate of item records (each with ``status`` and a ``metrics`` mapping)."""
    out: dict[str, float | int] = {
        "n_items": len(items),
        "n_ok": sum(1 for it in items if it.get("status") == "ok"),
        "n_failed": sum(1 for it in items if it.get("status") == "failed"),
        # results that kept nothing although the GT keeps something (metric ``empty``)
        "n_empty": sum(1 for it in items if (it.get("metrics") or {}).get("empty") == 1.0),
        "n_fallback": sum(1 for it in items if it.get("fallback")),
    }
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for it in items:
        for name, value in (it.get("metrics") or {}).items():
            if _finite(value):
                sums[name] = sums.get(name, 0.0) + float(value)
                counts[name] = counts.get(name, 0) + 1
    for name in metric_order(sums):
        out[name] = sums[name] / counts[name]
    return out


def aggregate(items: Sequence[Mapping[str, Any]]) -> tuple[dict, dict[str, dict]]:
    """``(overall, by_subclass)`` aggregates; subclasses in first-seen order."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for it in items:
        groups.setdefault(str(it.get("subclass") or "default"), []).append(it)
    return aggregate_items(items), {name: aggregate_items(g) for name, g in groups.items()}
