"""Compare two evaluation runs: per-subclass deltas, worsened items first, a CI exit status.

``compare_runs(run_a, run_b, out_dir)`` reads ``report.json`` (and ``thumbs/``) of both runs,
writes ``out_dir/compare.json`` and a self-contained ``out_dir/compare.html`` and returns a
``Comparison``; ``Comparison.exit_status`` is 1 when any subclass (or ``overall``) worsens
beyond its threshold, else 0.

Worse means: a lower value for ``iou``/``boundary_f``/``p_at_1``/``sa_sor``/``iou_*``, a higher
value for ``sad``/``mse``/``grad``/``conn``/``seconds``, or more failed items. Thresholds are
absolute for the bounded metrics and relative for the errors: a share of A's value, or of a
small floor when A is near 0 (a perfect A must not make any change infinitely worse); ``seconds``
is not gated by default (timings are noisy on shared machines) but can be
(``--threshold seconds=50%``). Metrics without a threshold are shown but never fail a run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.eval.aggregate import COUNT_KEYS, higher_is_better, metric_order
from pipeline.eval.compare_html import write_compare_html
from pipeline.eval.comparison import Comparison, ItemDelta, MetricDelta, Threshold
from pipeline.eval.run import load_report

__all__ = [
    "Comparison",
    "ItemDelta",
    "MetricDelta",
    "Threshold",
    "compare_reports",
    "compare_runs",
    "parse_threshold",
]

# relative changes are taken against max(|A|, floor): the floor is a small value in the
# metric's own unit (sad 0.01 = ten fully wrong pixels, mse ×1000 units, seconds)
RELATIVE_FLOORS: Mapping[str, float] = {
    "sad": 0.01,
    "mse": 0.1,
    "grad": 0.01,
    "conn": 0.01,
    "seconds": 0.05,
}


def relative_floor(metric: str) -> float:
    """The floor of ``metric`` (matched by prefix, so ``sad_image`` uses ``sad``'s)."""
    for prefix, floor in RELATIVE_FLOORS.items():
        if metric.startswith(prefix):
            return floor
    return 1e-12


DEFAULT_THRESHOLDS: Mapping[str, Threshold] = {
    "iou": Threshold(0.02),
    "boundary_f": Threshold(0.02),
    "p_at_1": Threshold(0.05),
    "sa_sor": Threshold(0.05),
    "sad": Threshold(0.10, relative=True),
    "mse": Threshold(0.10, relative=True),
    "grad": Threshold(0.10, relative=True),
    "conn": Threshold(0.10, relative=True),
}


def parse_threshold(text: str) -> tuple[str, Threshold]:
    """``metric=0.02`` (absolute) or ``metric=10%`` (relative) → ``(metric, Threshold)``."""
    if "=" not in text:
        raise ValueError(f"--threshold expects metric=value or metric=N%, got {text!r}")
    name, raw = (part.strip() for part in text.split("=", 1))
    relative = raw.endswith("%")
    try:
        value = float(raw[:-1] if relative else raw)
    except ValueError:
        raise ValueError(f"--threshold {text!r}: {raw!r} is not a number") from None
    if not name or value < 0:
        raise ValueError(f"--threshold {text!r}: need a metric name and a value ≥ 0")
    if higher_is_better(name) is None:
        raise ValueError(f"--threshold {text!r}: {name!r} is not a metric with a direction")
    return name, Threshold(value / 100.0 if relative else value, relative)


def worsening(metric: str, a: float, b: float, threshold: Threshold | None) -> float:
    """How much worse B is than A, in the threshold's unit (negative = better)."""
    change = b - a if higher_is_better(metric) is False else a - b
    if threshold is not None and threshold.relative:
        return change / max(abs(a), relative_floor(metric))
    return change


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def compare_aggregates(
    group: str, agg_a: Mapping[str, Any], agg_b: Mapping[str, Any], thresholds
) -> list[MetricDelta]:
    """One ``MetricDelta`` per directional metric present in A or B, plus ``n_failed``."""
    out = []
    names = {k for k in (*agg_a, *agg_b) if higher_is_better(k) is not None}
    for metric in metric_order(names):
        a, b = _number(agg_a.get(metric)), _number(agg_b.get(metric))
        d = MetricDelta(group, metric, a, b, thresholds.get(metric))
        if a is not None and b is not None:
            amount = worsening(metric, a, b, d.threshold)
            limit = d.threshold.value if d.threshold is not None else None
            d.worse = limit is not None and amount > limit
            d.better = amount < 0 and (limit is None or -amount > limit)
        out.append(d)
    fa, fb = _number(agg_a.get("n_failed")), _number(agg_b.get("n_failed"))
    if fa is not None and fb is not None:
        out.append(MetricDelta(group, "n_failed", fa, fb, Threshold(0.0), fb > fa, fb < fa))
    return out


def compare_items(report_a, report_b, thresholds) -> list[ItemDelta]:
    """Items present in both runs, worsened ones first (most severe first), then by name."""
    items_a = {it["name"]: it for it in report_a.get("items") or []}
    out = []
    for it_b in report_b.get("items") or []:
        it_a = items_a.get(it_b["name"])
        if it_a is None:
            continue
        reasons, severity = [], 0.0
        if it_a.get("status") != "failed" and it_b.get("status") == "failed":
            reasons.append(f"failed: {it_b.get('error')}")
            severity = float("inf")
        ma, mb = it_a.get("metrics") or {}, it_b.get("metrics") or {}
        for metric, threshold in thresholds.items():
            a, b = _number(ma.get(metric)), _number(mb.get(metric))
            if a is None or b is None:
                continue
            amount = worsening(metric, a, b, threshold)
            ratio = amount / threshold.value if threshold.value > 0 else (amount > 0) * 2.0
            if amount > threshold.value:
                reasons.append(f"{metric} {a:.4g} → {b:.4g}")
            severity = max(severity, ratio)
        subclass = str(it_b.get("subclass") or "default")
        out.append(ItemDelta(it_b["name"], subclass, bool(reasons), severity, reasons, it_a, it_b))
    out.sort(key=lambda d: (not d.worse, -d.severity if d.worse else 0.0, d.name))
    return out


def compare_reports(
    report_a: Mapping[str, Any],
    report_b: Mapping[str, Any],
    run_a: Path,
    run_b: Path,
    thresholds: Mapping[str, Threshold] | None = None,
) -> Comparison:
    """Compare two loaded reports (see the module docstring)."""
    limits = dict(DEFAULT_THRESHOLDS if thresholds is None else thresholds)
    comparison = Comparison(Path(run_a), Path(run_b))
    subs_a = report_a.get("by_subclass") or {}
    subs_b = report_b.get("by_subclass") or {}
    for name in [*subs_a, *(s for s in subs_b if s not in subs_a)]:
        if name not in subs_a or name not in subs_b:
            side = "A" if name in subs_a else "B"
            comparison.notes.append(f"subclass {name!r} only in run {side}")
            continue
        comparison.groups += compare_aggregates(name, subs_a[name], subs_b[name], limits)
    comparison.groups += compare_aggregates(
        "overall", report_a.get("overall") or {}, report_b.get("overall") or {}, limits
    )
    comparison.groups.sort(key=lambda d: not d.worse)  # stable: worse first, order kept
    comparison.items = compare_items(report_a, report_b, limits)
    meta_a, meta_b = report_a.get("meta") or {}, report_b.get("meta") or {}
    for key in ("dataset", "proposals", "seed", "limit"):
        if meta_a.get(key) != meta_b.get(key):
            comparison.notes.append(f"{key} differs: A {meta_a.get(key)!r}, B {meta_b.get(key)!r}")
    if (report_a.get("overall") or {}).get("n_items") != (report_b.get("overall") or {}).get(
        "n_items"
    ):
        comparison.notes.append("the runs hold different numbers of items")
    return comparison


def comparison_json(c: Comparison) -> dict[str, Any]:
    def group(d: MetricDelta) -> dict[str, Any]:
        return {
            "group": d.group,
            "metric": d.metric,
            "a": d.a,
            "b": d.b,
            "delta": d.delta,
            "higher_is_better": False if d.metric in COUNT_KEYS else higher_is_better(d.metric),
            "threshold": None if d.threshold is None else d.threshold.describe(),
            "worse": d.worse,
            "better": d.better,
        }

    def item(d: ItemDelta) -> dict[str, Any]:
        sev = d.severity if d.severity != float("inf") else None
        return {
            "name": d.name,
            "subclass": d.subclass,
            "worse": d.worse,
            "severity": sev,
            "reasons": d.reasons,
        }

    return {
        "run_a": str(c.run_a),
        "run_b": str(c.run_b),
        "exit_status": c.exit_status,
        "worse_groups": [f"{d.group}:{d.metric}" for d in c.worse_groups],
        "notes": c.notes,
        "groups": [group(d) for d in c.groups],
        "items": [item(d) for d in c.items],
    }


def compare_runs(
    run_a: str | Path,
    run_b: str | Path,
    out_dir: str | Path,
    thresholds: Mapping[str, Threshold] | None = None,
    overrides: Sequence[str] = (),
) -> Comparison:
    """Compare two run folders and write ``compare.json`` and ``compare.html`` to ``out_dir``.

    ``overrides``: ``metric=value`` / ``metric=N%`` strings replacing or adding thresholds.
    """
    limits = dict(DEFAULT_THRESHOLDS if thresholds is None else thresholds)
    for text in overrides:
        name, threshold = parse_threshold(text)
        limits[name] = threshold
    report_a, report_b = load_report(run_a), load_report(run_b)
    comparison = compare_reports(report_a, report_b, Path(run_a), Path(run_b), limits)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = comparison_json(comparison)
    (out / "compare.json").write_text(json.dumps(data, indent=1), encoding="utf-8")
    write_compare_html(comparison, out)
    return comparison
