"""LinearRanker: formula, JSON round trip, invalid files, the prior and build_ranker."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pipeline import config as config_module
from pipeline.config import RankConfig
from pipeline.features import FEATURE_NAMES, compute_features
from pipeline.protocols import Ranker
from pipeline.stages.rank import PRIOR, LinearRanker, build_ranker
from tests import scenes


def _inst(inst_id: int, **features: float):
    return scenes.instance(inst_id, np.ones((4, 4), bool), features=features)


def test_score_is_the_documented_formula():
    ranker = LinearRanker(["a", "b"], coef=[1.0, -2.0], intercept=0.5, mean=[1, 1], scale=[2, 4])
    scores = ranker.score([_inst(0, a=2.0, b=3.0), _inst(1, a=5.0, b=1.0)])
    # 0.5 + 1·(2-1)/2 - 2·(3-1)/4 = 0.0 ; 0.5 + 1·(5-1)/2 - 2·0 = 2.5
    np.testing.assert_allclose(scores, [0.0, 2.5])
    assert scores.dtype == np.float64
    logistic = LinearRanker(["a"], coef=[1.0], link="logistic")
    np.testing.assert_allclose(
        logistic.score([_inst(0, a=0.0), _inst(1, a=2.0)]), [0.5, 1 / (1 + math.exp(-2))]
    )


def test_json_round_trip(tmp_path):
    ranker = LinearRanker(
        ["a", "b"], coef=[0.3, -1.5], intercept=-0.25, mean=[0.1, 0.2], scale=[1.5, 0.5],
        name="trained", link="logistic",
    )  # fmt: skip
    path = ranker.to_json(tmp_path / "r.json")
    doc = json.loads(path.read_text())
    assert doc["format"] == "layercut-linear-ranker" and doc["version"] == 1
    loaded = LinearRanker.from_json(path)
    assert loaded.to_dict() == ranker.to_dict()
    instances = [_inst(0, a=0.7, b=0.1), _inst(1, a=0.2, b=0.9)]
    np.testing.assert_array_equal(loaded.score(instances), ranker.score(instances))


def test_optional_keys_default_to_identity_standardisation(tmp_path):
    path = tmp_path / "min.json"
    doc = {"format": "layercut-linear-ranker", "version": 1, "features": ["a"], "coef": [2.0]}
    path.write_text(json.dumps({**doc, "intercept": 1}))
    ranker = LinearRanker.from_json(path)
    assert ranker.link == "identity"
    np.testing.assert_allclose(ranker.score([_inst(0, a=3.0)]), [7.0])


GOOD = {
    "format": "layercut-linear-ranker",
    "version": 1,
    "name": "x",
    "features": ["a", "b"],
    "mean": [0, 0],
    "scale": [1, 1],
    "coef": [1, 1],
    "intercept": 0,
}


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"format": "sklearn-pickle"}, "format must be 'layercut-linear-ranker'"),
        ({"version": 2}, "unsupported version 2"),
        ({"coef": [1]}, "coef must have 2 values"),
        ({"scale": [1, 0]}, "scale must be > 0"),
        ({"coef": [1, "x"]}, r"coef\[1\] must be a number"),
        ({"mean": [0, float("nan")]}, "mean must be finite"),
        ({"features": ["a", "a"]}, "duplicate feature names"),
        ({"features": "a"}, "features must be a list"),
        ({"link": "probit"}, "link must be one of"),
        ({"intercept": None}, "intercept must be a number"),
    ],
)
def test_invalid_documents_raise_naming_the_file(tmp_path, change, match):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**GOOD, **change}))
    with pytest.raises(ValueError, match=match) as info:
        LinearRanker.from_json(path)
    assert str(path) in str(info.value)


def test_unreadable_and_non_json_files(tmp_path):
    with pytest.raises(ValueError, match="cannot read ranker file .*missing.json"):
        LinearRanker.from_json(tmp_path / "missing.json")
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="broken.json is not valid JSON"):
        LinearRanker.from_json(path)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="expected a JSON object"):
        LinearRanker.from_json(path)


def test_missing_feature_on_an_instance_is_named():
    with pytest.raises(ValueError, match="needs feature 'b', missing on instance 3"):
        LinearRanker(["a", "b"], coef=[1, 1]).score([_inst(3, a=1.0)])


def test_prior_is_a_ranker_over_known_features():
    assert isinstance(PRIOR, Ranker)
    assert set(PRIOR.features) <= set(FEATURE_NAMES)
    assert PRIOR.link == "logistic"


def test_prior_prefers_the_sharp_central_person():
    scene = scenes.keep_scene()
    instances = compute_features(scene.image, scene.instances)
    scores = PRIOR.score(instances)
    assert scores.shape == (5,) and np.all((scores > 0) & (scores < 1))
    assert int(np.argmax(scores)) == 0  # the sharp central person
    assert scores[0] > scores[2]  # over the blurred person behind
    assert scores[1] > scores[4]  # the held object over the unrelated one beside
    sharp, soft = compute_features(*_focus_scene())
    assert PRIOR.score([sharp, soft])[0] > PRIOR.score([sharp, soft])[1]


def _focus_scene():
    scene = scenes.focus_scene()
    return scene.image, scene.instances


def test_build_ranker_prior_path_and_models_name(tmp_path, monkeypatch):
    assert build_ranker(RankConfig(model="prior")) is PRIOR
    ranker = LinearRanker(["a"], coef=[1.0], name="mine")
    path = ranker.to_json(tmp_path / "mine.json")
    assert build_ranker(RankConfig(model=str(path))).name == "mine"
    monkeypatch.setattr(config_module, "MODELS_DIR", tmp_path)
    assert build_ranker(RankConfig(model="mine")).name == "mine"  # MODELS_DIR/<name>.json
    assert build_ranker(RankConfig(model="mine.json")).name == "mine"


def test_rank_model_errors_name_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(config_module, "MODELS_DIR", tmp_path)
    # a name that is no file is refused when the config is built, before any model loads
    with pytest.raises(ValueError, match=r"config rank.model must be prior.*got 'nope'"):
        RankConfig(model="nope")
    with pytest.raises(ValueError, match="config rank.model must be prior"):
        RankConfig(model=" ")
    gone = LinearRanker(["a"], coef=[1.0]).to_json(tmp_path / "gone.json")
    config = RankConfig(model="gone")
    gone.unlink()
    with pytest.raises(ValueError, match="ranker file not found: 'gone'"):
        build_ranker(config)
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="bad.json: format must be"):
        build_ranker(RankConfig(model="bad"))
