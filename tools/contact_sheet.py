"""Contact sheet of selected items of an evaluation run: one row per item, thumbnails side by
side, a caption with the item's name and metrics.

    python tools/contact_sheet.py RUN_DIR -o sheet.png --by iou-iou_rule_salient --abs --top 10 \\
        --kinds photo gt result salient
    python tools/contact_sheet.py RUN_DIR -o worst.png --by sad --top 5 \\
        --kinds photo gt result error

``--by`` is a metric of ``report.json`` items, or ``A-B`` for the difference of two; items are
sorted by it, largest first (``--ascending`` for smallest first, ``--abs`` by magnitude). Thumbs
come from the run's ``thumbs/`` folder (``pipeline.eval.run.write_item_thumbs``); a kind an item
lacks is left blank. Output: one RGB PNG; the chosen items are also printed as a table.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CELL_PX = 256  # thumbs are at most this wide and high
CAPTION_PX = 18
GAP_PX = 4


def metric_value(metrics: dict, key: str) -> float:
    """``metrics[key]``, or ``metrics[a] - metrics[b]`` for ``key = "a-b"``; NaN if absent."""
    if key in metrics:
        value = metrics[key]
    elif "-" in key:
        a, b = key.split("-", 1)
        value = metrics.get(a, math.nan) - metrics.get(b, math.nan) if a in metrics else math.nan
    else:
        value = math.nan
    return float(value) if isinstance(value, (int, float)) else math.nan


def choose(items: list[dict], key: str, top: int, ascending: bool, by_abs: bool) -> list[dict]:
    """The ``top`` ok items with a finite ``key``, sorted as asked."""
    scored = []
    for item in items:
        value = metric_value(item.get("metrics") or {}, key)
        if item.get("status") == "ok" and math.isfinite(value):
            scored.append((abs(value) if by_abs else value, value, item))
    scored.sort(key=lambda t: t[0], reverse=not ascending)
    return [dict(item, _value=value) for _, value, item in scored[:top]]


def _thumbs_of(run_dir: Path, item: dict, kinds: list[str]) -> list[Image.Image | None]:
    """The item's thumbs for ``kinds`` as RGB images at most CELL_PX a side (None if absent)."""
    out = []
    for kind in kinds:
        rel = (item.get("thumbs") or {}).get(kind)
        if not rel or not (run_dir / rel).is_file():
            out.append(None)
            continue
        with Image.open(run_dir / rel) as thumb:
            thumb = thumb.convert("RGB")
        thumb.thumbnail((CELL_PX, CELL_PX))
        out.append(thumb)
    return out


def render(run_dir: Path, chosen: list[dict], kinds: list[str], key: str, captions: list[str]):
    """``H×W×3 uint8`` sheet: a header row naming the kinds, then one row per chosen item, as
    high as its tallest thumb."""
    rows = [_thumbs_of(run_dir, item, kinds) for item in chosen]
    heights = [max((t.height for t in row if t is not None), default=CAPTION_PX) for row in rows]
    width = len(kinds) * (CELL_PX + GAP_PX) + GAP_PX
    total = CAPTION_PX + sum(h + CAPTION_PX + GAP_PX for h in heights)
    sheet = Image.new("RGB", (width, total), "white")
    draw = ImageDraw.Draw(sheet)
    for col, kind in enumerate(kinds):
        draw.text((GAP_PX + col * (CELL_PX + GAP_PX), 3), kind, fill="black")
    top = CAPTION_PX
    for item, row, height in zip(chosen, rows, heights, strict=True):
        metrics = item.get("metrics") or {}
        shown = " ".join(f"{m}={metric_value(metrics, m):.3f}" for m in captions)
        head = item["name"] if key in captions else f"{item['name']}  {key}={item['_value']:+.3f}"
        draw.text((GAP_PX, top + 3), f"{head}  {shown}", fill="black")
        for col, thumb in enumerate(row):
            if thumb is not None:
                sheet.paste(thumb, (GAP_PX + col * (CELL_PX + GAP_PX), top + CAPTION_PX))
        top += height + CAPTION_PX + GAP_PX
    return np.asarray(sheet)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="an evaluation output folder (report.json)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="PNG to write")
    parser.add_argument("--by", default="iou", help="metric or A-B difference to sort by")
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--ascending", action="store_true", help="smallest first")
    parser.add_argument("--abs", action="store_true", help="sort by magnitude")
    parser.add_argument("--kinds", nargs="+", default=["photo", "gt", "result", "error"])
    parser.add_argument("--captions", nargs="*", default=None, help="metrics in each caption")
    args = parser.parse_args(argv)
    report_path = args.run_dir / "report.json"
    try:
        report = json.loads(report_path.read_text())
    except (OSError, ValueError) as exc:
        print(f"error: cannot read {report_path}: {exc}", file=sys.stderr)
        return 2
    chosen = choose(report.get("items", []), args.by, args.top, args.ascending, args.abs)
    if not chosen:
        print(f"error: no item of {report_path} has metric {args.by!r}", file=sys.stderr)
        return 1
    captions = args.captions if args.captions is not None else args.by.split("-")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(render(args.run_dir, chosen, args.kinds, args.by, captions)).save(args.output)
    print(f"{'item':24s} {args.by:>24s}  " + "  ".join(f"{m:>16s}" for m in captions))
    for item in chosen:
        metrics = item.get("metrics") or {}
        values = "  ".join(f"{metric_value(metrics, m):16.3f}" for m in captions)
        print(f"{item['name']:24s} {item['_value']:+24.3f}  {values}")
    print(f"sheet: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
