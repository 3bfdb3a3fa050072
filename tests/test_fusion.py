"""The learned keep decision over segments: segments, cues, the JSON model and the never-empty
rule, on synthetic arrays with known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.stages.fusion_features import FEATURE_NAMES, segment_features
from pipeline.stages.fusion_model import KEEP_AT, KeepModel, decide
from pipeline.stages.segments import MIN_FREE_FRAC, kept_region, split_segments
from pipeline.types import Instance, mask_to_xyxy

HW = (100, 120)


def _inst(k: int, mask: np.ndarray, label: str = "person", score: float = 0.5, **features):
    base = {"sal_mean_inside": 0.0, "area_frac": mask.mean(), "partner_id": -1.0}
    base.update(features)
    return Instance(k, mask_to_xyxy(mask), label, 0, 0.9, mask, features=base, score=score)


def _rect(y0, y1, x0, x1) -> np.ndarray:
    m = np.zeros(HW, bool)
    m[y0:y1, x0:x1] = True
    return m


@pytest.fixture()
def scene():
    """Instance A (rows 20–60, cols 10–40) fully salient with a salient board below it that no
    instance covers (rows 60–70); instance B (cols 70–100) salient in its upper half only; a
    salient blob far from both (rows 85–95, cols 105–115) and a 2-pixel speck."""
    a = _rect(20, 60, 10, 40)
    b = _rect(20, 60, 70, 100)
    saliency = np.zeros(HW, np.float32)
    saliency[20:70, 10:40] = 0.9  # A plus the board under it
    saliency[20:40, 70:100] = 0.8  # upper half of B
    saliency[85:95, 105:115] = 0.7  # free blob, 100 px
    saliency[2, 2:4] = 0.9  # speck, 2 px
    return [_inst(0, a, score=0.9), _inst(1, b, score=0.3)], saliency


def test_segments_split_instances_by_the_map(scene):
    instances, saliency = scene
    segments = split_segments(instances, saliency)
    found = {(s.owner, s.kind): s.area_px for s in segments}
    assert found == {
        (0, "both"): 40 * 30,
        (1, "both"): 20 * 30,
        (1, "detector"): 20 * 30,
        (0, "map"): 10 * 30,  # the board: uncovered, in A's salient component
        (-1, "free"): 100,
    }


def test_every_salient_pixel_but_specks_is_in_a_segment(scene):
    instances, saliency = scene
    segments = split_segments(instances, saliency)
    union = kept_region(segments, np.ones(len(segments), bool), HW)
    salient = saliency >= 0.5
    missed = salient & ~union
    assert missed.sum() == 2 and missed[2, 2:4].all()  # the speck, below MIN_FREE_FRAC
    assert 2 < MIN_FREE_FRAC * HW[0] * HW[1]
    # keeping only salient segments is the map alone (but the speck)
    salient_only = np.array([s.kind != "detector" for s in segments])
    assert (kept_region(segments, salient_only, HW) == (salient & ~missed)).all()


def test_without_a_map_each_instance_is_one_segment(scene):
    instances, _ = scene
    segments = split_segments(instances, None)
    assert [(s.owner, s.kind, s.area_px) for s in segments] == [
        (0, "detector", 1200),
        (1, "detector", 1200),
    ]
    assert split_segments([], None) == []


def test_segment_mask_shape_is_checked(scene):
    instances, saliency = scene
    with pytest.raises(ValueError, match="mask"):
        split_segments(instances, saliency[:50])


def test_segment_features_known_values(scene):
    instances, saliency = scene
    instances = [
        instances[0].replace(features={**instances[0].features, "sal_mean_inside": 0.9}),
        instances[1].replace(features={**instances[1].features, "sal_mean_inside": 0.4}),
    ]
    segments = split_segments(instances, saliency)
    x = segment_features(instances, segments, saliency)
    assert x.shape == (len(segments), len(FEATURE_NAMES))
    col = {name: j for j, name in enumerate(FEATURE_NAMES)}
    kinds = [s.kind for s in segments]
    both_a = kinds.index("both")
    row = x[both_a]
    assert row[col["kind_both"]] == 1 and row[col["kind_detector"]] == 0
    assert row[col["seg_area_frac"]] == pytest.approx(1200 / (100 * 120))
    assert row[col["seg_map_mean"]] == pytest.approx(0.9)
    assert row[col["is_top"]] == 1 and row[col["score_rel"]] == pytest.approx(1.0)
    assert row[col["seg_in_top_region"]] == 1.0
    b_det = next(i for i, s in enumerate(segments) if s.owner == 1 and s.kind == "detector")
    assert x[b_det, col["score_rel"]] == pytest.approx(0.3 / 0.9)
    assert x[b_det, col["is_top"]] == 0 and x[b_det, col["rank_frac"]] == 1.0
    assert x[b_det, col["seg_map_mean"]] == 0.0
    free = kinds.index("free")
    assert x[free, col["score"]] == 0.0 and x[free, col["seg_area_rel"]] == 1.0
    assert x[free, col["seg_in_top_region"]] == 0.0
    board = kinds.index("map")
    assert x[board, col["seg_in_top_region"]] == 1.0  # the board grows from A's region
    salient_px = np.count_nonzero(saliency >= 0.5)
    assert x[:, col["salient_frac"]] == pytest.approx(salient_px / (100 * 120))
    no_map = segment_features(instances, split_segments(instances, None), None)
    assert (no_map[:, col["has_saliency"]] == 0).all()
    assert (no_map[:, col["seg_map_mean"]] == 0).all()


def _tree_doc() -> dict:
    """One stump on ``seg_map_mean``: ≤ 0.5 → −2, else +2 (log-odds)."""
    j = FEATURE_NAMES.index("seg_map_mean")
    return {
        "format": "layercut-keep-model",
        "version": 1,
        "kind": "trees",
        "features": list(FEATURE_NAMES),
        "init": 0.0,
        "learning_rate": 1.0,
        "trees": [
            {
                "feature": [j, -1, -1],
                "threshold": [0.5, 0.0, 0.0],
                "left": [1, -1, -1],
                "right": [2, -1, -1],
                "value": [0.0, -2.0, 2.0],
            }
        ],
    }


def test_tree_model_reads_its_features_by_name(tmp_path):
    path = tmp_path / "keep.json"
    path.write_text(json.dumps(_tree_doc()))
    model = KeepModel.from_json(path)
    x = np.zeros((2, len(FEATURE_NAMES)))
    x[1, FEATURE_NAMES.index("seg_map_mean")] = 0.9
    p = model.probability(x, FEATURE_NAMES)
    assert p == pytest.approx(1 / (1 + np.exp([2.0, -2.0])))
    # columns in another order: looked up by name
    names = list(reversed(FEATURE_NAMES))
    assert model.probability(x[:, ::-1], names) == pytest.approx(p)
    with pytest.raises(ValueError, match="lacks"):
        model.probability(x[:, :3], FEATURE_NAMES[:3])


def test_linear_model_and_bad_documents(tmp_path):
    n = len(FEATURE_NAMES)
    doc = {
        "format": "layercut-keep-model",
        "version": 1,
        "kind": "linear",
        "features": list(FEATURE_NAMES),
        "mean": [0.0] * n,
        "scale": [1.0] * n,
        "coef": [1.0] + [0.0] * (n - 1),
        "intercept": -0.5,
    }
    x = np.zeros((1, n))
    x[0, 0] = 1.0
    assert KeepModel(doc).probability(x, FEATURE_NAMES) == pytest.approx([1 / (1 + np.exp(-0.5))])
    for broken in (
        {**doc, "format": "pickle"},
        {**doc, "scale": [0.0] * n},
        {**doc, "coef": [1.0]},
        {**_tree_doc(), "trees": [{**_tree_doc()["trees"][0], "left": [5, -1, -1]}]},
        {**doc, "kind": "forest"},
    ):
        with pytest.raises(ValueError):
            KeepModel(broken)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        KeepModel.from_json(bad)


def test_decide_never_keeps_nothing_when_something_was_found():
    d = decide(np.array([0.2, 0.4, 0.1]))
    assert d.keep.tolist() == [False, True, False]
    assert "0.40" in d.fallback and f"{KEEP_AT:.2f}" in d.fallback
    assert d.keep_at.tolist() == [KEEP_AT] * 3
    d = decide(np.array([0.7, 0.2]))
    assert d.keep.tolist() == [True, False] and d.fallback == ""
    d = decide(np.zeros(0))
    assert d.keep.size == 0 and d.fallback == ""
