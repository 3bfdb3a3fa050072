"""Cross-validated kept-region IoU of the learned keep decision on real photos, per set, beside
the baselines of the same run.

    python -m tools.cv_select ../shared/data/eval/manifest.json --cache CACHE/eval \
        --synth SYNTH/train/manifest.json --synth-cache CACHE/synth_train -o OUT

Items come from the stage cache (``tools.select_cache``); every later stage is the product's
own code (``tools.select_data.prepare``: the map's mask edges and rescue, ``compute_features``;
then the ranker's ``score``, ``split_segments``, ``segment_features``, the keep model and
``decide``). Folds are grouped: a DAVIS sequence or a photo is one group, groups of each set
are dealt over ``--folds`` folds (seeded), and a synthetic scene is trained on only when none
of its pixel sources is a held-out group. Per fold the ranker is fitted on the training photos
and usable synthetic scenes, the keep model on the training photos' segments with cross-fitted
ranker scores, its keep thresholds by segment kind chosen on inner out-of-fold probabilities
of the training photos (``tools.select_policy``: nested, nothing held out chooses), and both
are saved as JSON under ``OUT/folds/<k>/`` with the fold's held-out item names, so a fold can
be re-run through ``python -m pipeline.eval.cli``. Beside it, the same model's symmetric
decision (every threshold 0.5, ``sym_*``).

Writes ``OUT/cv.json`` (per item: fold and every number) and ``OUT/cv.md`` (the per-set
table); prints the table. With ``--thumbs`` also ``OUT/report.json`` and ``OUT/thumbs/`` in the
evaluation's layout, so ``tools/contact_sheet.py OUT --by iou-iou_rule_salient`` shows the
largest cross-validated wins and losses against the map alone.

Diagnostics, not results: ``--train-frac F`` trains each fold on a seeded share of its
training groups (a learning curve); ``--top-oracle`` makes every photo's top instance the one
holding the most GT pixels (what a perfect ranker would allow the keep decision).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.config import Config, load_config
from pipeline.eval.rules import RULES, keep_salient, oracle_union_iou
from pipeline.stages.fusion_features import FEATURE_NAMES
from pipeline.stages.fusion_model import KeepModel, decide
from pipeline.stages.rank import LinearRanker
from tools.cv_report import (
    SETS,
    SIMPLE_RULES,
    interval_text,
    intervals,
    table,
    write_sheet_report,
)
from tools.select_data import Prepared, load_records
from tools.select_fit import fit_final
from tools.select_policy import (
    choose_variant,
    out_of_fold_probabilities,
    with_thresholds,
)
from tools.select_train import (
    KEEP_KINDS,
    KEEP_VARIANTS,
    N_INNER,
    crossfit_scores,
    fit_keep,
    fit_ranker,
    group_folds,
    keep_rows,
    oracle_top,
    scores_of,
    stratified_folds,
    subsample_groups,
    usable_synth,
)


def ours(
    rec: Prepared, ranker: LinearRanker, model: KeepModel, top_oracle: bool = False
) -> tuple[dict, np.ndarray, np.ndarray]:
    """The product's decision on one record: ``iou``, ``empty``, ``fallback``, ``p_at_1``,
    ``sym_iou`` (the same probabilities, every threshold 0.5), the kept region (``H×W bool``)
    and the segments' probabilities. ``top_oracle``: the ranker's top swapped for the GT's
    (``tools.select_train.oracle_top``; a diagnostic bound, not a result)."""
    scores = scores_of(ranker, rec)
    if top_oracle:
        scores = oracle_top(rec, scores)
    probability = model.probability(rec.features(scores), FEATURE_NAMES)
    kinds = [s.kind for s in rec.segments]
    decision = decide(probability, model.thresholds.per_segment(kinds, rec.map_on))
    region = rec.region(decision.keep)
    out = {
        "iou": rec.iou_of(region),
        "empty": float(not region.any() and bool(rec.gt.any())),
        "fallback": float(bool(decision.fallback)),
        "sym_iou": rec.iou_of(rec.region(decide(probability).keep)),
    }
    if len(scores) >= 2:
        out["p_at_1"] = float(rec.inst_in_frac[int(np.argmax(scores))] >= 0.5)
    return out, region, probability


def baselines(on: Prepared, off: Prepared, config: Config, before: dict) -> dict[str, float]:
    """Fold-independent numbers of one item: the map alone, the rules, the oracles, and the
    keep policy before this change (``before``: rankers of the ``salient`` and ``cpu``
    presets)."""
    from pipeline.stages.select import KeepPolicy
    from pipeline.types import KeepMode

    hw = on.gt.shape
    out = {"map_alone": on.iou_of(keep_salient(on.raw, hw, saliency=on.saliency))}
    for name in SIMPLE_RULES:
        out[f"rule_{name}"] = off.iou_of(RULES[name](off.raw, hw))
        out[f"map_rule_{name}"] = on.iou_of(RULES[name](on.instances, hw))
    for tag, rec in (("map", on), ("nomap", off)):
        out[f"oracle_union_{tag}"] = oracle_union_iou(
            [i.mask for i in rec.instances], rec.gt, rec.ignore
        )
        keep = rec.seg_in > rec.seg_out
        out[f"oracle_segments_{tag}"] = rec.iou_of(rec.region(keep))
    policy = KeepPolicy(dataclasses.replace(config.select, method="rules"))
    for tag, rec, ranker in (("map", on, before["map"]), ("nomap", off, before["nomap"])):
        instances = rec.scored(scores_of(ranker, rec))
        selection = policy.select(instances, KeepMode.MAIN, saliency=rec.saliency)
        region = np.zeros(hw, bool)
        for inst, d in zip(instances, selection.decisions, strict=True):
            if d.role.kept:
                region |= inst.mask
        out[f"before_{tag}"] = rec.iou_of(region)
        out[f"before_{tag}_empty"] = float(not region.any() and bool(rec.gt.any()))
    return out


def run_cv(
    on: Sequence[Prepared],
    off: Sequence[Prepared],
    synth: Sequence[Prepared],
    n_folds: int,
    seed: int,
    kind: str,
    out_dir: Path | None = None,
    log=sys.stderr,
    synth_det: Sequence[Prepared] = (),
    regions: dict | None = None,
    probabilities: dict | None = None,
    extra: Sequence[Prepared] = (),
    scored: tuple[Sequence[Prepared], Sequence[Prepared]] | None = None,
    variants: Sequence[str] = (),
    train_frac: float = 1.0,
    top_oracle: bool = False,
) -> dict[str, dict[str, float]]:
    """Per item name: its fold and ``ours_map_*`` / ``ours_nomap_*`` numbers (module doc).

    ``synth``: synthetic scenes with GT instances (ranker training); ``synth_det``: the same
    scenes with the detector's instances (keep-model training). Both only where no pixel
    source is held out. ``regions``, when given, receives each item's kept regions
    (``{"map": H×W bool, "nomap": H×W bool}``), ``probabilities`` its held-out segment
    probabilities (same keys). ``extra``: more training records of the same photos (the map at
    another precision, ``--train-also``), trained on where their group is not held out.
    ``scored``: ``(map_on, map_off)`` records of the same photos from another stage cache
    (``--score-cache``) to score the held-out photos from instead of ``on``/``off``: models
    trained on one map, scored on another. ``variants``: ``KEEP_VARIANTS`` names the inner CV
    chooses between in every fold (default: the shipped recipe, no choice). ``train_frac``:
    train each fold on this share of its training groups only (``subsample_groups``; a
    learning curve), the rest treated as held out (their synthetic scenes unused too).
    ``top_oracle``: every photo's top instance (training and held out) is the one holding most
    GT pixels (``oracle_top``): what a perfect ranker would allow the keep decision, a bound."""
    if not 0.0 < train_frac <= 1.0:
        raise ValueError(f"train_frac must be in (0, 1], got {train_frac}")
    score_on, score_off = scored if scored is not None else (on, off)
    fold_of = stratified_folds(on, n_folds, seed)
    results: dict[str, dict[str, float]] = {}
    for k in range(n_folds):
        start = time.perf_counter()
        held = {g for g, f in fold_of.items() if f == k}
        test = [i for i, r in enumerate(on) if r.group in held]
        train = [i for i, r in enumerate(on) if r.group not in held]
        train_groups = {on[i].group for i in train}
        unused = train_groups - subsample_groups(train_groups, train_frac, (seed, k))
        train = [i for i in train if on[i].group not in unused]
        if train_groups & held:  # cannot happen by construction; checked all the same
            raise RuntimeError(f"fold {k}: groups on both sides: {sorted(train_groups & held)}")
        excluded = held | unused  # groups this fold never trains on
        syn = usable_synth(synth, excluded)
        train_recs = [on[i] for i in train] + [off[i] for i in train]
        train_recs += [r for r in extra if r.group not in excluded]
        ranker = fit_ranker([*train_recs, *syn], name=f"ranker-fold{k}")
        keep_recs = [*train_recs, *usable_synth(synth_det, excluded)]
        scores = crossfit_scores(keep_recs, syn, N_INNER, seed + 1 + k)
        if top_oracle:
            scores = [oracle_top(r, sc) for r, sc in zip(keep_recs, scores, strict=True)]
        x, y, w, row_record = keep_rows(keep_recs, scores)
        # the thresholds (and the booster variant, with ``variants``): on inner out-of-fold
        # probabilities of the training photos, the inner folds being crossfit_scores' (so no
        # inner held-out photo's score saw its pixels)
        inner = group_folds([r.group for r in keep_recs], N_INNER, seed + 1 + k)
        photos = [j for j, r in enumerate(keep_recs) if not r.sources]
        oof = {v: out_of_fold_probabilities(keep_recs, x, y, w, row_record,
                                            [inner[r.group] for r in keep_recs],
                                            lambda x, y, w, photo, v=v:
                                            fit_keep(x, y, w, kind, v, photo))
               for v in (variants or [None])}  # fmt: skip
        chosen, thresholds, report = choose_variant(
            [keep_recs[j] for j in photos], {v: [p[j] for j in photos] for v, p in oof.items()}
        )
        model = with_thresholds(fit_keep(x, y, w, kind, chosen, row_record), thresholds, report)
        # the variants not chosen, held out too, only for fit_final's choice
        others = {} if probabilities is None else {
            v: fit_keep(x, y, w, kind, v, row_record) for v in variants if v != chosen
        }  # fmt: skip
        for i in test:
            row = {"fold": float(k)} | ({"variant": chosen} if chosen else {})
            kept, probs = {}, {}
            for tag, rec in (("map", score_on[i]), ("nomap", score_off[i])):
                metrics, kept[tag], probs[tag] = ours(rec, ranker, model, top_oracle)
                row.update({f"ours_{tag}_{m}": v for m, v in metrics.items()})
            results[on[i].name] = row
            if regions is not None:
                regions[on[i].name] = kept
            if probabilities is not None:
                probabilities[on[i].name] = {**probs, "variant": chosen}
                for v, other in others.items():
                    probabilities[on[i].name][v] = {
                        tag: other.probability(rec.features(scores_of(ranker, rec)), FEATURE_NAMES)
                        for tag, rec in (("map", score_on[i]), ("nomap", score_off[i]))
                    }
        if out_dir is not None:
            folder = out_dir / "folds" / str(k)
            folder.mkdir(parents=True, exist_ok=True)
            ranker.to_json(folder / "ranker.json")
            model.to_json(folder / "keep.json")
            names = sorted(on[i].name for i in test)
            (folder / "held_out.json").write_text(json.dumps(names, indent=1) + "\n")
        if log is not None:
            seconds = time.perf_counter() - start
            print(f"fold {k}: {len(test)} held out, {len(train)} train photos, "
                  f"{len(syn)}/{len(synth)} synthetic scenes, {len(y)} segments, "
                  f"variant {chosen}, thresholds {thresholds.to_doc()}, {seconds:.0f} s",
                  file=log, flush=True)  # fmt: skip
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.cv_select", description=__doc__.split("\n")[0]
    )
    parser.add_argument("manifest", help="the real photos' manifest.json")
    parser.add_argument("--cache", required=True, help="stage cache of the photos")
    parser.add_argument("--synth", default=None, help="tools.synth manifest.json (optional)")
    parser.add_argument("--synth-cache", default=None, help="stage cache of the scenes")
    parser.add_argument(
        "--train-also",
        default=None,
        help="a second stage cache of the same photos (e.g. the map at another precision): "
        "its records are trained on too, never scored",
    )
    parser.add_argument("--synth-also", default=None, help="a second stage cache of the scenes")
    parser.add_argument(
        "--score-cache",
        default=None,
        help="score the held-out photos from this stage cache of the same photos (e.g. the map "
        "at another precision) instead of --cache",
    )
    parser.add_argument("-o", "--out", required=True, help="output folder")
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--train-frac",
        type=float,
        default=1.0,
        help="train each fold on this share of its training groups (seeded; a learning curve)",
    )
    parser.add_argument("--kind", choices=KEEP_KINDS, default="agree")
    parser.add_argument(
        "--top-oracle",
        action="store_true",
        help="diagnostic: every photo's top instance is the GT's (what a perfect ranker allows)",
    )
    parser.add_argument(
        "--variants",
        default="",
        help="comma-separated tools.select_train.KEEP_VARIANTS names the inner CV chooses "
        f"between in every fold (--kind hgb; known: {','.join(KEEP_VARIANTS)}); default none: "
        "the shipped recipe",
    )
    parser.add_argument(
        "--before-ranker",
        default=None,
        help="ranker JSON of the map-less keep policy before this change (default: "
        "models/ranker.json)",
    )
    parser.add_argument(
        "--fit-out", default=None, help="also fit on every photo; write ranker.json, keep.json"
    )
    parser.add_argument(
        "--thumbs",
        action="store_true",
        help="write OUT/report.json and OUT/thumbs/ for tools/contact_sheet.py",
    )
    parser.add_argument("--config", default="cpu", help="preset whose map settings are used")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)
    if not 0.0 < args.train_frac <= 1.0:
        parser.error(f"--train-frac must be in (0, 1], got {args.train_frac}")
    if args.fit_out and (args.train_frac < 1.0 or args.top_oracle):
        parser.error("--fit-out fits the shipped recipe: not with --train-frac or --top-oracle")
    variants = tuple(v for v in args.variants.split(",") if v)
    unknown = sorted(set(variants) - set(KEEP_VARIANTS))
    if unknown or (variants and args.kind not in ("hgb", "agree")):
        parser.error(f"--variants: unknown {unknown}" if unknown else "--variants needs --kind "
                     "agree or hgb")  # fmt: skip
    try:
        # the tool fits its own keep models: the shipped one need not exist yet
        overrides = ["select.method=rules", *args.overrides]
        config = load_config(args.config, overrides, device="cpu")
        sets = tuple(s for s in args.sets.split(",") if s)
        on, off = load_records(args.manifest, args.cache, config, sets)
        synth: list[Prepared] = []
        if args.synth:
            s_on, s_off = load_records(args.synth, args.synth_cache, config, gt_proposals=True)
            synth = s_on + s_off
            if args.synth_also:
                a_on, a_off = load_records(args.synth, args.synth_also, config, gt_proposals=True)
                synth += a_on + a_off
        scored = None
        if args.score_cache:
            scored = load_records(args.manifest, args.score_cache, config, sets)
            if [r.name for r in scored[0]] != [r.name for r in on]:
                raise ValueError("--score-cache must hold the same photos as --cache")
        extra: list[Prepared] = []
        if args.train_also:
            a_on, a_off = load_records(args.manifest, args.train_also, config, sets)
            extra = a_on + a_off
        # the keep policy before this change: the salient preset ranked with the hand-set
        # prior, the cpu preset (no map) with models/ranker.json
        before_path = args.before_ranker or _models() / "ranker.json"
        before = {"map": _prior(), "nomap": LinearRanker.from_json(before_path)}
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        regions: dict | None = {} if args.thumbs else None
        held_out: dict = {}
        rows = run_cv(on, off, synth, args.folds, args.seed, args.kind, out, regions=regions,
                      probabilities=held_out, extra=extra, scored=scored,
                      variants=variants, train_frac=args.train_frac,
                      top_oracle=args.top_oracle)  # fmt: skip
        score_on, score_off = scored if scored is not None else (on, off)
        for a, b in zip(score_on, score_off, strict=True):
            rows[a.name].update(baselines(a, b, config, before))
        if args.fit_out:
            fit_final(on, off, synth, args.kind, args.seed, Path(args.fit_out), vars(args),
                      held_out, extra, variants)  # fmt: skip
    except (ValueError, OSError) as exc:
        print(f"cv_select: {exc}", file=sys.stderr)
        return 2
    set_of = {r.name: r.set_name for r in on}
    text, numbers = table(rows, set_of)
    group_of = {r.name: r.group for r in on}
    found = intervals(rows, group_of)
    text += "\n\n" + interval_text(found)
    doc = {"args": vars(args), "per_set": numbers, "intervals": found, "items": rows,
           "sets": set_of, "groups": group_of}  # fmt: skip
    (out / "cv.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    (out / "cv.md").write_text(text + "\n", encoding="utf-8")
    if regions is not None:
        write_sheet_report(out, rows, on, regions, args.manifest)
    print(text)
    return 0


def _models() -> Path:
    from pipeline.stages.rank import MODELS_DIR

    return MODELS_DIR


def _prior() -> LinearRanker:
    from pipeline.stages.rank import PRIOR

    return PRIOR


if __name__ == "__main__":
    sys.exit(main())
