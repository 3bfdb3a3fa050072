"""Layers: ranking, toggles, re-selection without models, compositing maths and export.

The keep policy and refiner are replaced by tiny deterministic functions here: this file tests
the container, not the stages (those have their own tests)."""

import json
from functools import partial

import numpy as np
import pytest

from pipeline.fakes import FakeSelection
from pipeline.layers import Layers
from pipeline.types import Decision, Instance, KeepMode, Matte, Role, instance_ref


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
    # "main" keeps the top instance; "all" keeps everything; each reason names the next one
    decisions = []
    for rank in range(len(instances)):
        kept = mode is KeepMode.ALL or rank == 0
        after = instances[(rank + 1) % len(instances)]
        reason = f"{mode.value}, before {instance_ref(after.id)}"
        decisions.append(Decision(Role.MAIN if kept else Role.DROPPED, reason))
    # alternatives by instance id: the second alone, then the last with the second
    second, last = instances[1].id, instances[-1].id
    return FakeSelection(tuple(decisions), 0.25, ((second,), (last, second)))


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


def test_a_layer_switched_off_stays_off_whatever_keep_asks(layers):
    layers.set_enabled(1, False)  # the dog, kept by every mode
    layers.set_enabled(3, True)  # the cup, dropped by "main"
    for keep in (None, "main", "all"):
        alpha = layers.alpha(keep=keep)
        assert alpha[25, 35] == 0.0, keep  # the dog stays off
        assert alpha[1, 1] == 1.0, keep  # the cup stays on
        assert layers.composite(keep=keep)[25, 35, 3] == 0
        assert [layer.rank for layer in layers.kept_layers(keep)] == (
            [2, 3] if keep == "all" else [3]
        )
        assert not layers.kept_mask(keep)[25, 35]
    assert layers.keep is KeepMode.MAIN and not layers[0].enabled  # nothing was reset
    layers.set_keep("main")  # starting over forgets the switches
    assert layers[0].enabled and not layers[2].enabled and layers[0].switched is None


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
    assert (first["rank"], first["id"]) == (1, 1)  # the dog: rank 1, the detector's #1


def test_reasons_and_alternatives_name_layers_by_rank_not_id(layers):
    # ranks: dog (id 1) 1, person (id 0) 2, cup (id 2) 3
    assert [layer.reason for layer in layers] == [
        "main, before #2",
        "main, before #3",
        "main, before #1",
    ]
    assert layers.alternatives == ((2,), (3, 2))
    doc = layers.to_json()
    assert doc["alternatives"] == [[2], [3, 2]]
    assert doc["layers"][0]["reason"] == "main, before #2"
    layers.set_keep("all")
    assert layers[2].reason == "all, before #1"


def test_a_reason_naming_an_instance_by_a_bare_number_or_an_unknown_id_is_refused():
    image = np.full((40, 60, 3), 10, np.uint8)

    def bare(instances, mode):
        return FakeSelection(tuple(Decision(Role.MAIN, "held by #0") for _ in instances), 0, ())

    with pytest.raises(ValueError, match="instance_ref"):
        Layers(image, _instances(), KeepMode.MAIN, bare, _refine)

    def unknown(instances, mode):
        decisions = tuple(Decision(Role.MAIN, f"near {instance_ref(7)}") for _ in instances)
        return FakeSelection(decisions, 0, ())

    with pytest.raises(ValueError, match="instance 7"):
        Layers(image, _instances(), KeepMode.MAIN, unknown, _refine)
    offers = partial(FakeSelection, ambiguity=0.9, alternatives=((7,),))
    with pytest.raises(ValueError, match=r"instance\(s\) \[7\]"):
        Layers(
            image,
            _instances(),
            KeepMode.MAIN,
            lambda i, m: offers(_select(i, m).decisions),
            _refine,
        )


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


def _halo(image, inst, ring_px=2):
    """A matting-like refiner: alpha 1 on the mask, 0.5 on a ring of ``ring_px`` around it."""
    grown = inst.mask.copy()
    for _ in range(ring_px):
        grown = grown | np.roll(grown, 1, 0) | np.roll(grown, -1, 0)
        grown = grown | np.roll(grown, 1, 1) | np.roll(grown, -1, 1)
    alpha = np.where(inst.mask, 1.0, np.where(grown, 0.5, 0.0)).astype(np.float32)
    return Matte(alpha, np.full((*alpha.shape, 3), 200, np.uint8), 0, 0)


def test_switching_an_occluder_off_leaves_no_ghost_of_it_in_its_neighbour():
    h, w = 40, 60
    front = _square(h, w, 10, 10, 20)  # a person in front …
    back = np.zeros((h, w), bool)
    back[15:35, 30:50] = True  # … and the bag beside them, touching
    insts = [
        Instance(0, [10, 10, 30, 30], "person", 0, 0.9, front, score=0.9),
        Instance(1, [30, 15, 50, 35], "bag", 1, 0.9, back, score=0.5),
    ]
    layers = Layers(np.zeros((h, w, 3), np.uint8), insts, KeepMode.ALL, _select, _halo)
    both = layers.alpha()
    assert (both[front | back] == 1.0).all()
    assert both[12, 8] == 0.5  # the soft edge into the background stays
    layers.set_enabled(1, False)  # the person off: nothing of it may remain
    alone = layers.alpha()
    assert (alone[front] == 0.0).all()
    assert (alone[back] == 1.0).all() and alone[20, 51] == 0.5  # the bag and its own edge
    rgba = layers.composite()
    assert (rgba[..., 3][front] == 0).all()
    # a layer's own file holds none of its neighbour either
    assert (layers[1].rgba()[..., 3][front] == 0).all() and layers[1].rgba()[20, 51, 3] == 128
    # the refined matte itself is kept whole: crops for a client that composes itself
    crop, x0, y0 = layers[1].crop_rgba()
    assert crop[15 - y0, 29 - x0, 3] == 128  # the bag's edge over the person's mask
