"""Ranking on held-out synthetic scenes (GT instances, the real ISNet map): p@1 and SA-SOR of a
ranker that never saw the scenes' pixel sources, beside simple baselines.

    python -m tools.synth_rank_eval --test SYNTH/test/manifest.json --test-cache CACHE/synth_test \
        --train SYNTH/train/manifest.json --train-cache CACHE/synth_train -o OUT

The ranker is fitted as the shipped one (``tools.select_train.fit_ranker``: the training
scenes, with and without the map's cues); the tool refuses when a pixel source (a cut-out or
background group) feeds both splits, so no cut-out or background of the test scenes was seen. Scores
come from the product's ``compute_features`` (with the map) and the ranker's ``score``; p@1 and
SA-SOR are ``pipeline.eval.metrics_select``'s, as ``layercut eval --proposals gt`` reports them.
Writes ``OUT/ranker.json`` (the held-out ranker) and ``OUT/synth_rank.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.config import load_config
from pipeline.eval.metrics_select import precision_at_1, sa_sor
from pipeline.stages.rank import PRIOR, LinearRanker
from tools.select_data import Prepared, load_records
from tools.select_train import fit_ranker


def scene_metrics(rec: Prepared, scores: np.ndarray) -> dict[str, float]:
    """``p_at_1`` (≥ 2 instances) and ``sa_sor`` (where defined) of one scene."""
    out: dict[str, float] = {}
    masks = [inst.mask for inst in rec.instances]
    if len(masks) >= 2:
        out["p_at_1"] = precision_at_1(masks[int(np.argmax(scores))], rec.gt)
    ranked = [(int(r), m) for r, m in zip(rec.ranks, masks, strict=True) if r < 99]
    if len(ranked) >= 2:
        value = sa_sor([m for _, m in ranked], [r for r, _ in ranked], masks, list(scores))
        if value is not None:
            out["sa_sor"] = value
    return out


def one_feature(name: str):
    return lambda rec: np.array([inst.features[name] for inst in rec.instances])


def evaluate(test: Sequence[Prepared], rankers: dict) -> dict[str, dict[str, dict[str, float]]]:
    """ranker name → subclass (and ``overall``) → metric → mean."""
    out = {}
    for name, score_fn in rankers.items():
        per: dict[str, dict[str, list[float]]] = {}
        for rec in test:
            for metric, value in scene_metrics(rec, score_fn(rec)).items():
                for group in (rec.subclass, "overall"):
                    per.setdefault(group, {}).setdefault(metric, []).append(value)
        out[name] = {g: {m: float(np.mean(v)) for m, v in ms.items()} for g, ms in per.items()}
    return out


def table(results: dict, metric: str) -> str:
    names = list(results)
    groups = sorted({g for r in results.values() for g in r} - {"overall"}) + ["overall"]
    lines = [f"| subclass | {' | '.join(names)} |", "|---|" + "---:|" * len(names)]
    for g in groups:
        cells = [results[n].get(g, {}).get(metric) for n in names]
        lines.append(
            f"| {g} | " + " | ".join("–" if c is None else f"{c:.3f}" for c in cells) + " |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.synth_rank_eval", description=__doc__.split("\n")[0]
    )
    for flag in ("--test", "--test-cache", "--train", "--train-cache"):
        parser.add_argument(flag, required=True)
    parser.add_argument("-o", "--out", required=True)
    parser.add_argument("--before-ranker", default=None, help="another ranker JSON to compare")
    args = parser.parse_args(argv)
    config = load_config("cpu", ["select.method=rules"], device="cpu")
    test, _ = load_records(args.test, args.test_cache, config, gt_proposals=True)
    train_on, train_off = load_records(args.train, args.train_cache, config, gt_proposals=True)
    # every scene lists itself among its sources: only the pixel sources count here
    shared = set().union(*(r.sources - {r.name} for r in test)) & set().union(
        *(r.sources - {r.name} for r in train_on)
    )
    if shared:
        print(f"synth_rank_eval: sources in both splits: {sorted(shared)}", file=sys.stderr)
        return 2
    ranker = fit_ranker([*train_on, *train_off], name="ranker")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ranker.to_json(out / "ranker.json")
    rankers = {
        "learned": lambda rec: ranker.score(rec.instances),
        "largest": one_feature("area_frac"),
        "central": one_feature("centrality"),
        "prior": lambda rec: PRIOR.score(rec.instances),
    }
    if args.before_ranker:
        before = LinearRanker.from_json(args.before_ranker)
        rankers["before"] = lambda rec: before.score(rec.instances)
    results = evaluate(test, rankers)
    text = (
        f"{len(test)} held-out scenes; ranker fitted on {len(train_on)} training scenes\n\n"
        f"p@1\n\n{table(results, 'p_at_1')}\n\nSA-SOR\n\n{table(results, 'sa_sor')}\n"
    )
    (out / "synth_rank.md").write_text(text, encoding="utf-8")
    (out / "synth_rank.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
