"""The learned keep decision inside the product: ``Remover.run`` with the fusion stage, layers
that hold exactly the kept region, and never an empty result when something was found (reason
in ``layers.json``, a warning from the CLI, a flag from the server).

Real features, ranker (the prior), fusion, keep policy and binary refiner; the detector and
the map are fixed stand-ins and the keep models hand-written JSON with known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from pipeline.api import Remover
from pipeline.config import load_config
from pipeline.stages.fusion import apply_decision
from pipeline.stages.fusion_features import FEATURE_NAMES
from pipeline.stages.fusion_model import Decision as FusionDecision
from pipeline.stages.refine import BinaryRefiner
from pipeline.stages.segments import kept_region, split_segments
from pipeline.types import Role
from tests import scenes
from tests.test_remover import FixedDetector, FixedMap

HW = (60, 80)


def stump(tmp_path, feature="seg_map_mean", at=0.5, name="keep.json"):
    """A keep model: log-odds −3 when ``feature ≤ at``, +3 above."""
    j = FEATURE_NAMES.index(feature)
    doc = {
        "format": "layercut-keep-model", "version": 1, "kind": "trees",
        "features": list(FEATURE_NAMES), "init": 0.0, "learning_rate": 1.0,
        "trees": [{"feature": [j, -1, -1], "threshold": [at, 0, 0], "left": [1, -1, -1],
                   "right": [2, -1, -1], "value": [0.0, -3.0, 3.0]}],
    }  # fmt: skip
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def never(tmp_path):
    """A keep model that gives every segment 0.2: nothing reaches 0.5."""
    n = len(FEATURE_NAMES)
    doc = {"format": "layercut-keep-model", "version": 1, "kind": "linear",
           "features": list(FEATURE_NAMES), "mean": [0.0] * n, "scale": [1.0] * n,
           "coef": [0.0] * n, "intercept": float(np.log(0.2 / 0.8))}  # fmt: skip
    path = tmp_path / "never.json"
    path.write_text(json.dumps(doc))
    return path


def scene():
    """A person whose lower half the map misses, with a salient board under them no detection
    covers, and a cup the map leaves dark."""
    image = scenes.background(HW)
    person = scenes.rect_mask(HW, 20, 10, 40, 40)
    cup = scenes.rect_mask(HW, 60, 40, 70, 50)
    image[person | cup] = scenes.texture(HW, seed=2)[person | cup]
    saliency = np.full(HW, 0.02, np.float32)
    saliency[25:40, 20:40] = 0.2  # the person's lower half: faint
    saliency[10:25, 20:40] = 0.95  # the person's upper half
    saliency[40:46, 15:45] = 0.9  # the board under them
    instances = [scenes.instance(0, person, "person"), scenes.instance(1, cup, "cup")]
    return image, saliency, instances


def remover(tmp_path, model, saliency=None, instances=None, extra=()):
    overrides = ["rank.model=prior", f"select.model={model}", "detect.weights=/no/such.onnx"]
    if saliency is None:
        overrides.append("saliency.model=none")
    config = load_config("cpu", [*overrides, *extra], device="cpu")
    stages = {"detector": FixedDetector(instances), "refiner": BinaryRefiner()}
    if saliency is not None:
        stages["saliency"] = FixedMap(saliency)
    return Remover(config, **stages)


def test_layers_hold_exactly_the_kept_segments(tmp_path):
    image, saliency, instances = scene()
    layers = remover(tmp_path, stump(tmp_path), saliency, instances).run(image)
    # the stump keeps the map's salient segments: the person's upper half and the board (a
    # region rescued from the map), not the person's lower half (map 0.2) nor the dark cup
    expected = saliency >= 0.5
    assert np.array_equal(layers.kept_mask(), expected)
    assert np.array_equal(layers.alpha() > 0.5, expected)  # the composite is the kept region
    roles = {layer.instance.label: layer for layer in layers}
    assert roles["person"].role is Role.MAIN and roles["cup"].role is Role.DROPPED
    assert "keep decision" in roles["cup"].reason and "< 0.50" in roles["cup"].reason
    person = roles["person"].instance
    assert person.features["keep"] == 1.0 and person.features["kept_area_rel"] < 1.0
    assert layers.fallback == "" and layers.to_json()["fallback"] == ""
    assert "fusion" in layers.timings_s
    # the candidates the decision chose from (what the evaluation's rules see) are unreshaped
    before = {inst.label: inst for inst in layers.candidates}
    lower = np.zeros(HW, bool)
    lower[27:38, 22:38] = True  # inside the person's lower half, away from the map's edge
    assert before["person"].mask[lower].all() and not person.mask[lower].any()


def test_the_same_decision_without_a_map_is_per_instance(tmp_path):
    image, _, instances = scene()
    model = stump(tmp_path, feature="is_person")  # keep people only
    layers = remover(tmp_path, model, None, instances).run(image)
    assert np.array_equal(layers.kept_mask(), instances[0].mask)
    assert [layer.instance.label for layer in layers.kept_layers()] == ["person"]


def test_nothing_reaching_the_threshold_keeps_the_best_candidate_and_says_so(tmp_path):
    image, saliency, instances = scene()
    layers = remover(tmp_path, never(tmp_path), saliency, instances).run(image)
    kept = layers.kept_layers()
    assert len(kept) == 1 and layers.kept_mask().any()
    assert "rather than nothing" in layers.fallback
    assert kept[0].reason.startswith("never empty")
    assert layers.to_json()["fallback"] == layers.fallback


def test_keep_interacting_without_people_keeps_the_best_candidate(tmp_path):
    image, _, instances = scene()
    cups = [instances[1], instances[1].replace(id=2, mask=np.roll(instances[1].mask, -30, 1))]
    layers = remover(tmp_path, stump(tmp_path), None, cups).run(image, keep="interacting")
    assert len(layers.kept_layers()) == 1
    assert "no person in the photo for --keep interacting" in layers.fallback
    # the rules baseline says the same
    rules = remover(tmp_path, stump(tmp_path), None, cups, ["select.method=rules"])
    assert "no person" in rules.run(image, keep="interacting").fallback


def test_a_free_salient_component_joins_the_nearest_kept_instance_or_stands_alone(tmp_path):
    image, saliency, instances = scene()
    saliency[2:6, 70:76] = 0.9  # a salient speck no instance touches (24 px)
    with_map = [inst.replace(features={}) for inst in instances]
    from pipeline.features import compute_features

    ready = [i.replace(score=s) for i, s in zip(compute_features(image, with_map, saliency),
                                                (0.9, 0.1), strict=True)]  # fmt: skip
    segments = split_segments(ready, saliency, min_free_frac=0.001)
    kinds = [s.kind for s in segments]
    assert "free" in kinds
    keep = np.array([k != "detector" for k in kinds])
    p = np.where(keep, 0.9, 0.1)
    out = apply_decision(image, ready, segments, FusionDecision(p, keep, np.full(len(p), 0.5), ""),
                         saliency)  # fmt: skip
    region = kept_region(segments, keep, HW)
    union = np.zeros(HW, bool)
    for inst in out:
        if inst.features["keep"]:
            union |= inst.mask
    assert np.array_equal(union, region)  # every kept pixel is in a kept layer
    assert len(out) == 2  # the speck joined a kept instance
    # with no kept instance to join, the speck is an object instance of its own
    keep_free = np.array([k == "free" for k in kinds])
    forced = FusionDecision(p, keep_free, np.full(len(p), 0.5), "nothing reached")
    alone = apply_decision(image, ready, segments, forced, saliency)
    frees = kinds.count("free")  # the board and the speck
    assert frees == 2 and len(alone) == 2 + frees
    assert all(i.label == "object" and i.source == "saliency" for i in alone[2:])
    assert alone[2].features["keep"] == 1.0 and alone[2].features["keep_fallback"] == 1.0
    assert alone[2].soft_mask is not None and alone[2].id == 2


def test_a_learned_policy_without_the_fusion_stage_is_a_clear_error(tmp_path):
    image, _, instances = scene()
    config = load_config("cpu", ["saliency.model=none", f"select.model={stump(tmp_path)}"])
    from pipeline.stages.select import build_selector

    bare = [i.replace(features={**i.features, **dict.fromkeys(
        ("sharpness_rel_max", "truncation", "trunc_bottom", "area_frac", "interaction",
         "contact"), 0.5), "partner_id": -1.0}) for i in instances]  # fmt: skip
    with pytest.raises(ValueError, match="fusion stage"):
        build_selector(config.select).select(bare, "main")
    with pytest.raises(ValueError, match="select.model"):
        load_config("cpu", ["select.model=/no/such/keep.json"])
    with pytest.raises(ValueError, match="select.method"):
        load_config("cpu", ["select.method=guess"])


def test_the_server_flags_a_fallback(tmp_path):
    from pipeline.serve.app import create_app

    image, saliency, instances = scene()
    served = remover(tmp_path, never(tmp_path), saliency, instances)
    from PIL import Image

    path = tmp_path / "p.png"
    Image.fromarray(image).save(path)
    with TestClient(create_app([served], tmp_dir=str(tmp_path))) as client:
        reply = client.post("/v1/remove?format=json", content=path.read_bytes())
        assert reply.status_code == 200, reply.text
        assert reply.headers["X-Layercut-Fallback"] == "1"
        assert "rather than nothing" in reply.json()["fallback"]
    fine = remover(tmp_path, stump(tmp_path), saliency, instances)
    with TestClient(create_app([fine], tmp_dir=str(tmp_path))) as client:
        reply = client.post("/v1/remove", content=path.read_bytes())
        assert reply.headers["X-Layercut-Fallback"] == "0"
