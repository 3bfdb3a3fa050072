"""``compare.html``: per-subclass deltas (worse marked red with ✗) and an A | B contact sheet
with the items that got worse beyond a threshold first. Pictures are embedded as base64."""

from __future__ import annotations

from pathlib import Path

from pipeline.eval.aggregate import higher_is_better
from pipeline.eval.comparison import Comparison, ItemDelta, MetricDelta
from pipeline.eval.html_common import (
    Cell,
    error_map_legend,
    esc,
    fmt,
    image_cell,
    number_cell,
    page,
    table,
    text_cell,
)

SIDE_BY_SIDE = (("photo", "photo"), ("gt", "GT"), ("result", "result"), ("error", "error map"))


def _run_dir(path: Path) -> Path:
    return path if path.is_dir() else path.parent


def _direction(metric: str) -> str:
    hib = higher_is_better(metric)
    if metric == "n_failed" or hib is False:
        return "↓ lower is better"
    return "↑ higher is better" if hib else ""


def _delta_cell(d: MetricDelta) -> Cell:
    if d.delta is None:
        return Cell("–", "")
    if d.worse:
        return Cell(f"{esc(fmt(d.delta))} ✗ worse", repr(d.delta), "worse")
    if d.better:
        return Cell(f"{esc(fmt(d.delta))} ✓ better", repr(d.delta), "better")
    return Cell(esc(fmt(d.delta)), repr(d.delta))


def groups_table(c: Comparison) -> str:
    headers = ["subclass", "metric", "direction", "A", "B", "Δ (B − A)", "threshold", "verdict"]
    rows = []
    for d in c.groups:
        verdict = "WORSE" if d.worse else ("better" if d.better else "")
        rows.append(
            [
                text_cell(d.group),
                text_cell(d.metric),
                text_cell(_direction(d.metric)),
                number_cell(d.a),
                number_cell(d.b),
                _delta_cell(d),
                text_cell("" if d.threshold is None else d.threshold.describe()),
                Cell(esc(verdict), verdict, "t worse" if d.worse else "t"),
            ]
        )
    return table(headers, rows, "deltas")


def items_table(c: Comparison) -> str:
    dir_a, dir_b = _run_dir(c.run_a), _run_dir(c.run_b)
    headers = ["item", "subclass", "verdict", "severity", "what got worse"]
    for _, label in SIDE_BY_SIDE:
        headers += [f"A {label}", f"B {label}"] if label not in ("photo", "GT") else [label]
    rows = []
    for d in c.items:
        rows.append(_item_row(d, dir_a, dir_b))
    return table(headers, rows, "items")


def _item_row(d: ItemDelta, dir_a: Path, dir_b: Path) -> list[Cell]:
    severity = None if d.severity == float("inf") else round(d.severity, 3)
    sort_sev = "1e300" if d.severity == float("inf") else repr(d.severity)
    row = [
        text_cell(d.name),
        text_cell(d.subclass),
        Cell("WORSE" if d.worse else "", "1" if d.worse else "0", "t worse" if d.worse else "t"),
        Cell(esc(fmt(severity)) if severity is not None else "failed", sort_sev),
        text_cell("; ".join(d.reasons)),
    ]
    pics_a, pics_b = d.a.get("thumbs") or {}, d.b.get("thumbs") or {}
    for kind, label in SIDE_BY_SIDE:
        if label in ("photo", "GT"):
            row.append(image_cell(dir_b, pics_b.get(kind), f"{d.name} {kind}"))
        else:
            row.append(image_cell(dir_a, pics_a.get(kind), f"A {d.name} {kind}"))
            row.append(image_cell(dir_b, pics_b.get(kind), f"B {d.name} {kind}"))
    return row


def render_compare(c: Comparison) -> str:
    status = (
        f'<p class="note worse">REGRESSION: {len(c.worse_groups)} subclass metric(s) worse '
        "beyond threshold (exit status 1).</p>"
        if c.exit_status
        else '<p class="note">No subclass worse beyond its threshold (exit status 0).</p>'
    )
    notes = "".join(f"<li>{esc(n)}</li>" for n in c.notes)
    parts = [
        "<h1>layercut evaluation: A → B</h1>",
        f"<p>A <code>{esc(c.run_a)}</code><br>B <code>{esc(c.run_b)}</code></p>",
        status,
        f"<ul>{notes}</ul>" if notes else "",
        '<p class="legend">Δ = B − A. Cells marked ✗ (red) are worse beyond the threshold: '
        "for ↑ metrics a negative Δ is worse, for ↓ metrics a positive Δ is worse. "
        "Click a column header to sort.</p>",
        "<h2>Per subclass</h2>",
        groups_table(c),
        "<h2>Items (worse beyond a threshold first)</h2>",
        error_map_legend(),
        items_table(c),
    ]
    return page("layercut comparison", "\n".join(parts))


def write_compare_html(c: Comparison, out_dir: Path) -> Path:
    path = Path(out_dir) / "compare.html"
    path.write_text(render_compare(c), encoding="utf-8")
    return path
