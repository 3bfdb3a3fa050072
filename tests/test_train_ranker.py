"""tools.train_ranker and tools.ranker_baselines on tiny synthetic feature tables."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.config import RankConfig
from pipeline.stages.rank import LinearRanker, build_ranker
from pipeline.types import Instance
from tests.test_synth import make_sources
from tools.ranker_baselines import RankingRemover, baseline_ranker, side_by_side
from tools.synth import generate
from tools.synth_sources import load_sources
from tools.train_ranker import (
    RANK_FEATURES,
    Table,
    check_disjoint,
    cross_validate,
    fit,
    load_table,
    margin,
    pairs,
)

CENTRALITY = RANK_FEATURES.index("centrality")
AREA = RANK_FEATURES.index("area_frac")


def toy_table(n_scenes: int = 60, seed: int = 0) -> Table:
    """Scenes of 3 instances whose main one is the most central; area is a decoy (random).
    Scenes alternate between two folds with disjoint source groups."""
    rng = np.random.default_rng(seed)
    x, scene, rank, kept, fold, groups = [], [], [], [], [], []
    for s in range(n_scenes):
        # the main one is clearly the most central; the others are ordered among themselves
        centres = [rng.uniform(0.7, 1.0), *np.sort(rng.uniform(0.0, 0.5, 2))[::-1]]
        for k in range(3):
            row = rng.uniform(0.0, 1.0, len(RANK_FEATURES))
            row[CENTRALITY] = centres[k]
            x.append(row)
            scene.append(s)
            rank.append(k + 1)
            kept.append(k == 0)
            fold.append(s % 2)
        groups.append(frozenset({f"bg{s % 2}", f"cut{s % 2}"}))
    return Table(
        np.asarray(x),
        np.asarray(scene),
        np.asarray(rank),
        np.asarray(kept),
        np.asarray(fold),
        ("toy",) * n_scenes,
        tuple(groups),
    )


def _instance(i: int, values: dict[str, float]) -> Instance:
    mask = np.zeros((8, 8), bool)
    mask[i, i] = True
    features = dict.fromkeys(RANK_FEATURES, 0.5) | values
    return Instance(i, [i, i, i + 1, i + 1], "object", -1, 1.0, mask, features=features)


def test_pairs_weight_each_scene_equally():
    table = toy_table(4)
    diff, y, w = pairs(table, np.arange(len(table.x)))
    assert len(diff) == 4 * 3 * 2  # 3 ranked pairs per scene, both orientations
    assert set(y.tolist()) == {0, 1}
    assert w.sum() == pytest.approx(4.0)


def test_learned_model_round_trips_through_build_ranker(tmp_path):
    table = toy_table()
    ranker = fit(table, np.arange(len(table.x)), c=1.0)
    path = tmp_path / "ranker.json"
    ranker.to_json(path)
    loaded = build_ranker(RankConfig(model=str(path)))
    assert isinstance(loaded, LinearRanker) and loaded.link == "logistic"
    central = _instance(0, {"centrality": 0.95, "area_frac": 0.05})
    corner = _instance(1, {"centrality": 0.1, "area_frac": 0.6})
    scores = loaded.score([corner, central])
    np.testing.assert_allclose(scores, ranker.score([corner, central]))
    assert scores[1] > scores[0]  # the clearly better (central) instance ranks first
    # probabilities (the toy scenes are separable, so the calibrated ones may round to 0 or 1)
    assert np.all((scores >= 0) & (scores <= 1))
    # the learned weight of the decisive cue dominates the decoy's
    assert abs(loaded.coef[CENTRALITY]) > 3 * abs(loaded.coef[AREA])


def test_cross_validation_is_grouped_and_beats_a_decoy_baseline():
    table = toy_table()
    result = cross_validate(table, c=1.0)
    assert result["learned"]["p_at_1"] >= 0.95
    assert result["largest"]["p_at_1"] < 0.7  # area is random here
    rows = np.arange(len(table.x))
    mixed = Table(table.x, table.scene, table.rank, table.kept, table.fold, table.subclass,
                  tuple(frozenset({"bg0"}) for _ in table.subclass))  # fmt: skip
    with pytest.raises(RuntimeError, match="bg0"):
        check_disjoint(mixed, rows[table.fold == 0], rows[table.fold == 1])


def test_margin_orders_like_score():
    table = toy_table()
    ranker = fit(table, np.arange(len(table.x)), c=1.0)
    instances = [_instance(k, {"centrality": c}) for k, c in enumerate((0.2, 0.9, 0.5))]
    x = np.array([[inst.features[f] for f in RANK_FEATURES] for inst in instances])
    assert np.argsort(margin(ranker, x)).tolist() == np.argsort(ranker.score(instances)).tolist()


def test_table_and_evaluation_on_synthetic_scenes(tmp_path):
    pool = load_sources(make_sources(tmp_path / "src"), "all")
    generate(pool, tmp_path / "scenes", seed=0, count=4, subclasses=("truncated", "plain"))
    manifest = tmp_path / "scenes" / "manifest.json"
    table = load_table(manifest)
    raw = json.loads(manifest.read_text())
    assert len(table.x) == sum(len(it["roles"]) for it in raw["items"])
    assert table.kept.sum() == sum(len(it["main_instances"]) for it in raw["items"])
    assert np.all((table.x[:, AREA] > 0) & (table.x[:, AREA] < 1))
    from pipeline.eval.run import evaluate

    path = baseline_ranker("largest").to_json(tmp_path / "largest.json")
    report = evaluate(manifest, RankingRemover(str(path)), tmp_path / "run", log=None)
    assert report["overall"]["n_ok"] == 4
    assert 0.0 <= report["overall"]["p_at_1"] <= 1.0
    text = side_by_side({"largest": report})
    assert "| truncated |" in text and "| overall |" in text


def test_baseline_ranker_scores_its_feature():
    ranker = baseline_ranker("central")
    a, b = _instance(0, {"centrality": 0.9}), _instance(1, {"centrality": 0.2})
    np.testing.assert_allclose(ranker.score([a, b]), [0.9, 0.2])
    with pytest.raises(ValueError, match="unknown baseline"):
        baseline_ranker("loudest")
