"""Cross-validation of the keep decision: grouped folds never put a group (or a synthetic scene
built from its pixels) on both sides; labels and weights of segments."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.stages.segments import split_segments
from pipeline.types import Instance, mask_to_xyxy
from tools.cv_report import SIMPLE_RULES, interval_text, intervals
from tools.cv_select import main as cv_main
from tools.cv_select import run_cv
from tools.select_data import Prepared, segment_labels
from tools.select_train import (
    crossfit_scores,
    group_folds,
    oracle_top,
    stratified_folds,
    subsample_groups,
    usable_synth,
)


def _record(name: str, group: str, set_name: str = "s", sources=frozenset()) -> Prepared:
    mask = np.zeros((8, 8), bool)
    mask[2:5, 2:5] = True
    inst = Instance(0, mask_to_xyxy(mask), "person", 0, 0.9, mask)
    return Prepared(
        name=name,
        set_name=set_name,
        group=group,
        map_on=False,
        instances=[inst],
        raw=[inst],
        saliency=None,
        segments=split_segments([inst], None),
        seg_in=np.array([9]),
        seg_out=np.array([0]),
        inst_in_frac=np.array([1.0]),
        gt=mask,
        ignore=None,
        sources=frozenset(sources),
    )


def _photos() -> list[Prepared]:
    out = []
    for seq in ("bear", "boat", "dog", "surf", "tennis", "train"):
        for frame in ("00010", "00040"):  # two frames of one sequence: one group
            out.append(_record(f"{seq}_{frame}", seq, "davis"))
    out += [_record(f"g{k}", f"g{k}", "grabcut") for k in range(7)]
    return out


def test_stratified_folds_keep_groups_whole_and_spread_sets():
    records = _photos()
    fold_of = stratified_folds(records, 3, seed=0)
    assert set(fold_of) == {r.group for r in records}
    for k in range(3):
        test = {r.name for r in records if fold_of[r.group] == k}
        train = {r.name for r in records if fold_of[r.group] != k}
        test_groups = {r.group for r in records if r.name in test}
        train_groups = {r.group for r in records if r.name in train}
        assert test and not test_groups & train_groups
        # every fold holds DAVIS sequences and GrabCut photos
        assert {r.set_name for r in records if r.name in test} == {"davis", "grabcut"}
    assert stratified_folds(records, 3, seed=0) == fold_of  # deterministic
    assert group_folds(["a", "b", "a", "c"], 2, seed=1).keys() == {"a", "b", "c"}


def test_subsample_groups_draws_a_seeded_share():
    groups = {f"g{k}" for k in range(20)}
    half = subsample_groups(groups, 0.5, (0, 1))
    assert len(half) == 10 and half <= groups
    assert subsample_groups(groups, 0.5, (0, 1)) == half  # deterministic
    assert subsample_groups(groups, 0.5, (0, 2)) != half  # another fold, another draw
    assert subsample_groups(groups, 1.0, (0, 1)) == groups
    assert len(subsample_groups(groups, 0.01, (0, 1))) == 1  # never an empty training set
    with pytest.raises(ValueError, match="train_frac"):
        run_cv(_photos(), _photos(), [], 3, 0, "agree", train_frac=0.0, log=None)


@pytest.mark.parametrize(
    "extra",
    [
        ["--train-frac", "1.5"],
        ["--train-frac", "0.5", "--fit-out", "x"],
        ["--top-oracle", "--fit-out", "x"],
    ],
)
def test_cli_refuses_diagnostics_it_cannot_honour(extra, capsys):
    with pytest.raises(SystemExit) as exc:
        cv_main(["m.json", "--cache", "c", "-o", "o", *extra])
    assert exc.value.code == 2
    assert "--train-frac" in capsys.readouterr().err


def test_oracle_top_moves_the_best_score_to_the_instance_with_most_gt_pixels():
    rec = _record("p", "p")
    small = np.zeros((8, 8), bool)
    small[0, 0] = True
    big = np.zeros((8, 8), bool)
    big[5:8, 0:8] = True
    rec.instances = [
        Instance(k, mask_to_xyxy(m), "person", 0, 0.9, m)
        for k, m in enumerate((rec.instances[0].mask, small, big))
    ]
    rec.inst_in_frac = np.array([1.0, 1.0, 0.5])  # GT pixels: 9, 1, 12
    scores = np.array([0.2, 0.9, 0.5])
    assert oracle_top(rec, scores).tolist() == [0.2, 0.5, 0.9]  # top and best swapped
    assert scores.tolist() == [0.2, 0.9, 0.5]  # the input left alone
    rec.ranks = np.array([1, 2, 3])  # a synthetic scene: its ranker scores stand
    assert oracle_top(rec, scores).tolist() == [0.2, 0.9, 0.5]


def test_synthetic_scenes_from_held_out_sources_are_left_out():
    synth = [
        _record("scene1", "scene1", sources={"scene1", "bear", "zidane"}),
        _record("scene2", "scene2", sources={"scene2", "GT04"}),
    ]
    assert [s.name for s in usable_synth(synth, {"bear"})] == ["scene2"]
    assert [s.name for s in usable_synth(synth, {"dog"})] == ["scene1", "scene2"]


def test_crossfit_scores_come_from_rankers_that_never_saw_the_group():
    records = _photos()
    synth = [_record("scene1", "scene1", sources={"scene1", "dog"})]
    seen: list[set[str]] = []

    class Fake:
        def __init__(self, groups):
            self.groups = groups

        def score(self, instances):
            return np.full(len(instances), float(len(self.groups)))

    def fitter(fit_on):
        groups = {r.group for r in fit_on}
        seen.append(groups)
        return Fake(groups)

    scores = crossfit_scores(records, synth, n_inner=3, seed=4, fitter=fitter)
    assert len(seen) == 3 and all(len(s) == 1 for s in scores)
    fold_of = group_folds([r.group for r in records], 3, seed=4)
    for j, groups in enumerate(seen):
        held = {g for g, f in fold_of.items() if f == j}
        assert not groups & held
        assert ("scene1" in groups) == ("dog" not in held)


def test_segment_labels_weigh_what_a_wrong_decision_costs_the_iou():
    rec = _record("x", "x")
    rec.seg_in = np.array([80, 0, 10])
    rec.seg_out = np.array([5, 40, 30])
    rec.gt = np.zeros((10, 10), bool)
    rec.gt.flat[:90] = True  # 90 GT pixels
    y, w = segment_labels(rec)
    assert y.tolist() == [True, False, False]
    base = 80 / (90 + 5)
    assert w[0] == pytest.approx(base - 0.0)  # dropping it loses everything
    assert w[1] == pytest.approx(base - 80 / (90 + 5 + 40))
    assert w[2] == pytest.approx(abs(base - 90 / (90 + 5 + 30)))


def _cv_row(ours_map: float, map_alone: float, ours_nomap: float, rule: float) -> dict:
    row = {"ours_map_iou": ours_map, "map_alone": map_alone, "ours_nomap_iou": ours_nomap}
    return row | {f"rule_{name}": rule for name in SIMPLE_RULES}


def test_intervals_resample_whole_groups():
    # a constant gain: every resample has the same mean, the interval has no width
    rows = {f"p{k}": _cv_row(0.9, 0.8, 0.7, 0.6) for k in range(12)}
    found = intervals(rows, {n: n for n in rows}, draws=200)
    for key in ("delta_map", "delta_rule"):
        assert found[key] == pytest.approx([0.1, 0.1, 0.1])
    # 10 photos gain 0.1 and 10 lose 0.1: as 20 groups of one the interval is narrower than
    # when each sign is one sequence of 10 frames (then a resample draws 0, 1 or 2 of them)
    rows = {f"p{k}": _cv_row(0.5 + (0.1 if k < 10 else -0.1), 0.5, 0.5, 0.5) for k in range(20)}
    single = intervals(rows, {n: n for n in rows}, draws=500)["delta_map"]
    paired = intervals(rows, {n: "up" if int(n[1:]) < 10 else "down" for n in rows},
                       draws=500)["delta_map"]  # fmt: skip
    assert single[0] == pytest.approx(0.0) and paired[0] == pytest.approx(0.0)
    assert single[1] < 0 < single[2]
    assert paired[2] - paired[1] > single[2] - single[1]
    assert paired[1] == pytest.approx(-0.1) and paired[2] == pytest.approx(0.1)
    assert "95 % interval over groups" in interval_text(found)
