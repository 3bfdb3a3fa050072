"""Train the main-subject ranker on synthetic scenes (``tools.synth``) and write it as JSON.

    python -m tools.train_ranker reports/ranker/train/manifest.json -o pipeline/models/ranker.json

Pairwise, not pointwise: whether an instance is *the* subject depends on the other instances
of its photo (a 10 %-area object is the subject of a still life and a bystander next to a
50 %-area person), so the model learns from within-scene pairs ``(better, worse)`` — a linear
RankSVM-style logistic regression on feature differences, each scene weighted equally. The
pairwise weights give an order; a 1-D logistic fit of the pairwise score against "main or
interacting" then sets scale and intercept, so the shipped scores are probabilities (the keep
policy's co-subject ratio test reads them that way). Both are linear, so the model ships in the
``layercut-linear-ranker`` JSON format that ``pipeline.stages.rank.build_ranker`` loads.

Cross-validation is grouped by pixel source: ``tools.synth --folds K`` deals the source groups
(background photos and cut-outs) into K disjoint pools and records each scene's ``fold``; fold
k is tested on a model trained on the other folds, and ``check_disjoint`` verifies that no
background or cut-out group is on both sides. The regularisation ``C`` is picked by CV p@1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from pipeline.eval.dataset import load_dataset, load_ground_truth
from pipeline.eval.proposals import gt_masks
from pipeline.features import FEATURE_NAMES, compute_features
from pipeline.features.salient import SALIENCY_NAMES
from pipeline.stages.rank import PRIOR, LinearRanker
from pipeline.types import Instance, mask_to_xyxy

# Cues the ranker uses. Left out: partner_id (an id, not a quantity), det_score (1.0 for every
# ground-truth proposal, so it carries nothing here) and the saliency cues (0 without a map; the
# default pipeline runs none, and a weight learned on constants would be noise).
RANK_FEATURES: tuple[str, ...] = tuple(
    name for name in FEATURE_NAMES if name not in ("partner_id", "det_score", *SALIENCY_NAMES)
)
KEPT_ROLES = ("main", "interacting")
C_GRID = (0.01, 0.1, 1.0, 10.0)


@dataclass(frozen=True)
class Table:
    """Instance rows of a synthetic dataset.

    Attributes:
        x: ``(N, F) float64`` features (``RANK_FEATURES`` order).
        scene: ``(N,) int`` scene index; rank: ``(N,) int`` GT rank (1 = most salient);
        kept: ``(N,) bool`` role is main or interacting; fold: ``(N,) int`` source fold.
        subclass, groups: per scene, its subclass and the set of its source groups.
    """

    x: np.ndarray
    scene: np.ndarray
    rank: np.ndarray
    kept: np.ndarray
    fold: np.ndarray
    subclass: tuple[str, ...]
    groups: tuple[frozenset[str], ...]


def _instances(item, gt) -> tuple[list[Instance], list[int]]:
    out, idx = [], []
    for k, (gt_index, label, mask) in enumerate(gt_masks(item, gt)):
        out.append(Instance(k, mask_to_xyxy(mask), label, -1, 1.0, mask, source="gt"))
        idx.append(gt_index)
    return out, idx


def load_table(manifest: str | Path, features: Sequence[str] = RANK_FEATURES) -> Table:
    """Features of every GT instance of a ``tools.synth`` manifest (``pipeline.features``)."""
    raw = json.loads(Path(manifest).read_text(encoding="utf-8"))
    extra = {it["name"]: it for it in raw["items"]}
    rows, scene, rank, kept, fold, subclass, groups = [], [], [], [], [], [], []
    for s, item in enumerate(load_dataset(manifest)):
        gt = load_ground_truth(item)
        instances, gt_ids = _instances(item, gt)
        for inst, gt_index in zip(compute_features(gt.image, instances), gt_ids, strict=True):
            rows.append([inst.features[f] for f in features])
            scene.append(s)
            rank.append(item.ranks.get(gt_index, 99))
            kept.append(item.roles.get(gt_index) in KEPT_ROLES)
            fold.append(int(extra[item.name].get("fold", 0)))
        subclass.append(item.subclass)
        src = extra[item.name].get("sources", {})
        groups.append(frozenset([src.get("background", ""), *src.get("cutouts", [])]))
    return Table(
        np.asarray(rows, np.float64),
        np.asarray(scene),
        np.asarray(rank),
        np.asarray(kept),
        np.asarray(fold),
        tuple(subclass),
        tuple(groups),
    )


def pairs(table: Table, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Within-scene pairs among ``rows`` with different GT ranks, both orientations.

    Returns ``(diff (P, F), y (P,) in {0, 1}, weight (P,))``; each scene's weights sum to 1.
    """
    diffs, ys, ws = [], [], []
    for s in np.unique(table.scene[rows]):
        idx = rows[table.scene[rows] == s]
        found = [(i, j) for i in idx for j in idx if table.rank[i] < table.rank[j]]
        for i, j in found:
            d = table.x[i] - table.x[j]
            diffs += [d, -d]
            ys += [1, 0]
            ws += [0.5 / len(found)] * 2
    return np.asarray(diffs), np.asarray(ys), np.asarray(ws)


def fit(
    table: Table,
    rows: np.ndarray,
    c: float,
    name: str = "ranker",
    features: Sequence[str] = RANK_FEATURES,
) -> LinearRanker:
    """Pairwise logistic regression + 1-D calibration on ``rows``; a ``LinearRanker`` over
    ``features`` (the names of ``table.x``'s columns, in order)."""
    x = table.x[rows]
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0  # a constant feature: its weight ends at ~0 anyway
    std_table = Table((table.x - mean) / scale, *_rest(table))
    diff, y, w = pairs(std_table, rows)
    if len(diff) == 0:
        raise ValueError("no scene with instances of different ranks to learn from")
    pairwise = LogisticRegression(C=c, fit_intercept=False, max_iter=2000)
    pairwise.fit(diff, y, sample_weight=w * len(w))
    coef = pairwise.coef_[0]
    score = std_table.x[rows] @ coef
    calib = LogisticRegression(C=100.0, max_iter=1000)
    calib.fit(score[:, None], table.kept[rows])
    a, b = float(calib.coef_[0, 0]), float(calib.intercept_[0])
    if a <= 0:  # calibration must keep the pairwise order (a > 0); keep the raw weights then
        a, b = 1.0, 0.0
    return LinearRanker(features, coef * a, b, mean, scale, name=name, link="logistic")


def margin(ranker: LinearRanker, x: np.ndarray) -> np.ndarray:
    """``(N,)`` pre-link scores of a ``(N, F)`` matrix in the ranker's feature order (the
    link is monotone, so the order is the ranker's)."""
    return ranker.intercept + ((x - ranker.mean) / ranker.scale) @ ranker.coef


def _rest(table: Table) -> tuple:
    return (table.scene, table.rank, table.kept, table.fold, table.subclass, table.groups)


def scene_scores(table: Table, scores: np.ndarray, rows: np.ndarray) -> dict[int, bool]:
    """scene → whether its top-scored instance is a kept one (precision@1 on GT proposals)."""
    out = {}
    for s in np.unique(table.scene[rows]):
        idx = rows[table.scene[rows] == s]
        if len(idx) >= 2:
            out[int(s)] = bool(table.kept[idx[np.argmax(scores[idx])]])
    return out


def feature_scores(table: Table, name: str) -> np.ndarray:
    return table.x[:, RANK_FEATURES.index(name)]


def check_disjoint(table: Table, train_rows: np.ndarray, test_rows: np.ndarray) -> None:
    """``RuntimeError`` when a background or cut-out group feeds both sides of a CV split."""
    train = set().union(*(table.groups[s] for s in np.unique(table.scene[train_rows])))
    test = set().union(*(table.groups[s] for s in np.unique(table.scene[test_rows])))
    shared = sorted(train & test - {""})
    if shared:
        raise RuntimeError(f"source groups in both CV train and test: {shared}")


def prior_scores(table: Table) -> np.ndarray:
    """The hand-set prior on the same rows (features it needs that the table lacks: GT values)."""
    cols = {name: table.x[:, k] for k, name in enumerate(RANK_FEATURES)}
    n = len(table.x)
    # GT proposals: detector score 1, no saliency map (every map cue 0, as in compute_features)
    cols.update(
        det_score=np.ones(n),
        sal_mean_inside=np.zeros(n),
        sal_share=np.zeros(n),
        sal_cover=np.zeros(n),
    )
    x = np.stack([cols[f] for f in PRIOR.features], axis=1)
    z = PRIOR.intercept + ((x - PRIOR.mean) / PRIOR.scale) @ PRIOR.coef
    return z


def cross_validate(table: Table, c: float) -> dict[str, Any]:
    """Grouped CV over the source folds: p@1 of the learned ranker and the baselines."""
    folds = np.unique(table.fold)
    if len(folds) < 2:
        raise ValueError("cross-validation needs ≥ 2 folds (tools.synth --folds K)")
    learned = np.zeros(len(table.x))
    for k in folds:
        test_rows = np.flatnonzero(table.fold == k)
        train_rows = np.flatnonzero(table.fold != k)
        check_disjoint(table, train_rows, test_rows)
        learned[test_rows] = margin(fit(table, train_rows, c), table.x[test_rows])
    rows = np.arange(len(table.x))
    candidates = {
        "learned": learned,
        "largest": feature_scores(table, "area_frac"),
        "central": feature_scores(table, "centrality"),
        "prior": prior_scores(table),
    }
    out: dict[str, Any] = {}
    for name, scores in candidates.items():
        hits = scene_scores(table, scores, rows)
        per: dict[str, list[bool]] = {}
        for s, hit in hits.items():
            per.setdefault(table.subclass[s], []).append(hit)
        out[name] = {
            "p_at_1": float(np.mean(list(hits.values()))),
            "by_subclass": {k: float(np.mean(v)) for k, v in sorted(per.items())},
        }
    return out


def train(manifest: str | Path, out: str | Path, cv_out: str | Path | None = None) -> dict:
    """Pick ``C`` by grouped CV, fit on every scene, write the JSON; returns the CV summary."""
    table = load_table(manifest)
    results = {c: cross_validate(table, c) for c in C_GRID}
    # best CV p@1; on ties the smaller C (stronger regularisation)
    best_c = max(C_GRID, key=lambda c: (results[c]["learned"]["p_at_1"], -c))
    ranker = fit(table, np.arange(len(table.x)), best_c, name="ranker")
    doc = ranker.to_dict()
    raw = json.loads(Path(manifest).read_text(encoding="utf-8"))
    doc["training"] = {
        "tool": "tools.train_ranker",
        "data": str(manifest),
        "generator_seed": raw.get("seed"),
        "scenes": len(table.subclass),
        "instances": len(table.x),
        "folds": int(len(np.unique(table.fold))),
        "method": "pairwise logistic regression (within-scene pairs) + 1-D logistic calibration",
        "C": best_c,
        "cv_p_at_1": results[best_c]["learned"]["p_at_1"],
        "date": date.today().isoformat(),
    }
    Path(out).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    summary = {"C": best_c, "cv": {str(c): r for c, r in results.items()}}
    if cv_out is not None:
        Path(cv_out).write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.train_ranker", description=__doc__.split("\n")[0]
    )
    parser.add_argument("manifest", help="training manifest.json from tools.synth --folds K")
    parser.add_argument("-o", "--out", required=True, help="ranker JSON to write")
    parser.add_argument("--cv-out", default=None, help="write the CV results (JSON) here")
    args = parser.parse_args(argv)
    try:
        summary = train(args.manifest, args.out, args.cv_out)
    except (ValueError, RuntimeError) as exc:
        print(f"train_ranker: {exc}", file=sys.stderr)
        return 2
    best = summary["cv"][str(summary["C"])]
    for name, res in best.items():
        subs = " ".join(f"{k}={v:.2f}" for k, v in res["by_subclass"].items())
        print(f"CV p@1 {name:8s} {res['p_at_1']:.3f}  {subs}")
    print(f"C={summary['C']}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
