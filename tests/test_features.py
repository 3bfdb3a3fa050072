"""Features on synthetic scenes with known answers (tests/scenes.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.features import FEATURE_NAMES, compute_features
from pipeline.features.focus import DETAIL_RATIO_SHARP, FocusRaw, focus_features
from pipeline.features.grid import make_grid
from tests import scenes


def features_of(scene: scenes.Scene, saliency=None) -> list[dict[str, float]]:
    return [
        dict(inst.features) for inst in compute_features(scene.image, scene.instances, saliency)
    ]


def test_every_feature_present_finite_and_inputs_untouched():
    scene = scenes.keep_scene()
    out = compute_features(scene.image, scene.instances)
    assert [inst.id for inst in out] == [inst.id for inst in scene.instances]
    for before, after in zip(scene.instances, out, strict=True):
        assert len(before.features) == 0  # copies, not the caller's instances
        assert after.mask is before.mask
        assert tuple(after.features) == FEATURE_NAMES
        assert all(math.isfinite(v) for v in after.features.values())
        in_unit = {k: v for k, v in after.features.items() if k != "partner_id"}
        assert all(0.0 <= v <= 1.0 for v in in_unit.values()), in_unit


def test_no_instances_gives_empty_list():
    assert compute_features(scenes.background((20, 30)), []) == []


def test_sharp_square_is_sharper_than_its_blurred_copy():
    sharp, soft = features_of(scenes.focus_scene(sigma_px=2.0))
    assert sharp["sharpness_rel_max"] == pytest.approx(1.0)
    assert soft["sharpness_rel_max"] < 0.35
    assert sharp["sharpness_rel_image"] > soft["sharpness_rel_image"]
    assert sharp["blur"] < 0.1 < soft["blur"]


def test_blur_grows_and_sharpness_falls_with_defocus():
    soft = [features_of(scenes.focus_scene(sigma_px=s))[1] for s in (1.0, 2.0, 3.0)]
    blur = [f["blur"] for f in soft]
    sharpness = [f["sharpness_rel_max"] for f in soft]
    assert blur == sorted(blur) and blur[-1] > blur[0]
    assert sharpness == sorted(sharpness, reverse=True) and sharpness[-1] < sharpness[0]


def test_defocus_log_grows_by_doublings_of_defocus():
    # the detail ratio falls as 1/σ: a sharp edge's, then that at 2, 4, 8 times the defocus
    raws = [FocusRaw(1.0, DETAIL_RATIO_SHARP / k, 0.0) for k in (1, 2, 4, 8)] + [
        FocusRaw(1.0, 0.0, 0.0)
    ]
    out = focus_features(raws, 1.0)
    blur = np.array([f["blur"] for f in out])
    log = np.array([f["defocus_log"] for f in out])
    assert log[0] == pytest.approx(0.0) and log[-1] == pytest.approx(1.0)
    assert np.all(np.diff(log) > 0) and np.all(np.diff(blur) > 0)
    # blur's steps halve at each doubling, the log cue's stay within a third of each other
    assert np.diff(blur)[:3] == pytest.approx([0.5, 0.25, 0.125])
    steps = np.diff(log)[:3]
    assert steps.min() > 0.66 * steps.max()
    soft = [features_of(scenes.focus_scene(sigma_px=s))[1] for s in (1.0, 2.0, 3.0)]
    assert [f["defocus_log"] for f in soft] == sorted(f["defocus_log"] for f in soft)


def test_motion_blur_aligns_gradients():
    hw = (200, 300)
    tex = scenes.texture(hw, seed=3)
    left = scenes.rect_mask(hw, 20, 50, 130, 150)
    right = scenes.rect_mask(hw, 170, 50, 280, 150)
    image = scenes.paint(scenes.background(hw), left, tex)
    image = scenes.paint(image, right, scenes.motion_blur(tex, 9))
    still, moving = features_of(
        scenes.Scene(image, [scenes.instance(0, left), scenes.instance(1, right)])
    )
    assert moving["motion_blur"] > 0.5 > still["motion_blur"]


def _layout_scene():
    hw = (200, 300)
    masks = [
        scenes.disk_mask(hw, 150, 100, 20),  # centred
        scenes.disk_mask(hw, 25, 25, 15),  # near the top-left corner, inside
        scenes.rect_mask(hw, 250, 60, 300, 140),  # touching the right edge
        scenes.rect_mask(hw, 100, 170, 160, 200),  # touching the bottom edge
    ]
    image = scenes.background(hw)
    for k, mask in enumerate(masks):
        image = scenes.paint(image, mask, scenes.texture(hw, seed=20 + k))
    return scenes.Scene(image, [scenes.instance(k, m) for k, m in enumerate(masks)])


def test_centrality_area_and_position():
    centre, corner, right, bottom = features_of(_layout_scene())
    assert centre["centrality"] > 0.95
    assert corner["centrality"] < 0.25
    assert right["area_frac"] == pytest.approx(50 * 80 / (200 * 300))
    assert right["box_fill"] == pytest.approx(1.0)
    assert centre["box_fill"] == pytest.approx(math.pi / 4, abs=0.05)  # a 41 px pixel disk
    assert bottom["bottom_frac"] == pytest.approx(1.0)
    assert corner["bottom_frac"] < 0.25


def test_truncation_counts_the_frame_per_side():
    centre, corner, right, bottom = features_of(_layout_scene())
    for f in (centre, corner):
        assert f["truncation"] == 0.0
    # the right rectangle's outline: 80 px on the frame out of 2 × (50 + 80) - 4 boundary pixels
    assert right["trunc_right"] == pytest.approx(80 / 256)
    assert right["truncation"] == pytest.approx(right["trunc_right"])
    assert right["trunc_left"] == right["trunc_top"] == right["trunc_bottom"] == 0.0
    assert bottom["trunc_bottom"] > 0.0 and bottom["trunc_right"] == 0.0


def test_mask_ending_a_few_pixels_short_of_the_frame_is_truncated():
    hw = (200, 300)  # tolerance: 1 % of 200 = 2 px
    masks = []
    for gap_px in (0, 2, 3):
        mask = np.zeros(hw, bool)
        mask[60:140, 200 : 300 - gap_px] = True  # a detector mask stopping short of the edge
        masks.append(mask)
    scene = scenes.Scene(
        scenes.texture(hw, 2), [scenes.instance(k, m) for k, m in enumerate(masks)]
    )
    exact, short, clear = features_of(scene)
    assert exact["trunc_right"] == pytest.approx(80 / 356)
    assert short["trunc_right"] == pytest.approx(exact["trunc_right"], abs=0.01)
    assert clear["trunc_right"] == 0.0 and clear["truncation"] == 0.0


def test_full_frame_mask_is_all_frame():
    hw = (40, 60)
    scene = scenes.Scene(scenes.texture(hw, 1), [scenes.instance(0, np.ones(hw, bool))])
    (f,) = features_of(scene)
    assert f["truncation"] == pytest.approx(1.0)
    assert f["trunc_left"] > 0 and f["trunc_top"] > 0 and f["trunc_bottom"] > 0


def test_occluder_is_in_front_and_isolated_is_neutral():
    person, phone, _blurred, _cut, beside = features_of(scenes.keep_scene())
    assert phone["in_front"] == 1.0
    assert person["in_front"] == 0.0
    assert beside["in_front"] == 0.5  # overlaps nothing


def test_touching_object_interacts_distant_one_does_not():
    person, phone, blurred_person, cut, beside = features_of(scenes.keep_scene())
    assert phone["interaction"] > 0.7 and phone["contact"] > 0.9
    assert phone["partner_id"] == 0.0
    assert person["interaction"] == pytest.approx(phone["interaction"])
    assert person["partner_id"] == 1.0
    assert beside["interaction"] < 0.2 and beside["contact"] == 0.0
    assert cut["interaction"] == 0.0 and cut["partner_id"] == -1.0
    assert blurred_person["partner_id"] == -1.0  # persons pair with objects only


def test_object_rescued_from_the_map_interacts_one_way():
    scene = scenes.keep_scene()
    # the same phone, but found by the salient map instead of the detector
    instances = [
        inst.replace(source="saliency", label="object") if inst.id == 1 else inst
        for inst in scene.instances
    ]
    person, phone, *_ = [dict(i.features) for i in compute_features(scene.image, instances)]
    assert phone["interaction"] > 0.7 and phone["partner_id"] == 0.0  # kept with its holder
    # … but it does not make the person look like someone holding a thing
    assert person["partner_id"] != 1.0 and person["interaction"] < 0.2  # only the far object


def test_class_prior_and_person_flag():
    person, phone, *_ = features_of(scenes.keep_scene())
    assert person["is_person"] == 1.0 and phone["is_person"] == 0.0
    assert person["class_prior"] > phone["class_prior"]


def test_salient_cues_follow_the_map():
    scene = scenes.focus_scene()
    saliency = scene.instances[0].mask.astype(np.float32)  # only the left square is salient
    left, right = features_of(scene, saliency)
    assert left["sal_mean_inside"] == pytest.approx(1.0)
    assert left["sal_cover"] == pytest.approx(1.0)
    assert left["sal_share"] == pytest.approx(1.0)
    assert right["sal_mean_inside"] == right["sal_share"] == right["sal_cover"] == 0.0
    assert left["has_saliency"] == right["has_saliency"] == 1.0
    half = saliency * 0.4  # salient mass but below the 0.5 cover threshold
    left, _ = features_of(scene, half)
    assert left["sal_mean_inside"] == pytest.approx(0.4) and left["sal_cover"] == 0.0
    for f in features_of(scene):
        assert f["has_saliency"] == f["sal_mean_inside"] == f["sal_share"] == 0.0


def test_empty_mask_gets_neutral_values():
    hw = (50, 60)
    scene = scenes.Scene(scenes.texture(hw, 2), [scenes.instance(0, np.zeros(hw, bool))])
    (f,) = features_of(scene)
    assert f["area_frac"] == 0.0 and f["sharpness_rel_max"] == 0.0
    assert f["in_front"] == 0.5 and f["partner_id"] == -1.0


def test_reduced_grid_keeps_shares():
    hw = (1100, 1400)  # 1.54 MP: above the working-grid limit, so it is reduced
    grid = make_grid(hw)
    assert grid.reduced and grid.work_hw[0] * grid.work_hw[1] <= 1_250_000
    assert grid.rows[0] >= 0 and grid.rows[-1] <= hw[0] - 1 and grid.cols[-1] <= hw[1] - 1
    mask = scenes.rect_mask(hw, 1000, 300, 1400, 800)  # touches the right edge
    image = scenes.paint(scenes.background(hw), mask, scenes.texture(hw, seed=5))
    (f,) = features_of(scenes.Scene(image, [scenes.instance(0, mask)]))
    assert f["area_frac"] == pytest.approx(400 * 500 / (1100 * 1400), rel=0.02)
    assert f["trunc_right"] == pytest.approx(500 / (2 * (400 + 500)), rel=0.05)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ("mask", r"instance 0 mask must have shape \(40, 50\)"),
        ("saliency_shape", r"saliency must have shape \(40, 50\)"),
        ("saliency_dtype", "saliency must be a 2-D float32 array"),
        ("saliency_range", "saliency must hold values in"),
        ("image", "image must be H×W×3"),
    ],
)
def test_bad_inputs_raise_value_error_naming_them(bad, match):
    hw = (40, 50)
    image = scenes.texture(hw, 1)
    mask = scenes.rect_mask(hw, 5, 5, 20, 20)
    saliency = np.zeros(hw, np.float32)
    if bad == "mask":
        mask = np.zeros((41, 50), bool)
    elif bad == "saliency_shape":
        saliency = np.zeros((40, 51), np.float32)
    elif bad == "saliency_dtype":
        saliency = np.zeros(hw, np.float64)
    elif bad == "saliency_range":
        saliency = np.full(hw, 2.0, np.float32)
    elif bad == "image":
        image = image[..., 0]
    with pytest.raises(ValueError, match=match):
        compute_features(image, [scenes.instance(0, mask)], saliency)
