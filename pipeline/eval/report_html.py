"""``report.html``: a metric table per subclass and a sortable contact sheet, self-contained.

The page has three tables (all sortable by clicking a header):
- ``#subclasses``: one row per subclass plus ``overall``, every aggregated metric;
- ``#items``: the contact sheet, one row per item: name, subclass, status, headline metrics,
  then photo, GT, result on a checkerboard, error map (red = kept but not GT, blue = GT
  missed) and the debug overlay, each a base64 JPEG thumbnail;
- the resolved configuration sits in a collapsed ``<details>`` block as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.eval.aggregate import COUNT_KEYS, HEADLINE, higher_is_better, metric_order
from pipeline.eval.html_common import (
    Cell,
    error_map_legend,
    esc,
    image_cell,
    number_cell,
    page,
    table,
    text_cell,
)

PICTURE_COLUMNS = (
    ("photo", "photo"),
    ("gt", "GT"),
    ("result", "result"),
    ("error", "error map"),
    ("debug", "debug"),
)

LEGEND = (
    "iou, boundary_f (DAVIS, tolerance 0.8 % of the diagonal), p_at_1 (top-ranked instance "
    "mostly inside the GT main region; items with ≥ 2 instances), sa_sor (IRSR, IoU ≥ 0.5 "
    "matching): higher is better. "
    "sad (Σ|Δα| / 1000), mse (mean Δα² × 1000), grad (Gaussian-derivative σ 1.4, / 1000), "
    "conn (θ 0.15, step 0.1, / 1000) on the unknown region (trimap unknown, else 0 < α < 1 "
    "dilated 3 px); the same with the suffix _image on the whole image: lower is better. "
    "seconds: pipeline time per item (seconds_<stage> per stage). iou_rule_*: the kept region "
    "of a simple rule over the same proposals; iou_oracle_*: the best these proposals allow."
)


def subclass_table(report: Mapping[str, Any]) -> str:
    """The per-subclass metric table (subclasses, then an ``overall`` row)."""
    groups = dict(report.get("by_subclass") or {})
    groups_rows = list(groups.items()) + [("overall", report.get("overall") or {})]
    names = set()
    for _, agg in groups_rows:
        names.update(k for k in agg if k not in COUNT_KEYS)
    metrics = metric_order(names)
    headers = ["subclass", *COUNT_KEYS, *metrics]
    rows = []
    for name, agg in groups_rows:
        row = [text_cell(name, "t" if name != "overall" else "t better")]
        row += [number_cell(agg.get(k)) for k in COUNT_KEYS]
        row += [number_cell(agg.get(m)) for m in metrics]
        rows.append(row)
    return table(headers, rows, "subclasses")


def _item_metric_names(items: list[Mapping[str, Any]]) -> list[str]:
    present = set()
    for it in items:
        present.update(k for k, v in (it.get("metrics") or {}).items() if v is not None)
    # the contact sheet stays narrow: headline metrics plus the rule IoUs when present
    extra = sorted(m for m in present if m.startswith("iou_rule_") or m.startswith("iou_oracle"))
    return [m for m in HEADLINE if m in present] + extra


def status_cell(item: Mapping[str, Any]) -> Cell:
    status = str(item.get("status"))
    if status == "failed":
        return Cell(f"failed: {esc(item.get('error') or '')}", status, "t failed")
    notes = "; ".join(item.get("warnings") or [])
    suffix = f'<br><span class="muted">{esc(notes)}</span>' if notes else ""
    return Cell(esc(status) + suffix, status, "t")


def contact_sheet(report: Mapping[str, Any], run_dir: Path) -> str:
    """The per-item table with metrics and embedded pictures."""
    items = list(report.get("items") or [])
    metrics = _item_metric_names(items)
    # pictures before the metric columns, so they are on screen without scrolling sideways
    headers = ["item", "subclass", "status", *(label for _, label in PICTURE_COLUMNS), *metrics]
    rows = []
    for it in items:
        values = it.get("metrics") or {}
        pics = it.get("thumbs") or {}
        row = [text_cell(it.get("name")), text_cell(it.get("subclass")), status_cell(it)]
        row += [
            image_cell(run_dir, pics.get(kind), f"{it.get('name')} {kind}")
            for kind, _ in PICTURE_COLUMNS
        ]
        row += [number_cell(values.get(m)) for m in metrics]
        rows.append(row)
    return table(headers, rows, "items")


def render_report(report: Mapping[str, Any], run_dir: Path) -> str:
    """The whole report page as a string."""
    meta = report.get("meta") or {}
    direction = ", ".join(f"{m} {'↑' if higher_is_better(m) else '↓'}" for m in HEADLINE)
    parts = [
        "<h1>layercut evaluation</h1>",
        f'<p class="note">{esc(meta.get("note", ""))}</p>',
        f"<p>dataset <code>{esc(meta.get('dataset', ''))}</code> · proposals "
        f"<b>{esc(meta.get('proposals', ''))}</b> · seed {esc(meta.get('seed', ''))} · "
        f"{esc(meta.get('created', ''))}</p>",
        f'<p class="legend">{esc(LEGEND)}<br>Direction: {esc(direction)}. '
        "Click a column header to sort.</p>",
        "<h2>Metrics per subclass</h2>",
        subclass_table(report),
        "<h2>Contact sheet</h2>",
        error_map_legend(),
        contact_sheet(report, run_dir),
        "<h2>Configuration</h2>",
        "<details><summary>resolved configuration</summary><pre>"
        f"{esc(json.dumps(report.get('config') or {}, indent=1))}</pre></details>",
    ]
    return page("layercut evaluation", "\n".join(parts))


def write_report_html(report: Mapping[str, Any], run_dir: str | Path) -> Path:
    """Write ``run_dir/report.html`` (pictures read from ``run_dir/thumbs``)."""
    out = Path(run_dir)
    path = out / "report.html"
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(render_report(report, out), encoding="utf-8")
    tmp.replace(path)
    return path
