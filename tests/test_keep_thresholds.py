"""The keep thresholds by segment kind: the asymmetric decision (a salient segment is dropped
only when the model is confident, a non-salient one added only when it is), its JSON block,
the fusion stage applying it, and its choice by cross-validation — on synthetic arrays with
known answers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pipeline.stages.fusion import KeepFusion
from pipeline.stages.fusion_features import FEATURE_NAMES
from pipeline.stages.fusion_model import KEEP_AT, KeepModel, KeepThresholds, decide
from pipeline.stages.segments import kept_region, split_segments
from pipeline.types import Instance, mask_to_xyxy
from tools import select_train
from tools.select_data import Prepared
from tools.select_policy import choose_thresholds, choose_variant, out_of_fold_probabilities
from tools.select_train import fit_keep

HW = (40, 60)


def _rect(y0, y1, x0, x1) -> np.ndarray:
    m = np.zeros(HW, bool)
    m[y0:y1, x0:x1] = True
    return m


def _inst(k: int, mask: np.ndarray, score: float) -> Instance:
    features = {"sal_mean_inside": 0.0, "area_frac": mask.mean(), "partner_id": -1.0}
    return Instance(k, mask_to_xyxy(mask), "person", 0, 0.9, mask, features=features,
                    score=score)  # fmt: skip


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _kind_model(p_salient: float, p_detector: float, policy: dict | None = None) -> KeepModel:
    """A linear keep model whose probability depends on the segment's kind only."""
    n = len(FEATURE_NAMES)
    coef = [0.0] * n
    coef[FEATURE_NAMES.index("kind_detector")] = _logit(p_detector) - _logit(p_salient)
    doc = {"format": "layercut-keep-model", "version": 1, "kind": "linear",
           "features": list(FEATURE_NAMES), "mean": [0.0] * n, "scale": [1.0] * n,
           "coef": coef, "intercept": _logit(p_salient)}  # fmt: skip
    if policy is not None:
        doc["policy"] = policy
    return KeepModel(doc)


def test_thresholds_by_kind_and_map():
    t = KeepThresholds(salient_drop_below=0.1, detector_add_at=0.9, instance_drop_below=0.2)
    kinds = ["both", "detector", "map", "free"]
    assert t.per_segment(kinds, has_map=True).tolist() == [0.1, 0.9, 0.1, 0.1]
    assert t.per_segment(["detector", "detector"], has_map=False).tolist() == [0.2, 0.2]
    assert t.per_segment([], has_map=True).shape == (0,)
    assert KeepThresholds().per_segment(kinds, True).tolist() == [KEEP_AT] * 4
    for bad in (
        {"salient_drop_below": 1.5},
        {"detector_add_at": -0.1},
        {"instance_drop_below": "x"},
    ):
        with pytest.raises(ValueError, match="keep threshold"):
            KeepThresholds(**bad)


def test_decide_holds_each_segment_to_its_threshold():
    p = np.array([0.15, 0.8, 0.05, 0.95])
    at = np.array([0.1, 0.9, 0.1, 0.9])  # salient, detector, salient, detector
    d = decide(p, at)
    assert d.keep.tolist() == [True, False, False, True]
    assert d.keep_at.tolist() == at.tolist() and d.fallback == ""
    # nothing reaches its threshold: the most probable is kept, and the message says so
    d = decide(np.array([0.3, 0.85]), np.array([0.5, 0.9]))
    assert d.keep.tolist() == [False, True]
    assert "0.85" in d.fallback and "0.90" in d.fallback


def test_policy_block_is_read_and_checked():
    policy = {"salient_drop_below": 0.1, "detector_add_at": 0.9, "instance_drop_below": 0.2,
              "chosen_by": {"criterion": "anything"}}  # fmt: skip
    model = _kind_model(0.3, 0.8, policy)
    assert model.thresholds == KeepThresholds(0.1, 0.9, 0.2)
    assert _kind_model(0.3, 0.8).thresholds == KeepThresholds()  # no block: KEEP_AT
    with pytest.raises(ValueError, match="policy lacks"):
        _kind_model(0.3, 0.8, {"salient_drop_below": 0.1})
    with pytest.raises(ValueError, match="detector_add_at"):
        _kind_model(0.3, 0.8, {**policy, "detector_add_at": 2.0})


def _scene():
    """Instance A (salient) and instance B (not salient at all: one ``detector`` segment)."""
    a, b = _rect(5, 30, 5, 20), _rect(5, 30, 35, 55)
    saliency = np.zeros(HW, np.float32)
    saliency[a] = 0.9
    image = np.full((*HW, 3), 128, np.uint8)
    return image, [_inst(0, a, 0.9), _inst(1, b, 0.5)], saliency


def test_fusion_applies_the_thresholds_of_the_model():
    image, instances, saliency = _scene()
    from pipeline.features import compute_features

    ready = [i.replace(score=s) for i, s in zip(compute_features(image, instances, saliency),
                                                (0.9, 0.5), strict=True)]  # fmt: skip
    # the salient segment at 0.3, B's detector segment at 0.8
    symmetric = KeepFusion(_kind_model(0.3, 0.8)).fuse(image, ready, saliency)
    assert [i.features["keep"] for i in symmetric] == [0.0, 1.0]  # A dropped, B added
    policy = {"salient_drop_below": 0.2, "detector_add_at": 0.9, "instance_drop_below": 0.5}
    out = KeepFusion(_kind_model(0.3, 0.8, policy)).fuse(image, ready, saliency)
    assert [i.features["keep"] for i in out] == [1.0, 0.0]  # the map alone
    assert out[0].features["keep_prob"] == pytest.approx(0.3)
    assert out[0].features["keep_at"] == pytest.approx(0.2)
    assert out[1].features["keep_at"] == pytest.approx(0.9)
    assert np.array_equal(out[0].mask, saliency >= 0.5)
    # without a map every instance is held to instance_drop_below (0.5): both at 0.8 stay
    plain = compute_features(image, instances, None)
    no_map = KeepFusion(_kind_model(0.3, 0.8, policy)).fuse(image, plain, None)
    assert [i.features["keep"] for i in no_map] == [1.0, 1.0]


def _record(name: str, set_name: str, gt: np.ndarray, map_on: bool) -> Prepared:
    _, instances, saliency = _scene()
    saliency = saliency if map_on else None
    segments = split_segments(instances, saliency)
    return Prepared(name=name, set_name=set_name, group=name, map_on=map_on,
                    instances=instances, raw=instances, saliency=saliency, segments=segments,
                    seg_in=np.zeros(len(segments), np.int64),
                    seg_out=np.zeros(len(segments), np.int64),
                    inst_in_frac=np.zeros(len(instances)), gt=gt, ignore=None)  # fmt: skip


def test_thresholds_chosen_by_the_issue_criterion():
    a, b = _rect(5, 30, 5, 20), _rect(5, 30, 35, 55)
    # map on: B is a bystander in the first photo (p 0.8) and a missed subject in the second
    # (p 0.95); A's salient segment at 0.3 is right in both. Only detector_add_at 0.9 adds B
    # where it belongs and not elsewhere; no drop threshold below 0.3 cuts A (the lowest wins).
    on = [_record("p1", "s1", a, True), _record("p2", "s2", a | b, True)]
    p_on = [np.array([0.3, 0.8]), np.array([0.3, 0.95])]
    # map off: B a bystander at 0.15 in one photo, a co-subject at 0.25 in another: only 0.2
    # keeps the one and drops the other
    off = [_record("q1", "s1", a, False), _record("q2", "s2", a | b, False)]
    p_off = [np.array([0.9, 0.15]), np.array([0.9, 0.25])]
    assert [s.kind for s in on[0].segments] == ["both", "detector"]
    thresholds, report = choose_thresholds([*on, *off], [*p_on, *p_off])
    assert thresholds == KeepThresholds(0.0, 0.9, 0.2)
    assert report["map"]["photos"] == 2 and report["nomap"]["photos"] == 2
    # the chosen policy is the oracle here: both photos at IoU 1; the map alone (A) at 1 and
    # at |A| / |A ∪ B| = 375 / 875
    assert report["map"]["mean_delta"] == pytest.approx((1 - 375 / 875) / 2, abs=1e-4)
    region = kept_region(on[1].segments, np.array([True, True]), HW)
    assert np.array_equal(region, a | b)
    with pytest.raises(ValueError, match="one probability array"):
        choose_thresholds(on, p_on[:1])


def test_out_of_fold_probabilities_never_come_from_a_model_that_saw_the_record():
    # 6 records of 2 rows each, in 3 folds; column 0 of a row is its record's fold, and the
    # "model" answers with the sum of the folds it was fitted on
    folds = [0, 1, 2, 0, 1, 2]
    row_record = np.repeat(np.arange(6), 2)
    x = np.zeros((12, len(FEATURE_NAMES)))
    x[:, 0] = np.asarray(folds)[row_record]

    class Seen:
        def __init__(self, xs):
            self.total = float(np.unique(xs[:, 0]).sum())

        def probability(self, rows, names):
            return np.full(len(rows), self.total)

    records = [None] * 6
    out = out_of_fold_probabilities(records, x, np.zeros(12), np.ones(12), row_record, folds,
                                    lambda xs, y, w, photo: Seen(xs))  # fmt: skip
    for i, fold in enumerate(folds):
        assert out[i].tolist() == [3.0 - fold] * 2  # 0 + 1 + 2 minus its own fold


def test_the_variant_whose_held_out_probabilities_score_best_is_chosen():
    a, b = _rect(5, 30, 5, 20), _rect(5, 30, 35, 55)
    on = [_record("p1", "s1", a, True), _record("p2", "s2", a | b, True)]
    off = [_record("q1", "s1", a, False), _record("q2", "s2", a | b, False)]
    records = [*on, *off]
    # "sure": B added only where it belongs (the oracle, as in the test above); "flat": the
    # same probability for B in both photos, so no threshold tells them apart
    sure = [np.array([0.3, 0.8]), np.array([0.3, 0.95]), np.array([0.9, 0.15]),
            np.array([0.9, 0.25])]  # fmt: skip
    flat = [np.array([0.3, 0.8]), np.array([0.3, 0.8]), np.array([0.9, 0.2]),
            np.array([0.9, 0.2])]  # fmt: skip
    for order in (("flat", "sure"), ("sure", "flat")):
        probabilities = {"flat": flat, "sure": sure}
        name, thresholds, report = choose_variant(records, {k: probabilities[k] for k in order})
        assert name == "sure" and thresholds == KeepThresholds(0.0, 0.9, 0.2)
        assert report["variant"] == "sure"
        assert report["variant_criteria"]["sure"] > report["variant_criteria"]["flat"]
    # a tie keeps the earlier variant (the shipped recipe comes first)
    assert choose_variant(records, {"first": sure, "second": sure})[0] == "first"
    with pytest.raises(ValueError, match="no variant"):
        choose_variant(records, {})


def test_keep_variants_fit_the_named_booster_and_refuse_unknown_names():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, len(FEATURE_NAMES)))
    y = x[:, 0] + 0.5 * rng.normal(size=400) > 0
    w = np.ones(400)
    shipped = fit_keep(x, y, w, "hgb", "lr0.05")
    half = fit_keep(x, y, w, "hgb", "lr0.025")
    assert np.array_equal(fit_keep(x, y, w, "hgb").probability(x, FEATURE_NAMES),
                          shipped.probability(x, FEATURE_NAMES))  # fmt: skip
    p_shipped = shipped.probability(x, FEATURE_NAMES)
    p_half = half.probability(x, FEATURE_NAMES)
    # the half learning rate fits less in as many trees: its probabilities stay nearer 0.5
    assert np.mean(np.abs(p_half - 0.5)) < np.mean(np.abs(p_shipped - 0.5))
    assert np.mean((p_half > 0.5) == y) > 0.8
    with pytest.raises(ValueError, match="unknown keep variant 'lr9'"):
        fit_keep(x, y, w, "hgb", "lr9")
    with pytest.raises(ValueError, match="apply to kinds 'hgb' and 'agree'"):
        fit_keep(x, y, w, "linear", "lr0.025")
    with pytest.raises(ValueError, match="kind must be one of"):
        fit_keep(x, y, w, "forest")


def test_agree_changes_the_reference_only_where_every_bag_agrees(monkeypatch):
    # 60 photos of 8 segments; the label follows column 0, except that photo 0's additions
    # (kind_detector with a map) are labelled against it: the bags that draw photo 0 learn
    # it, the others do not, so the cautious reading must not add them
    rng = np.random.default_rng(1)
    col = {n: j for j, n in enumerate(FEATURE_NAMES)}
    n_photos, per = 60, 8
    photo = np.repeat(np.arange(n_photos), per)
    x = rng.normal(size=(n_photos * per, len(FEATURE_NAMES)))
    x[:, col["has_saliency"]] = 1.0
    adds = rng.random(len(x)) < 0.5
    x[:, col["kind_detector"]] = adds
    y = x[:, 0] > 0
    w = np.ones(len(x))
    monkeypatch.setitem(select_train.HGB_PARAMS, "max_iter", 40)  # the plumbing, in seconds
    model = fit_keep(x, y, w, "agree", photo=photo)
    assert model.kind == "agree" and len(model.bags) == 8
    assert model.doc["reference_drops"] == ["kind_detector", "has_saliency"]
    again = KeepModel(json.loads(json.dumps(model.doc)))  # plain JSON, same numbers
    p = model.probability(x, FEATURE_NAMES)
    assert np.array_equal(again.probability(x, FEATURE_NAMES), p)
    # each bag on its own, as a plain booster document
    bags = np.array([
        KeepModel({**model.doc, "kind": "trees", "init": b["init"], "learning_rate": 1.0,
                   "trees": b["trees"]}).probability(x, FEATURE_NAMES)
        for b in model.doc["bags"]
    ])  # fmt: skip
    assert np.allclose(p[adds], bags[:, adds].min(axis=0))  # added only if every bag is sure
    assert np.allclose(p[~adds], bags[:, ~adds].max(axis=0))  # dropped only if every bag is
    assert np.any(bags.max(axis=0) - bags.min(axis=0) > 0.05)  # the bags do differ
    assert np.mean((p > 0.5) == y) > 0.8  # and still learn the signal
    # the same rows without a map: nothing is an addition, every row reads the highest bag
    x_off = x.copy()
    x_off[:, col["has_saliency"]] = 0.0
    bags_off = np.array([
        KeepModel({**model.doc, "kind": "trees", "init": b["init"], "learning_rate": 1.0,
                   "trees": b["trees"]}).probability(x_off, FEATURE_NAMES)
        for b in model.doc["bags"]
    ])  # fmt: skip
    assert np.allclose(model.probability(x_off, FEATURE_NAMES), bags_off.max(axis=0))
    with pytest.raises(ValueError, match="needs the photo of every row"):
        fit_keep(x, y, w, "agree")


def test_agree_documents_are_checked_on_load():
    base = {"format": "layercut-keep-model", "version": 1, "kind": "agree",
            "features": ["a", "kind_detector"],
            "bags": [{"init": 0.0, "trees": [{"feature": [-1], "threshold": [0.0],
                                              "left": [-1], "right": [-1], "value": [1.0]}]}],
            "reference_drops": ["kind_detector"]}  # fmt: skip
    model = KeepModel(base)
    x = np.array([[0.0, 1.0], [0.0, 0.0]])
    assert model.probability(x, ["a", "kind_detector"]) == pytest.approx([0.7310586] * 2)
    with pytest.raises(ValueError, match="bags must be a non-empty list"):
        KeepModel({**base, "bags": []})
    with pytest.raises(ValueError, match="features the model lacks"):
        KeepModel({**base, "reference_drops": ["has_saliency"]})
    with pytest.raises(ValueError, match="reference_drops must be"):
        KeepModel({**base, "reference_drops": []})
    with pytest.raises(ValueError, match="init must be finite"):
        KeepModel({**base, "bags": [{"init": float("nan"), "trees": base["bags"][0]["trees"]}]})


def test_the_stacked_forest_walks_every_tree_as_the_tree_itself_does():
    # the shipped model's trees (every bag): each tree's leaf value for random rows, one tree
    # at a time against all of them at once
    from pipeline.config import MODELS_DIR

    model = KeepModel.from_json(MODELS_DIR / "keep.json")
    trees = [t for _, bag in model.bags for t in bag] if model.kind == "agree" else model.trees
    rng = np.random.default_rng(3)
    x = rng.normal(0.3, 0.6, size=(64, len(model.features)))
    assert np.array_equal(model.forest.leaf_values(x), np.array([t.predict(x) for t in trees]))
