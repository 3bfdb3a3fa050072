"""Simple-rule rankers to compare the learned one against, and the side-by-side table.

    python -m tools.ranker_baselines write reports/ranker/baselines
        → largest.json, central.json (``layercut-linear-ranker`` documents)
    python -m pipeline.eval.cli reports/ranker/test/manifest.json -o reports/ranker/eval/largest \
        --proposals gt --set refine.method=none \
        --set rank.model=reports/ranker/baselines/largest.json
    python -m tools.ranker_baselines eval reports/ranker/test/manifest.json \
        -o reports/ranker/eval/largest --ranker reports/ranker/baselines/largest.json
        → the same report (pipeline.eval.run.evaluate) with binary mattes, without the refine stage
    python -m tools.ranker_baselines table learned=reports/ranker/eval/learned \
        largest=reports/ranker/eval/largest ... > table.md

Each baseline is a one-feature ``LinearRanker`` with the identity link, so it runs through the
same pipeline, keep policy and evaluation as the learned model:

- ``largest``: score = ``area_frac`` (mask area / image area);
- ``central``: score = ``centrality`` (1 at the image centre, 0 in a corner).

The highest-detector-score baseline needs detector scores: ground-truth proposals all have
``det_score`` 1.0, so on ``--proposals gt`` it is a constant ("n/a" in the table). The linear
prior is ``rank.model=prior``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import Config, RankConfig
from pipeline.eval.run import EvalOptions, evaluate, load_report
from pipeline.features import compute_features
from pipeline.layers import Layers
from pipeline.stages.rank import LinearRanker, build_ranker
from pipeline.stages.select import build_selector
from pipeline.types import Instance, KeepMode, Matte

BASELINES: dict[str, str] = {"largest": "area_frac", "central": "centrality"}
TABLE_METRICS = ("p_at_1", "iou", "sa_sor")


def baseline_ranker(name: str) -> LinearRanker:
    """The one-feature ranker called ``name`` (a key of ``BASELINES``)."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")
    return LinearRanker([BASELINES[name]], [1.0], 0.0, name=name, link="identity")


def write_baselines(out_dir: str | Path) -> list[Path]:
    """Write every baseline as ``out_dir/<name>.json``; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [baseline_ranker(name).to_json(out / f"{name}.json") for name in BASELINES]


def binary_matte(image: np.ndarray, instance: Instance) -> Matte:
    """The instance's mask as alpha on its box crop (``refine.method=none``): ranking and
    selection metrics read only masks, so matting would cost time and change nothing."""
    x0, y0, x1, y1 = (int(v) for v in instance.xyxy)
    x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
    alpha = instance.mask[y0:y1, x0:x1].astype(np.float32)
    return Matte(alpha, image[y0:y1, x0:x1].copy(), x0, y0)


class RankingRemover:
    """features → rank → fusion → select on given proposals, returning real
    ``pipeline.layers.Layers`` with binary mattes: what ``layercut eval --proposals gt --set
    refine.method=none --set rank.model=MODEL`` measures, runnable without the detector and
    refine stages."""

    def __init__(self, model: str, config: Config | None = None):
        base = config or Config()
        self.config = dataclasses.replace(base, rank=RankConfig(model=model))
        self.ranker = build_ranker(self.config.rank)
        self.selector = build_selector(self.config.select)
        self.fusion = None
        if self.config.select.method == "learned":
            from pipeline.stages.fusion import build_fusion

            self.fusion = build_fusion(self.config.select.model)

    def run(self, image: np.ndarray, proposals=None, keep=None) -> Layers:
        if proposals is None:
            raise ValueError("RankingRemover needs proposals (use --proposals gt)")
        instances = compute_features(image, list(proposals))
        scores = self.ranker.score(instances) if instances else np.zeros(0)
        instances = [i.replace(score=float(s)) for i, s in zip(instances, scores, strict=True)]
        if self.fusion is not None:  # given proposals: decided on as they are, no map
            instances = self.fusion.fuse(image, instances, None)
        mode = KeepMode.parse(keep or self.config.select.keep)
        return Layers(image, instances, mode, self.selector.select, binary_matte, timings_s={})


def _cell(agg: Mapping[str, Any] | None, metric: str) -> str:
    value = None if agg is None else agg.get(metric)
    return "n/a" if value is None else f"{value:.3f}"


def side_by_side(reports: Mapping[str, Mapping[str, Any]]) -> str:
    """A Markdown table: one row per subclass (+ overall), per metric one column per ranker.

    ``reports`` maps a ranker name to its ``report.json`` dict (``pipeline.eval.run``).
    """
    names = list(reports)
    subclasses: list[str] = []
    for rep in reports.values():
        subclasses += [s for s in rep["by_subclass"] if s not in subclasses]
    header = ["subclass", "n"] + [f"{m} {n}" for m in TABLE_METRICS for n in names]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for sub in [*subclasses, "overall"]:
        aggs = {
            n: (rep["overall"] if sub == "overall" else rep["by_subclass"].get(sub))
            for n, rep in reports.items()
        }
        count = next((a.get("n_ok") for a in aggs.values() if a is not None), 0)
        cells = [_cell(aggs[n], m) for m in TABLE_METRICS for n in names]
        lines.append("| " + " | ".join([sub, str(count), *cells]) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.ranker_baselines", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    write = sub.add_parser("write", help="write the baseline ranker JSON files")
    write.add_argument("out_dir")
    ev = sub.add_parser("eval", help="evaluate a ranker on GT proposals (no refine stage)")
    ev.add_argument("manifest")
    ev.add_argument("-o", "--out", required=True)
    ev.add_argument(
        "--ranker", required=True, help="'prior', a JSON path or a file name in pipeline/models/"
    )
    table = sub.add_parser("table", help="side-by-side table of evaluation runs")
    table.add_argument("runs", nargs="+", metavar="NAME=RUN_DIR")
    args = parser.parse_args(argv)
    try:
        if args.command == "write":
            for path in write_baselines(args.out_dir):
                print(path)
            return 0
        if args.command == "eval":
            report = evaluate(args.manifest, RankingRemover(args.ranker), args.out, EvalOptions())
            print(side_by_side({args.ranker: report}))
            return 0
        reports = {}
        for spec in args.runs:
            name, sep, run = spec.partition("=")
            if not sep:
                raise ValueError(f"expected NAME=RUN_DIR, got {spec!r}")
            reports[name] = load_report(run)
        print(side_by_side(reports))
    except ValueError as exc:
        print(f"ranker_baselines: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
