"""Summarise ``tools.cv_select`` over several deals of the groups into folds (``--seed``).

One deal's numbers move with the deal: over the 172 photos, five deals of the same recipe gave
+0.008 … +0.020 over the map alone, and the two deals every design choice was first measured on
were the two highest (``pipeline/models/KEEP_CARD.md``). A result is the mean over deals that
played no part in choosing it, beside the spread. Usage::

    for s in 0 1 2 3 4; do python -m tools.cv_select … --seed $s -o OUT/s$s; done
    python -m tools.cv_deals OUT/s*/cv.json -o OUT

Runs over disjoint sets of photos with the same seed (``cv_select --sets``, e.g. one model
per annotation convention) form one deal with ``--join K``: every K consecutive runs are one
deal, their photos pooled::

    python -m tools.cv_deals --join 2 OUT/multi_s0/cv.json OUT/single_s0/cv.json \
        OUT/multi_s1/cv.json OUT/single_s1/cv.json

Per set and overall, for each deal: ours minus the map alone (with the map) and ours minus the
best simple rule of that deal's table (without the map, the rule ``tools.cv_report.table``
names), then the mean and the lowest over deals; and how many deals meet each of the issue's
targets. Writes ``deals.md`` and ``deals.json`` to ``-o`` when given.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tools.cv_report import best_rule, set_order

# the targets (#12): gain overall, and the lowest set's gain, per mode
TARGETS = {"map": (0.03, -0.01), "nomap": (0.03, 0.0)}


def deal_deltas(doc: dict) -> dict[str, dict[str, float]]:
    """``{"map": {set: Δ, …, "overall": Δ}, "nomap": {…}}`` of one ``cv.json`` document:
    mean over a set's photos of ours minus the map alone, and of ours without the map minus
    the best simple rule overall (the column ``tools.cv_report.table`` compares with)."""
    items, set_of = doc["items"], doc["sets"]
    if not items:
        raise ValueError("a cv.json without items")
    names = list(items)
    best = f"rule_{best_rule(items)}"
    out: dict[str, dict[str, float]] = {"map": {}, "nomap": {}}
    for group in [*set_order(set_of), "overall"]:
        members = names if group == "overall" else [n for n in names if set_of[n] == group]
        out["map"][group] = float(
            np.mean([items[n]["ours_map_iou"] - items[n]["map_alone"] for n in members])
        )
        out["nomap"][group] = float(
            np.mean([items[n]["ours_nomap_iou"] - items[n][best] for n in members])
        )
    return out


def join_docs(docs: Sequence[dict]) -> dict:
    """One ``cv.json`` document of runs over disjoint photos with the same seed: their items
    and sets pooled, the first run's ``args``. ``ValueError`` when a photo is in two runs or
    the seeds differ (the runs would not be one deal)."""
    if not docs:
        raise ValueError("nothing to join")
    seeds = {doc.get("args", {}).get("seed") for doc in docs}
    if len(seeds) != 1:
        raise ValueError(f"joined runs must share one seed, got {sorted(map(str, seeds))}")
    items: dict = {}
    sets: dict = {}
    for doc in docs:
        shared = set(items) & set(doc["items"])
        if shared:
            raise ValueError(f"joined runs share photos, e.g. {sorted(shared)[0]!r}")
        items.update(doc["items"])
        sets.update(doc["sets"])
    return {"args": docs[0].get("args", {}), "items": items, "sets": sets}


def summarise(deltas: Sequence[dict]) -> dict:
    """Mean and lowest over deals per mode and set, each deal's lowest set, and how many
    deals meet each target (``TARGETS``)."""
    if not deltas:
        raise ValueError("no deal to summarise")
    out: dict = {}
    for mode, (gain, floor) in TARGETS.items():
        groups = list(deltas[0][mode])
        per = {g: [d[mode][g] for d in deltas] for g in groups}
        lowest_set = [min(v for g, v in d[mode].items() if g != "overall") for d in deltas]
        out[mode] = {
            "per_deal": per,
            "mean": {g: float(np.mean(v)) for g, v in per.items()},
            "lowest": {g: float(np.min(v)) for g, v in per.items()},
            "lowest_set_per_deal": lowest_set,
            "deals_meeting_gain": int(sum(v >= gain for v in per["overall"])),
            "deals_meeting_floor": int(sum(v >= floor for v in lowest_set)),
            "targets": {"overall_gain": gain, "lowest_set": floor},
        }
    return out


def text(summary: dict, labels: Sequence[str]) -> str:
    """Markdown: one table per mode (rows: sets and overall; columns: deals, mean, lowest)."""
    lines = []
    for mode, title in (("map", "with the map: ours − map alone"),
                        ("nomap", "without the map: ours − best simple rule")):  # fmt: skip
        s = summary[mode]
        lines += [f"### {title}", "", "| set | " + " | ".join(labels) + " | mean | lowest |",
                  "|---|" + "---:|" * (len(labels) + 2)]  # fmt: skip
        for group, values in s["per_deal"].items():
            cells = " | ".join(f"{v:+.3f}" for v in values)
            name = f"**{group}**" if group == "overall" else group
            lines.append(
                f"| {name} | {cells} | {s['mean'][group]:+.3f} | {s['lowest'][group]:+.3f} |"
            )
        lowest = " | ".join(f"{v:+.3f}" for v in s["lowest_set_per_deal"])
        lines.append(f"| lowest set | {lowest} | {np.mean(s['lowest_set_per_deal']):+.3f} | "
                     f"{min(s['lowest_set_per_deal']):+.3f} |")  # fmt: skip
        t = s["targets"]
        lines += ["", f"deals with overall ≥ {t['overall_gain']:+.2f}: {s['deals_meeting_gain']}"
                      f" of {len(labels)}; with no set below {t['lowest_set']:+.2f}: "
                      f"{s['deals_meeting_floor']} of {len(labels)}", ""]  # fmt: skip
    return "\n".join(lines).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.cv_deals", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "runs", nargs="+", help="cv.json files of tools.cv_select, one per deal (K with --join K)"
    )
    parser.add_argument("-o", "--out", default=None, help="folder for deals.md and deals.json")
    parser.add_argument(
        "--join",
        type=int,
        default=1,
        metavar="K",
        help="every K consecutive runs (disjoint photos, one seed) form one deal (default 1)",
    )
    args = parser.parse_args(argv)
    if args.join < 1 or len(args.runs) % args.join:
        parser.error(f"--join {args.join}: the {len(args.runs)} runs do not split into "
                     f"groups of {args.join}")  # fmt: skip
    docs, labels, names = [], [], []
    try:
        for start in range(0, len(args.runs), args.join):
            parts = [json.loads(Path(p).read_text(encoding="utf-8"))
                     for p in args.runs[start : start + args.join]]  # fmt: skip
            doc = join_docs(parts)
            path = args.runs[start]
            seed = doc.get("args", {}).get("seed")
            labels.append(f"seed {seed}" if seed is not None else Path(path).parent.name)
            docs.append(deal_deltas(doc))
            names.append(set(doc["items"]))
        if any(n != names[0] for n in names):
            raise ValueError("the runs do not hold the same photos")
        summary = summarise(docs)
    except (OSError, ValueError, KeyError) as exc:
        print(f"cv_deals: {exc}", file=sys.stderr)
        return 2
    report = text(summary, labels)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "deals.md").write_text(report, encoding="utf-8")
        doc = {"runs": list(args.runs), "labels": labels, **summary}
        (out / "deals.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(report, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
