"""Layers: ranking, toggles, re-selection without models, compositing maths and export.

The keep policy and refiner are replaced by tiny deterministic functions here: this file tests
the container, not the stages (those have their own tests)."""

import json

import numpy as np
import pytest

from pipeline.fakes import FakeSelection
from pipeline.layers import Layers
from pipeline.types import Decision, Instance, KeepMode, Matte, Role


def _square(h, w, y0, x0, side):
    mask = np.zeros((h, w), bool)
    mask[y0 : y0 + side, x0 : x0 + side] = True
    return mask


def _instances(h=40, w=60):
    a = Instance(0, [5, 5, 15, 15], "person", 0, 0.9, _square(h, w, 5, 5, 10), score=0.2)
    b = Instance(1, [30, 20, 50, 40], "dog", 16, 0.8, _square(h, w, 20, 30, 20), score=0.9)
    c = Instance(2, [0, 0, 4, 4], "cup", 41, 0.5, _square(h, w, 0, 0, 4), score=-1.0)
    return [a, b, c]


def _select(instances, mode):
    # "main" keeps the top instance; "all" keeps everything
    decisions = []
    for rank, inst in enumerate(instances):
        kept = mode is KeepMode.ALL or rank == 0
        decisions.append(Decision(Role.MAIN if kept else Role.DROPPED, f"{mode.value} #{inst.id}"))
    return FakeSelection(tuple(decisions), 0.25, ((1,),))


def _refine(image, inst):
    x0, y0, x1, y1 = (int(v) for v in inst.xyxy)
    alpha = inst.mask[y0:y1, x0:x1].astype(np.float32)
    fg = np.full((*alpha.shape, 3), 200, np.uint8)
    return Matte(alpha, fg, x0, y0)


@pytest.fixture
def layers():
    image = np.full((40, 60, 3), 10, np.uint8)
    return Layers(image, _instances(), KeepMode.MAIN, _select, _refine, timings_s={"detect": 0.1})


def test_ranked_by_score_and_indexable(layers):
    assert [layer.label for layer in layers] == ["dog", "person", "cup"]
    assert [layer.rank for layer in layers] == [1, 2, 3]
    assert layers[0].role is Role.MAIN and layers[1].role is Role.DROPPED
    assert len(layers) == 3


def test_composite_of_main_keeps_only_the_top_instance(layers):
    rgba = layers.composite()
    assert rgba.shape == (40, 60, 4) and rgba.dtype == np.uint8
    assert rgba[25, 35, 3] == 255  # inside the dog
    assert rgba[8, 8, 3] == 0  # person dropped
    assert tuple(rgba[25, 35, :3]) == (200, 200, 200)  # decontaminated colour used


def test_toggle_and_recomposite_without_refining_again(layers):
    calls = []
    layers._refine_fn = lambda image, inst: calls.append(inst.id) or _refine(image, inst)
    layers.composite()
    layers.set_enabled(2, True)
    rgba = layers.composite()
    assert rgba[8, 8, 3] == 255
    layers.set_enabled(1, False)
    assert layers.composite()[25, 35, 3] == 0
    layers.composite()
    assert sorted(calls) == [0, 1]  # each instance matted once, whatever the toggles
    with pytest.raises(IndexError):
        layers.set_enabled(9, True)


def test_keep_mode_switch_reselects(layers):
    assert layers.alpha(keep="all")[1, 1] == 1.0  # cup kept by "all"
    assert layers.alpha()[1, 1] == 0.0  # current mode unchanged
    layers.set_keep("all")
    assert all(layer.enabled for layer in layers) and layers.keep is KeepMode.ALL
    assert layers.kept_mask().sum() == 100 + 400 + 16


def test_union_alpha_and_input_alpha():
    image = np.zeros((10, 10, 3), np.uint8)
    full = np.ones((10, 10), bool)
    insts = [Instance(i, [0, 0, 10, 10], "x", 0, 1.0, full, score=1.0 - i) for i in range(2)]

    def half(image, inst):
        return Matte(np.full((10, 10), 0.5, np.float32), np.zeros((10, 10, 3), np.uint8), 0, 0)

    input_alpha = np.full((10, 10), 0.5, np.float32)
    layers = Layers(image, insts, KeepMode.ALL, _select, half, input_alpha=input_alpha)
    # 1 - (1-0.5)(1-0.5) = 0.75, times the input's own transparency 0.5
    assert layers.alpha()[0, 0] == pytest.approx(0.375)


def test_json_and_save(layers, tmp_path):
    doc = layers.to_json()
    json.dumps(doc)
    assert doc["keep"] == "main" and doc["width"] == 60 and doc["height"] == 40
    first = doc["layers"][0]
    for key in ("rank", "score", "role", "reason", "label", "box_xyxy", "area_px", "features"):
        assert key in first
    assert first["area_px"] == 400 and first["role"] == "main"


def test_bad_shapes_raise_value_error():
    with pytest.raises(ValueError, match="H×W×3"):
        Layers(np.zeros((4, 4), np.uint8), [], KeepMode.MAIN, _select, _refine)
    with pytest.raises(ValueError, match="input_alpha"):
        Layers(
            np.zeros((4, 4, 3), np.uint8),
            [],
            KeepMode.MAIN,
            _select,
            _refine,
            input_alpha=np.zeros((3, 3), np.float32),
        )
