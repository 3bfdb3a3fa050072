"""The shipped keep model and ranker, fitted on every photo after ``tools.cv_select``'s
cross-validation (``--fit-out``): the same recipe as each fold, with the thresholds (and the
booster variant, with ``--variants``) chosen on the outer folds' held-out probabilities."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from tools.select_policy import choose_variant, with_thresholds
from tools.select_train import N_INNER, crossfit_scores, fit_keep, fit_ranker, keep_rows


def fit_final(
    on,
    off,
    synth,
    kind: str,
    seed: int,
    out: Path,
    args: dict,
    held_out: dict,
    extra=(),
    variants: Sequence[str] = (),
) -> None:
    """The shipped models: the ranker on every photo and scene, the keep model on every photo's
    segments with cross-fitted ranker scores (as in each fold), its thresholds chosen on the
    CV's held-out probabilities of every photo (``held_out``: name → {"map", "nomap"}).
    ``extra`` records (``--train-also``) are trained on too. With ``variants`` the booster
    variant is chosen the same way, on each variant's outer held-out probabilities."""
    from datetime import date

    records = [*on, *off]
    trained = [*records, *extra]
    ranker = fit_ranker([*trained, *synth], name="ranker")
    scores = crossfit_scores(trained, synth, N_INNER, seed)
    x, y, w, row_record = keep_rows(trained, scores)
    # each variant's held-out probabilities: its own outer model's, or the chosen one's in
    # the folds that chose it
    by_variant = {
        v: [(held_out[r.name] if held_out[r.name]["variant"] == v else held_out[r.name][v])
            ["map" if r.map_on else "nomap"] for r in records]
        for v in (variants or [None])
    }  # fmt: skip
    chosen, thresholds, report = choose_variant(records, by_variant)
    report["probabilities"] = "held-out probabilities of tools.cv_select's outer folds"
    model = with_thresholds(fit_keep(x, y, w, kind, chosen, row_record), thresholds, report)
    training = {
        "tool": "tools.cv_select --fit-out",
        "photos": len(on),
        "sets": sorted({r.set_name for r in on}),
        "synthetic_scenes": len(synth) // 2,
        "segments": int(len(y)),
        "map_versions": 2 if extra else 1,
        "kind": kind,
        "variant": chosen,
        "detector": "yolov8n-seg int8 ONNX at 320 px; map: ISNet (isnet_medium.onnx, 1024 px)",
        "args": {k: v for k, v in args.items() if isinstance(v, (str, int, float)) or v is None},
        "date": date.today().isoformat(),
    }
    out.mkdir(parents=True, exist_ok=True)
    doc = ranker.to_dict()
    doc["training"] = {
        "tool": training["tool"],
        "data": "the synthetic scenes' GT instances and ranks, with the real ISNet map",
        "synthetic_scenes": training["synthetic_scenes"],
        "method": "pairwise logistic regression (within-scene pairs) + 1-D calibration",
        "date": training["date"],
    }
    (out / "ranker.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    model.doc["name"] = "keep"
    model.doc["training"] = training
    model.to_json(out / "keep.json")
