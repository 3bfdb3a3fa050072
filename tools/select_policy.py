"""The keep thresholds by segment kind (``pipeline.stages.fusion_model.KeepThresholds``), chosen
by cross-validation.

Held-out keep probabilities are not calibrated alike for every kind: a photo's salient
segments are kept by the map alone and are right far more often than its ``detector``
segments, whose held-out probabilities of 0.5–0.9 were right for fewer than half of their
pixels (``pipeline/models/KEEP_CARD.md``). So the thresholds are chosen, per model, from a
small grid fixed in advance, on probabilities of photos the model being judged never saw:

- with a map: ``salient_drop_below`` in ``DROP_GRID`` × ``detector_add_at`` in ``ADD_GRID``;
- without: ``instance_drop_below`` in ``INSTANCE_GRID``;

(0.5 everywhere is the symmetric decision; 0 never cuts the map's region, or keeps every
instance). The criterion is the issue's: the mean over photos of IoU minus the reference's
(the map alone — the salient segments — with a map, every instance without) plus the lowest
per-set mean of the same, so a choice that wins overall by losing one set scores low. Ties keep
the earlier grid entry (the lower thresholds: closer to the reference).

``tools.cv_select`` uses this twice: in each outer fold on inner out-of-fold probabilities of
the training photos (nested: nothing held out chooses), and for the shipped model on the outer
folds' held-out probabilities of every photo.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.stages.fusion_model import KeepModel, KeepThresholds, decide
from pipeline.stages.segments import SALIENT_KINDS
from tools.select_data import Prepared

DROP_GRID = (0.0, 0.05, 0.1, 0.2, 0.5)
ADD_GRID = (0.5, 0.7, 0.9)
INSTANCE_GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)
CRITERION = "mean Δ IoU vs the reference + the lowest per-set mean Δ"


def reference_keep(rec: Prepared) -> np.ndarray:
    """``(S,) bool``: the map alone (its salient segments) with a map, every instance without."""
    if not rec.map_on:
        return np.ones(len(rec.segments), bool)
    return np.array([s.kind in SALIENT_KINDS for s in rec.segments], bool)


def kept_iou(rec: Prepared, keep: np.ndarray) -> float:
    """IoU of the region of ``keep`` with the GT (empty when there is no segment)."""
    if len(keep) == 0:
        return rec.iou_of(np.zeros(rec.gt.shape, bool))
    return rec.iou_of(rec.region(keep))


def policy_keep(rec: Prepared, probability: np.ndarray, thresholds: KeepThresholds) -> np.ndarray:
    """The product's decision (``decide`` with the thresholds of each segment's kind)."""
    kinds = [s.kind for s in rec.segments]
    return decide(probability, thresholds.per_segment(kinds, rec.map_on)).keep


def candidates(map_on: bool) -> list[KeepThresholds]:
    if map_on:
        return [KeepThresholds(salient_drop_below=d, detector_add_at=a)
                for d in DROP_GRID for a in ADD_GRID]  # fmt: skip
    return [KeepThresholds(instance_drop_below=t) for t in INSTANCE_GRID]


def score(deltas: Sequence[float], sets: Sequence[str]) -> tuple[float, float, float]:
    """``(criterion, mean Δ, lowest per-set mean Δ)`` of per-photo Δ IoU."""
    deltas = np.asarray(deltas, np.float64)
    sets_arr = np.asarray(sets)
    per_set = [float(deltas[sets_arr == s].mean()) for s in sorted(set(sets))]
    mean = float(deltas.mean())
    return mean + min(per_set), mean, min(per_set)


def choose_thresholds(
    records: Sequence[Prepared], probabilities: Sequence[np.ndarray]
) -> tuple[KeepThresholds, dict]:
    """The grid entry with the best criterion (module docstring) over ``records`` (real photos,
    map on and off; each variant chooses its own thresholds) under held-out
    ``probabilities`` (one ``(S,)`` array per record). Returns the thresholds and a report
    (criterion, grid, the chosen entries' mean and lowest per-set Δ)."""
    if len(records) != len(probabilities):
        raise ValueError("one probability array per record is needed")
    chosen: dict[str, float] = {}
    report: dict = {"criterion": CRITERION, "drop_grid": list(DROP_GRID),
                    "add_grid": list(ADD_GRID), "instance_grid": list(INSTANCE_GRID)}  # fmt: skip
    for map_on, tag in ((True, "map"), (False, "nomap")):
        pairs = [(r, p) for r, p in zip(records, probabilities, strict=True) if r.map_on == map_on]
        if not pairs:
            continue
        sets = [r.set_name for r, _ in pairs]
        reference = [kept_iou(r, reference_keep(r)) for r, _ in pairs]
        best = None
        for thresholds in candidates(map_on):
            deltas = [kept_iou(r, policy_keep(r, p, thresholds)) - ref
                      for (r, p), ref in zip(pairs, reference, strict=True)]  # fmt: skip
            result = score(deltas, sets)
            if best is None or result[0] > best[1][0] + 1e-12:
                best = (thresholds, result)
        thresholds, (_, mean, lowest) = best
        if map_on:
            chosen["salient_drop_below"] = thresholds.salient_drop_below
            chosen["detector_add_at"] = thresholds.detector_add_at
        else:
            chosen["instance_drop_below"] = thresholds.instance_drop_below
        report[tag] = {"photos": len(pairs), "mean_delta": round(mean, 4),
                       "lowest_set_delta": round(lowest, 4)}  # fmt: skip
        report["value"] = report.get("value", 0.0) + best[1][0]  # map's + no map's criterion
    return KeepThresholds(**chosen), report


def choose_variant(
    records: Sequence[Prepared], probabilities: dict[str, Sequence[np.ndarray]]
) -> tuple[str, KeepThresholds, dict]:
    """The booster variant (``tools.select_train.KEEP_VARIANTS``) whose held-out
    ``probabilities`` (variant → one ``(S,)`` array per record), each with its own thresholds
    (``choose_thresholds``), score best by the criterion summed over map on and off. Ties keep
    the earlier variant. Returns the variant, its thresholds and a report naming every
    variant's criterion."""
    if not probabilities:
        raise ValueError("no variant to choose from")
    best = None
    values: dict[str, float] = {}
    for name, probs in probabilities.items():
        thresholds, report = choose_thresholds(records, probs)
        values[name] = round(report["value"], 6)
        if best is None or report["value"] > best[2]["value"] + 1e-12:
            best = (name, thresholds, report)
    name, thresholds, report = best
    report = {**report, "variant": name, "variant_criteria": values}
    return name, thresholds, report


def with_thresholds(model: KeepModel, thresholds: KeepThresholds, report: dict) -> KeepModel:
    """``model`` with a ``policy`` block holding ``thresholds`` and how they were chosen."""
    doc = dict(model.doc)
    doc["policy"] = {**thresholds.to_doc(), "chosen_by": report}
    return KeepModel(doc)


def out_of_fold_probabilities(
    records: Sequence[Prepared],
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    row_record: np.ndarray,
    record_fold: Sequence[int],
    fit,
) -> list[np.ndarray]:
    """Each record's segment probabilities from a keep model fitted (``fit(x, y, w, photo)``,
    ``photo`` the record index of each row) on the rows of the other folds. ``row_record``: the
    record index of each row (``keep_rows``); ``record_fold``: the fold of each record (its
    group's)."""
    record_fold = np.asarray(record_fold)
    row_fold = record_fold[row_record]
    out = [np.zeros(0) for _ in records]
    from pipeline.stages.fusion_features import FEATURE_NAMES

    for fold in np.unique(record_fold):
        train = row_fold != fold
        model = fit(x[train], y[train], w[train], row_record[train])
        for i in np.flatnonzero(record_fold == fold):
            rows = row_record == i
            if rows.any():
                out[i] = model.probability(x[rows], FEATURE_NAMES)
    return out
