"""``layercut eval``: evaluate on a dataset, or compare two evaluation runs.

    layercut eval MANIFEST|FOLDER -o DIR [--proposals detector|gt|gt-jittered|gt-trimap]
                  [--config F] [--set section.key=value …] [--device cpu|cuda|auto]
                  [--limit N] [--sets A,B] [--seed S]
    layercut eval --compare RUN_A RUN_B -o DIR [--threshold metric=value|metric=N% …]

Exit status: 0 done; 1 every item failed (evaluation) or a subclass worsened beyond its
threshold (comparison); 2 bad arguments, unreadable dataset or pipeline that cannot be built.
``python -m pipeline.eval.cli`` works the same.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from pipeline.cli_args import ArgumentParser, add_config_arguments
from pipeline.eval.aggregate import HEADLINE
from pipeline.eval.proposals import PROPOSAL_MODES


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="layercut eval",
        description="Evaluate layercut on a dataset manifest (or a folder of images), or "
        "compare two evaluation runs.",
    )
    parser.add_argument("dataset", nargs="?", help="manifest.json or a folder of images")
    parser.add_argument("-o", "--out", required=True, help="output folder (report or comparison)")
    parser.add_argument(
        "--proposals",
        choices=PROPOSAL_MODES,
        default="gt",
        help="where instances come from (default: gt, i.e. measured without a detector)",
    )
    add_config_arguments(parser)
    parser.add_argument("--limit", type=int, default=None, help="only the first N items")
    parser.add_argument(
        "--sets",
        default="",
        metavar="SET[,SET…]",
        help="only items of these manifest sets, comma-separated (e.g. davis2016_val)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of --proposals gt-jittered")
    parser.add_argument("--thumb-px", type=int, default=256, help="thumbnail size in pixels")
    parser.add_argument(
        "--compare", nargs=2, metavar=("RUN_A", "RUN_B"), help="compare two run folders"
    )
    parser.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="METRIC=VALUE",
        help="compare: regression threshold, absolute (iou=0.02) or relative (sad=10%%)",
    )
    return parser


def format_table(by_subclass: Mapping[str, Mapping[str, Any]], overall: Mapping[str, Any]) -> str:
    """A plain-text per-subclass table of the headline metrics (for the terminal)."""
    rows = [*by_subclass.items(), ("overall", overall)]
    present = [m for m in HEADLINE if any(m in agg for _, agg in rows)]
    header = ["subclass", "n", "failed", "empty", "fallback", *present]
    lines = [header]
    for name, agg in rows:
        counts = [agg.get(k, 0) for k in ("n_items", "n_failed", "n_empty", "n_fallback")]
        cells = [name, *(str(c) for c in counts)]
        for m in present:
            value = agg.get(m)
            cells.append("–" if value is None else f"{value:.4g}")
        lines.append(cells)
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in lines
    )


def _run_compare(args: argparse.Namespace, out: TextIO) -> int:
    from pipeline.eval.compare import compare_runs

    comparison = compare_runs(args.compare[0], args.compare[1], args.out, overrides=args.threshold)
    for note in comparison.notes:
        print(f"note: {note}", file=out)
    worse_items = [d for d in comparison.items if d.worse]
    for d in comparison.worse_groups:
        print(f"WORSE {d.group}: {d.metric} {d.a:.4g} → {d.b:.4g}", file=out)
    print(
        f"{len(comparison.worse_groups)} subclass metric(s) and {len(worse_items)} item(s) "
        f"worse beyond threshold; report in {args.out}/compare.html",
        file=out,
    )
    return comparison.exit_status


def _run_eval(args: argparse.Namespace, out: TextIO) -> int:
    from pipeline.eval.dataset import load_dataset
    from pipeline.eval.run import EvalOptions, build_remover, evaluate

    sets = tuple(name.strip() for name in args.sets.split(",") if name.strip())
    options = EvalOptions(args.proposals, args.seed, args.limit, args.thumb_px, sets)
    load_dataset(args.dataset)  # fail early (exit 2) on a missing or malformed dataset
    remover = build_remover(args.config, args.overrides, args.device)
    report = evaluate(args.dataset, remover, args.out, options)
    print(format_table(report["by_subclass"], report["overall"]), file=out)
    print(f"report: {args.out}/report.html and report.json", file=out)
    overall = report["overall"]
    return 1 if overall["n_items"] and overall["n_failed"] == overall["n_items"] else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``layercut eval``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if (args.compare is None) == (args.dataset is None):
        parser.print_usage(sys.stderr)
        print("layercut eval: error: give a DATASET or --compare RUN_A RUN_B", file=sys.stderr)
        return 2
    try:
        if args.compare is not None:
            return _run_compare(args, sys.stdout)
        return _run_eval(args, sys.stdout)
    except (ValueError, OSError) as exc:  # bad input or files: one line, not a traceback
        print(f"layercut eval: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("layercut eval: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
