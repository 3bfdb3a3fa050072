"""Shared pieces of the self-contained HTML pages: style, a click-to-sort script, cells,
tables and base64-embedded images (no file the page points to, so it can be mailed or archived).
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

STYLE = """
body{font:13px/1.4 system-ui,sans-serif;margin:16px;color:#222}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:24px 0 6px}
.note{background:#fff7d6;border:1px solid #e6d38a;padding:6px 10px;margin:8px 0;max-width:1100px}
table{border-collapse:collapse;margin:6px 0}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:right;vertical-align:middle}
th{background:#f0f0f0;cursor:pointer;white-space:nowrap;user-select:none}
th[data-dir=asc]::after{content:" \\25B2"} th[data-dir=desc]::after{content:" \\25BC"}
td.t{text-align:left} td.img{padding:1px} td.img img{display:block;max-width:256px}
.worse{background:#f8c9c4;font-weight:600} .better{background:#cdebd0}
.failed{color:#b00;font-weight:600} .muted{color:#888}
.legend{color:#555;max-width:1100px}
.scroll{overflow-x:auto;max-width:100%;margin:6px 0}
.scroll>table{margin:0}
code{overflow-wrap:anywhere}
pre{white-space:pre-wrap;overflow-wrap:anywhere}
.swatch{display:inline-block;width:12px;height:12px;vertical-align:-1px;margin:0 4px 0 10px;
border:1px solid #888}
"""

SORT_SCRIPT = """
document.querySelectorAll('table.sortable th').forEach(function (th) {
  th.addEventListener('click', function () {
    var table = th.closest('table'), body = table.tBodies[0];
    var col = Array.prototype.indexOf.call(th.parentNode.children, th);
    var asc = th.dataset.dir !== 'asc';
    th.parentNode.querySelectorAll('th').forEach(function (o) { delete o.dataset.dir; });
    th.dataset.dir = asc ? 'asc' : 'desc';
    function key(row) {
      var cell = row.cells[col];
      return cell.hasAttribute('data-v') ? cell.getAttribute('data-v') : cell.textContent;
    }
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a), y = key(b), nx = parseFloat(x), ny = parseFloat(y);
      if (isNaN(nx) !== isNaN(ny)) return isNaN(nx) ? 1 : -1;  // blanks last
      if (!isNaN(nx)) return asc ? nx - ny : ny - nx;
      return asc ? x.localeCompare(y) : y.localeCompare(x);
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""


@dataclass(frozen=True)
class Cell:
    """One table cell: inner HTML (already escaped), optional sort key and CSS class."""

    html: str
    sort: str | None = None
    css: str = ""


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def text_cell(text: object, css: str = "t") -> Cell:
    return Cell(esc(text), None, css)


def fmt(value: object, digits: int = 4) -> str:
    """A number with ``digits`` significant digits, ``–`` for missing values."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def number_cell(value: object, css: str = "") -> Cell:
    """A numeric cell sortable by its exact value (blank sort key when missing)."""
    sort = "" if value is None else repr(value)
    return Cell(esc(fmt(value)), sort, css)


def image_data_uri(path: Path) -> str:
    """``data:image/jpeg;base64,…`` of a JPEG (or ``image/png`` for .png) file."""
    mime = "image/png" if path.suffix.lower() == ".png" else "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def image_cell(run_dir: Path, rel: str | None, alt: str) -> Cell:
    """A cell embedding ``run_dir/rel`` as base64, or a dash when there is no picture."""
    if not rel or not (run_dir / rel).is_file():
        return Cell('<span class="muted">–</span>', "", "img")
    uri = image_data_uri(run_dir / rel)
    return Cell(f'<img src="{uri}" alt="{esc(alt)}" loading="lazy">', None, "img")


def table(headers: Sequence[str], rows: Sequence[Sequence[Cell]], css_id: str = "") -> str:
    """A ``<table class="sortable">`` with clickable headers, in a box that scrolls sideways
    when the table is wider than the window."""
    ident = f' id="{esc(css_id)}"' if css_id else ""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for c in row:
            attrs = f' class="{c.css}"' if c.css else ""
            if c.sort is not None:
                attrs += f' data-v="{esc(c.sort)}"'
            cells.append(f"<td{attrs}>{c.html}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    # the box scrolls sideways, not the page: a wide contact sheet fits any window
    return (
        f'<div class="scroll"><table class="sortable"{ident}><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def error_map_legend() -> str:
    """A one-line key to the error map's colours (``pipeline.eval.thumbs.error_map``)."""
    from pipeline.eval.thumbs import FALSE_POSITIVE_RGB, MISSED_RGB

    def swatch(rgb: tuple[int, int, int]) -> str:
        return f'<span class="swatch" style="background:rgb{tuple(rgb)}"></span>'

    return (
        '<p class="legend maplegend">Error map:'
        f"{swatch(FALSE_POSITIVE_RGB)}kept, but not part of the ground truth (extra)"
        f"{swatch(MISSED_RGB)}part of the ground truth, but not kept (missed)"
        f"{swatch((80, 80, 80))}right (the photo, dimmed). Partial colour: partly wrong "
        "alpha.</p>"
    )


def page(title: str, body: str) -> str:
    """A whole HTML document with the style and the sort script inlined."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>\n{body}\n"
        f"<script>{SORT_SCRIPT}</script></body></html>\n"
    )
