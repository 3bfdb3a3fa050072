"""The cross-validation's outputs (``tools.cv_select``): the per-set table, and a report with
thumbnails in the evaluation's layout for ``tools/contact_sheet.py``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.eval import thumbs
from pipeline.eval.dataset import load_dataset
from tools.select_data import Prepared

SETS = ("davis2016_train", "davis2016_val", "davis2017_testdev", "grabcut", "ecssd_multi")
SIMPLE_RULES = ("top_score", "largest", "central", "all")


def set_order(set_of: dict[str, str]) -> list[str]:
    """The sets of ``set_of`` (item → set): ``SETS``' order first, any other set after, sorted."""
    present = set(set_of.values())
    return [s for s in SETS if s in present] + sorted(present - set(SETS))


def best_rule(rows: dict[str, dict[str, float]]) -> str:
    """The simple rule (``SIMPLE_RULES``) with the highest mean IoU over ``rows``."""
    rules = {name: np.mean([rows[n][f"rule_{name}"] for n in rows]) for name in SIMPLE_RULES}
    return max(rules, key=rules.get)


def table(rows: dict[str, dict[str, float]], set_of: dict[str, str]) -> tuple[str, dict]:
    """The per-set markdown table and its numbers (means over items)."""
    groups = {s: [n for n in rows if set_of[n] == s] for s in set_order(set_of)}
    groups["overall"] = list(rows)
    best_rule_name = best_rule(rows)
    columns = [
        ("ours (map)", "ours_map_iou"),
        ("map alone", "map_alone"),
        ("Δ vs map", None),
        ("all at 0.5 (map)", "ours_map_sym_iou"),
        ("before (salient)", "before_map"),
        ("oracle union (map)", "oracle_union_map"),
        ("oracle segments (map)", "oracle_segments_map"),
        ("ours (no map)", "ours_nomap_iou"),
        (f"best rule ({best_rule_name})", f"rule_{best_rule_name}"),
        ("Δ vs rule", None),
        ("all at 0.5 (no map)", "ours_nomap_sym_iou"),
        ("detector alone (before)", "before_nomap"),
        *((f"rule {n}", f"rule_{n}") for n in SIMPLE_RULES if n != best_rule_name),
        ("oracle union (no map)", "oracle_union_nomap"),
        ("oracle segments (no map)", "oracle_segments_nomap"),
    ]
    numbers: dict[str, dict[str, float]] = {}
    lines = [
        "| set | n | " + " | ".join(c for c, _ in columns) + " | empty (map/no map/before) |",
        "|---|---:|" + "---:|" * len(columns) + "---|",
    ]
    for name, members in groups.items():
        if not members:
            continue
        mean = {key: float(np.mean([rows[n][key] for n in members])) for _, key in columns if key}
        mean["delta_map"] = mean["ours_map_iou"] - mean["map_alone"]
        mean["delta_rule"] = mean["ours_nomap_iou"] - mean[f"rule_{best_rule_name}"]
        empties = [
            int(sum(rows[n][key] for n in members))
            for key in ("ours_map_empty", "ours_nomap_empty", "before_map_empty")
        ]
        numbers[name] = {**mean, "n": len(members)}
        cells = []
        for title, key in columns:
            if key is None:
                value = mean["delta_map"] if title == "Δ vs map" else mean["delta_rule"]
                cells.append(f"{value:+.3f}")
            else:
                cells.append(f"{mean[key]:.3f}")
        empty = "/".join(map(str, empties))
        lines.append(f"| {name} | {len(members)} | " + " | ".join(cells) + f" | {empty} |")
    return "\n".join(lines), numbers


def intervals(
    rows: dict[str, dict[str, float]], group_of: dict[str, str], draws: int = 4000, seed: int = 0
) -> dict[str, list[float]]:
    """Overall ``delta_map`` (ours with the map − the map alone) and ``delta_rule`` (ours
    without it − the best simple rule) as ``[mean, low, high]``: the 95 % interval of the mean
    over ``draws`` bootstrap resamples of whole groups (a DAVIS sequence's frames are drawn
    together, as the folds keep them), so the reader sees how far the CV's figure could move
    on another draw of photos like these."""
    names = sorted(rows)
    best = max(SIMPLE_RULES, key=lambda r: np.mean([rows[n][f"rule_{r}"] for n in names]))
    deltas = {
        "delta_map": np.array([rows[n]["ours_map_iou"] - rows[n]["map_alone"] for n in names]),
        "delta_rule": np.array(
            [rows[n]["ours_nomap_iou"] - rows[n][f"rule_{best}"] for n in names]
        ),  # fmt: skip
    }
    groups = sorted({group_of[n] for n in names})
    members = [np.flatnonzero([group_of[n] == g for n in names]) for g in groups]
    rng = np.random.default_rng(seed)
    picks = [np.concatenate([members[i] for i in rng.integers(0, len(groups), len(groups))])
             for _ in range(draws)]  # fmt: skip
    out = {}
    for key, delta in deltas.items():
        means = np.array([delta[p].mean() for p in picks])
        low, high = np.percentile(means, [2.5, 97.5])
        out[key] = [float(delta.mean()), float(low), float(high)]
    return out


def interval_text(found: dict[str, list[float]]) -> str:
    def fmt(v: list[float]) -> str:
        return f"{v[0]:+.3f} (95 % interval over groups {v[1]:+.3f} … {v[2]:+.3f})"

    return (f"overall Δ vs map {fmt(found['delta_map'])}; "
            f"Δ vs best rule (no map) {fmt(found['delta_rule'])}")  # fmt: skip


def write_sheet_report(
    out: Path, rows: dict, records: list[Prepared], regions: dict, manifest: str | None = None
) -> Path:
    """``out/report.json`` + ``out/thumbs/*.jpg`` (photo, gt, result = ours with the map,
    nomap = ours without it, salient = the map alone): per item ``iou`` (ours, map on),
    ``iou_rule_salient`` (the map alone), ``iou_nomap`` and ``iou_rule_<rule>``."""
    from pipeline.eval.dataset import load_ground_truth

    folder = out / "thumbs"
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    by_name = {}
    if manifest is not None:
        by_name = {it.name: it for it in load_dataset(manifest)}
    for rec in records:
        row = rows[rec.name]
        item = by_name.get(rec.name)
        image = load_ground_truth(item).image if item is not None else None
        metrics = {
            "iou": row["ours_map_iou"],
            "iou_rule_salient": row["map_alone"],
            "iou_nomap": row["ours_nomap_iou"],
            **{f"iou_rule_{r}": row[f"rule_{r}"] for r in SIMPLE_RULES},
        }
        pictures = {"gt": thumbs.gray(rec.gt)}
        if image is not None:
            pictures["photo"] = thumbs.photo(image)
            alpha = {
                "result": regions[rec.name]["map"],
                "nomap": regions[rec.name]["nomap"],
                "salient": rec.saliency >= 0.5,
            }
            for kind, region in alpha.items():
                rgba = np.dstack([image, region.astype(np.uint8) * 255])
                pictures[kind] = thumbs.checkerboard(rgba)
        written = {}
        for kind, rgb in pictures.items():
            rel = f"thumbs/{rec.name}_{kind}.jpg"
            thumbs.write_thumb(rgb, out / rel)
            written[kind] = rel
        items.append({"name": rec.name, "set": rec.set_name, "subclass": rec.set_name,
                      "status": "ok", "metrics": metrics, "thumbs": written})  # fmt: skip
    path = out / "report.json"
    path.write_text(json.dumps({"items": items}, indent=1) + "\n", encoding="utf-8")
    return path
