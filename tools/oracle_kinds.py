"""Where the oracle over segments gains over the map alone, by segment kind.

For every photo of a stage cache (``tools.select_cache``, map on), the product's segments
(``pipeline.stages.segments.split_segments`` after the map step, as ``tools.select_data``
prepares them) start from the map alone's choice (every salient kind kept, ``detector``
segments left out: the map at 0.5 less its specks under ``MIN_FREE_FRAC``, within 0.001 of
``map_alone`` in ``tools.cv_select`` on the 172 photos); then one kind at a time is decided as
the oracle would (a segment kept when more of it lies inside the GT main region than outside,
the ignore band not counted),
every other kind left at the map's choice; then every kind at once (the oracle over segments
of ``tools.cv_select``). Mean IoU of the kept region per set and overall, so a reader sees which
decision holds the headroom: dropping salient objects the GT leaves out (``both``, ``free``),
or adding what the map misses (``detector``). Usage::

    python -m tools.oracle_kinds ../shared/data/eval/manifest.json --cache CACHE/eval \\
        [-o OUT]   # OUT/oracle_kinds.md, .json

No model is fitted: these are headroom figures, not results (the per-segment majority is the
oracle of ``tools.cv_select``, not always the IoU optimum: a set can score below the map).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.config import load_config
from pipeline.stages.segments import KINDS, SALIENT_KINDS
from tools.cv_report import SETS, set_order
from tools.select_data import Prepared, load_records

COLUMNS = ("map_alone", *(f"oracle_{kind}" for kind in KINDS), "oracle_all")


def kind_oracles(rec: Prepared) -> dict[str, float]:
    """IoU of ``rec``'s kept region for each of ``COLUMNS`` (a map-on record)."""
    if rec.saliency is None:
        raise ValueError(f"{rec.name}: the oracle by kind needs the map")
    kinds = np.array([s.kind for s in rec.segments], dtype=object)
    start = np.isin(kinds, SALIENT_KINDS)
    oracle = rec.seg_in > rec.seg_out
    out = {"map_alone": rec.iou_of(rec.region(start))}
    for kind in KINDS:
        keep = np.where(kinds == kind, oracle, start)
        out[f"oracle_{kind}"] = rec.iou_of(rec.region(keep))
    out["oracle_all"] = rec.iou_of(rec.region(oracle))
    return out


def summary(rows: dict[str, dict[str, float]], set_of: dict[str, str]) -> dict:
    """``{set: {column: mean IoU}, "overall": …}`` and each set's photo count under ``"n"``."""
    out: dict = {}
    for group in [*set_order(set_of), "overall"]:
        names = [n for n in rows if group == "overall" or set_of[n] == group]
        out[group] = {c: float(np.mean([rows[n][c] for n in names])) for c in COLUMNS}
        out[group]["n"] = len(names)
    return out


def markdown(numbers: dict) -> str:
    head = "| set | n | " + " | ".join(COLUMNS) + " |"
    lines = [head, "|---|" + "---:|" * (len(COLUMNS) + 1)]
    for group, row in numbers.items():
        cells = " | ".join(f"{row[c]:.3f}" for c in COLUMNS)
        lines.append(f"| {group} | {row['n']} | {cells} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.oracle_kinds", description=__doc__.split("\n")[0]
    )
    parser.add_argument("manifest", help="the real photos' manifest.json")
    parser.add_argument("--cache", required=True, help="stage cache of the photos (with the map)")
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--config", default="cpu", help="preset whose map settings are used")
    parser.add_argument("-o", "--out", default=None, help="folder for oracle_kinds.md / .json")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, ["select.method=rules"], device="cpu")
        sets = tuple(s for s in args.sets.split(",") if s)
        on, _ = load_records(args.manifest, args.cache, config, sets)
        if not on:
            raise ValueError(f"no cached photo of {args.manifest} in {args.cache}")
        rows = {rec.name: kind_oracles(rec) for rec in on}
    except (ValueError, OSError) as exc:
        print(f"oracle_kinds: {exc}", file=sys.stderr)
        return 2
    numbers = summary(rows, {rec.name: rec.set_name for rec in on})
    text = markdown(numbers)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "oracle_kinds.md").write_text(text + "\n", encoding="utf-8")
        doc = {"args": vars(args), "per_set": numbers, "items": rows}
        (out / "oracle_kinds.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
