"""What the debug view prints beside each instance (``pipeline.explain``): the linear ranker's
largest contributions, else the cues that set an instance apart in its photo; and the debug
view of a real ``Remover`` run, with its salient-map panel."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.api import Remover
from pipeline.config import load_config
from pipeline.explain import NOT_CUES, ranker_contributions, strongest_cues
from pipeline.features import compute_features
from pipeline.stages.rank import PRIOR
from pipeline.stages.refine import BinaryRefiner
from pipeline.viz import debug_layout
from tests import scenes


def scored_scene():
    scene = scenes.keep_scene()
    instances = compute_features(scene.image, scene.instances)
    scores = PRIOR.score(instances)
    return scene.image, [
        inst.replace(score=float(s)) for inst, s in zip(instances, scores, strict=True)
    ]


def test_contributions_add_up_to_the_linear_score():
    _, instances = scored_scene()
    table = PRIOR.contributions(instances)
    assert table.shape == (len(instances), len(PRIOR.features))
    logits = PRIOR.intercept + table.sum(axis=1)
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), [i.score for i in instances])
    shares = ranker_contributions(PRIOR, instances)
    assert set(shares) == {inst.id for inst in instances}
    assert shares[0]["area_frac"] == pytest.approx(table[0, PRIOR.features.index("area_frac")])


def test_strongest_contributions_are_the_largest_shares_either_sign():
    _, instances = scored_scene()
    shares = {"area_frac": 0.3, "blur": -1.1, "partner_id": 9.0, "centrality": 0.001}
    assert strongest_cues(instances[0], instances, shares) == (("blur", -1.1), ("area_frac", 0.3))


def test_without_contributions_a_cue_every_instance_shares_is_never_printed():
    _, instances = scored_scene()
    same = [inst.replace(features={**inst.features, "truncation": 0.0}) for inst in instances]
    for inst in same:
        cues = strongest_cues(inst, same)
        assert cues and all(name not in NOT_CUES for name, _ in cues)
        assert "truncation" not in dict(cues)  # 0.00 everywhere explains nothing
        for name, value in cues:
            assert value == pytest.approx(inst.features[name])  # the cue's own value
    # the blurred bystander (#2) stands out by its blur, the cut plant (#3) by its truncation
    assert strongest_cues(instances[2], instances)[0] == ("blur", 1.0)
    assert strongest_cues(instances[3], instances)[0][0] == "truncation"


class ScoreOnly:
    """A ranker that cannot explain itself (``Ranker`` without ``contributions``)."""

    name = "area"

    def score(self, instances):
        return np.array([inst.features["area_frac"] for inst in instances])


class FixedMap:
    def __init__(self, saliency):
        self.saliency = saliency

    def predict(self, image):
        return self.saliency


class FixedDetector:
    def __init__(self, instances):
        self.instances = instances

    def detect(self, image):
        return list(self.instances)


def test_remover_hands_the_contributions_and_the_map_to_the_debug_view():
    scene = scenes.keep_scene()
    hw = scene.image.shape[:2]
    saliency = np.where(scene.instances[0].mask, 0.9, 0.05).astype(np.float32)
    config = load_config(
        "cpu",
        ["rank.model=prior", "detect.weights=/no/such.onnx", "saliency.model=isnet"],
        device="cpu",
    )
    stages = {"detector": FixedDetector(scene.instances), "refiner": BinaryRefiner()}
    layers = Remover(config, saliency=FixedMap(saliency), **stages).run(scene.image)
    assert set(layers.contributions) == {layer.instance.id for layer in layers}
    view = layers.debug_view()
    layout = debug_layout(*hw, len(layers), with_saliency=True)
    assert view.shape == (layout.height, layout.width, 3)
    y, x = layout.saliency_yx
    np.testing.assert_array_equal(
        view[y : y + hw[0], x : x + hw[1], 1], np.rint(layers.saliency * 255).astype(np.uint8)
    )
    plain = Remover(config, ranker=ScoreOnly(), saliency=FixedMap(saliency), **stages)
    assert plain.run(scene.image).contributions == {}  # the view falls back to cue values
