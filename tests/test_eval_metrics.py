"""Evaluation metrics against values computed by hand on tiny arrays; rules; GT jitter."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.eval import metrics_matting as mm
from pipeline.eval.metrics_select import (
    boundary_f,
    boundary_map,
    iou,
    match_instances,
    precision_at_1,
    sa_sor,
)
from pipeline.eval.proposals import JitterParams, item_rng, jitter_mask
from pipeline.eval.rules import (
    RULES,
    oracle_single_iou,
    oracle_union_iou,
    register_rule,
    rule_metrics,
)
from pipeline.types import Instance, mask_to_xyxy


def box_mask(hw, y0, y1, x0, x1):
    m = np.zeros(hw, bool)
    m[y0:y1, x0:x1] = True
    return m


# -- selection -------------------------------------------------------------------------------
def test_iou_hand_values():
    pred = box_mask((4, 4), 0, 2, 0, 4)  # 8 px
    gt = box_mask((4, 4), 1, 3, 0, 4)  # 8 px, 4 shared → 4 / 12
    assert iou(pred, gt) == pytest.approx(1 / 3)
    assert iou(np.zeros((3, 3), bool), np.zeros((3, 3), bool)) == 1.0
    assert iou(pred, np.zeros((4, 4), bool)) == 0.0


def test_iou_rejects_bad_shapes_naming_them():
    with pytest.raises(ValueError, match=r"\(4, 4\).*\(4, 5\)"):
        iou(np.zeros((4, 4), bool), np.zeros((4, 5), bool))
    with pytest.raises(ValueError, match="bool"):
        iou(np.zeros((4, 4), np.uint8), np.zeros((4, 4), bool))


def test_boundary_map_ignores_the_frame_edge():
    mask = box_mask((4, 4), 0, 4, 0, 2)  # left half, touching top, bottom and left edges
    expected = np.zeros((4, 4), bool)
    expected[:, 1] = True  # only the column facing the background is a boundary
    np.testing.assert_array_equal(boundary_map(mask), expected)


def test_boundary_f_hand_values():
    gt = box_mask((7, 7), 2, 5, 2, 5)  # 3×3 square: 8 boundary pixels
    pred = box_mask((7, 7), 2, 5, 3, 6)  # shifted right by one: 4 boundary pixels coincide
    assert boundary_f(pred, gt, tol_px=0) == pytest.approx(0.5)  # P = R = 4/8
    assert boundary_f(pred, gt, tol_px=1) == pytest.approx(1.0)  # every pixel within 1 px
    assert boundary_f(np.zeros((7, 7), bool), gt, tol_px=1) == 0.0


def test_precision_at_1_needs_half_of_the_top_instance_inside():
    gt = box_mask((4, 4), 0, 4, 0, 2)
    assert precision_at_1(box_mask((4, 4), 0, 1, 1, 3), gt) == 1.0  # 1 of 2 px inside
    assert precision_at_1(box_mask((4, 4), 0, 1, 1, 4), gt) == 0.0  # 1 of 3 px inside
    assert precision_at_1(np.zeros((4, 4), bool), gt) == 0.0


def three_instances():
    """GT A, B, C (ranks 1, 2, 3: A most salient) as disjoint 2×2 squares in a 6×6 image."""
    a = box_mask((6, 6), 0, 2, 0, 2)
    b = box_mask((6, 6), 0, 2, 4, 6)
    c = box_mask((6, 6), 4, 6, 0, 2)
    return a, b, c


def test_sa_sor_same_and_reversed_order():
    a, b, c = three_instances()
    assert sa_sor([a, b, c], [1, 2, 3], [a, b, c], [0.9, 0.5, 0.1]) == pytest.approx(1.0)
    assert sa_sor([a, b, c], [1, 2, 3], [c, b, a], [0.9, 0.5, 0.1]) == pytest.approx(-1.0)


def test_sa_sor_unmatched_gt_ranked_zero_and_extra_predictions_take_places():
    a, b, c = three_instances()
    x = box_mask((6, 6), 4, 6, 4, 6)  # a prediction matching no GT instance
    a_miss = box_mask((6, 6), 0, 1, 0, 1)  # IoU 1/4 with A: below 0.5, A stays unmatched
    # GT positions (1 = least salient): A 3, B 2, C 1. All four prediction scores ascending:
    # C 0.5 → 1, X 0.7 → 2, B 0.9 → 3, A_miss 0.95 → 4 (unmatched, but it takes a place).
    # gt = [3, 2, 1], pred = [A 0, B 3, C 1] → Pearson = −1 / sqrt(2 · 42/9) = −3 / sqrt(84)
    value = sa_sor([a, b, c], [1, 2, 3], [b, c, x, a_miss], [0.9, 0.5, 0.7, 0.95])
    assert value == pytest.approx(-3 / math.sqrt(84))


def test_sa_sor_undefined_cases():
    a, b, c = three_instances()
    assert sa_sor([a], [1], [a], [1.0]) is None  # a single GT instance: skipped
    assert sa_sor([a, b], [1, 1], [a, b], [0.9, 0.1]) is None  # tied GT ranks
    assert sa_sor([a, b], [1, 2], [c], [0.9]) == 0.0  # nothing matched: constant prediction


def test_match_instances_is_one_to_one_without_second_choices():
    ious = np.array([[0.8, 0.1], [0.6, 0.55]])
    # both GT rows pick column 0; row 0 has the higher IoU and keeps it, row 1 is unmatched
    # even though column 1 would pass 0.5 (as in the reference implementation)
    np.testing.assert_array_equal(match_instances(ious), [0, -1])
    np.testing.assert_array_equal(match_instances(np.array([[0.4]])), [-1])
    np.testing.assert_array_equal(match_instances(np.zeros((2, 0))), [-1, -1])


# -- matting ---------------------------------------------------------------------------------
PRED = np.array([[0.0, 0.5], [1.0, 1.0]], np.float32)
GT = np.array([[0.0, 1.0], [1.0, 0.0]], np.float32)


def test_sad_and_mse_hand_values():
    assert mm.sad(PRED, GT) == pytest.approx(1.5 / 1000)
    assert mm.mse(PRED, GT) == pytest.approx((0.25 + 1.0) / 4 * 1000)
    region = np.array([[False, True], [False, False]])
    assert mm.sad(PRED, GT, region) == pytest.approx(0.5 / 1000)
    assert mm.mse(PRED, GT, region) == pytest.approx(250.0)
    assert mm.mse(PRED, GT, np.zeros((2, 2), bool)) is None


def test_connectivity_hand_values():
    # the isolated GT pixel (right) is cut off from the largest component at t = 0.1, so
    # l = 0 there; GT has d = 1 ≥ 0.15 → φ_gt = 0, the prediction (0) has φ = 1: error 1
    gt = np.array([[1.0, 1.0, 0.0, 1.0]])
    pred = np.array([[1.0, 1.0, 0.0, 0.0]])
    assert mm.conn(pred, gt) == pytest.approx(1 / 1000)
    assert mm.conn(gt, gt) == 0.0
    # pixel 2 leaves Ω at t = 0.4 (pred 0.35 < 0.4) → l = 0.3: d_gt = 0.5 → φ 0.5,
    # d_pred = 0.05 < θ → φ 1; pixel 1 leaves at t = 0.6 → l = 0.5, d = 0.05 for both → 1
    gt = np.array([[1.0, 0.55, 0.8]])
    pred = np.array([[1.0, 0.55, 0.35]])
    phi_pred, phi_gt = mm.connectivity_phi(pred, gt)
    np.testing.assert_allclose(phi_pred, [[1.0, 1.0, 1.0]])
    np.testing.assert_allclose(phi_gt, [[1.0, 1.0, 0.5]])
    assert mm.conn(pred, gt) == pytest.approx(0.5 / 1000)


def _gradient_error_by_loops(pred, gt, sigma=1.4):
    """The mmediting/DIM formulation written out with explicit loops (independent check)."""

    def gauss(x):
        return math.exp(-(x**2) / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))

    half = math.ceil(sigma * math.sqrt(-2 * math.log(math.sqrt(2 * math.pi) * sigma * 1e-2)))
    size = 2 * half + 1
    kx = np.zeros((size, size))
    for i in range(size):
        for j in range(size):
            kx[i, j] = gauss(i - half) * (-(j - half) * gauss(j - half) / sigma**2)
    kx /= math.sqrt((kx**2).sum())
    ky = kx.T

    def magnitude(a):
        a = (a - a.min()) / (a.max() - a.min())
        h, w = a.shape
        out = np.zeros_like(a)
        for y in range(h):
            for x in range(w):
                gx = gy = 0.0
                for i in range(size):
                    for j in range(size):
                        yy = min(max(y + i - half, 0), h - 1)
                        xx = min(max(x + j - half, 0), w - 1)
                        gx += kx[i, j] * a[yy, xx]
                        gy += ky[i, j] * a[yy, xx]
                out[y, x] = math.hypot(gx, gy)
        return out

    return ((magnitude(pred) - magnitude(gt)) ** 2).sum() / 1000


def test_gradient_error_matches_the_reference_formulation():
    rng = np.random.default_rng(3)
    gt = np.clip(rng.normal(0.5, 0.4, (10, 9)), 0, 1)
    pred = np.clip(gt + rng.normal(0, 0.2, gt.shape), 0, 1)
    assert mm.grad(pred, gt) == pytest.approx(_gradient_error_by_loops(pred, gt), rel=1e-9)
    assert mm.grad(gt, gt) == 0.0
    # mat2gray stretch: a matte that is the GT at half contrast has the same gradients
    ramp = np.tile(np.linspace(0, 1, 12), (6, 1))
    assert mm.grad(0.5 * ramp, ramp) == pytest.approx(0.0, abs=1e-12)


def test_unknown_region_from_trimap_or_soft_alpha():
    alpha = np.array([[0.0, 0.0, 0.0, 0.5, 1.0, 1.0, 1.0]], np.float32)
    trimap = np.array([[0, 128, 255, 102, 255, 0, 0]], np.uint8)
    np.testing.assert_array_equal(mm.unknown_region(alpha, trimap)[0], [0, 1, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(mm.unknown_region(alpha, None, 1)[0], [0, 0, 1, 1, 1, 0, 0])


def test_matting_metrics_split_unknown_and_whole_image():
    region = np.array([[False, True], [False, False]])
    out = mm.matting_metrics(PRED, GT, region)
    assert out["sad"] == pytest.approx(0.5 / 1000)
    assert out["sad_image"] == pytest.approx(1.5 / 1000)
    assert out["mse_image"] == pytest.approx(312.5)
    assert out["conn_image"] == pytest.approx(mm.conn(PRED, GT))
    assert out["grad"] == pytest.approx(mm.grad(PRED, GT, region))
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        mm.matting_metrics(PRED, np.zeros((2, 3), np.float32), region)


# -- rules and oracles ------------------------------------------------------------------------
def inst(i, mask, det_score):
    return Instance(i, mask_to_xyxy(mask), "object", 0, det_score, mask)


def test_rules_pick_by_score_area_and_centre():
    hw = (10, 10)
    big_corner = box_mask(hw, 0, 4, 0, 5)  # 20 px, centroid far from the centre
    centre = box_mask(hw, 4, 6, 4, 6)  # 4 px, at the centre
    edge = box_mask(hw, 8, 10, 7, 10)  # 6 px, highest score
    instances = [inst(0, big_corner, 0.5), inst(1, centre, 0.4), inst(2, edge, 0.9)]
    np.testing.assert_array_equal(RULES["top_score"](instances, hw), edge)
    np.testing.assert_array_equal(RULES["largest"](instances, hw), big_corner)
    np.testing.assert_array_equal(RULES["central"](instances, hw), centre)
    np.testing.assert_array_equal(RULES["all"](instances, hw), big_corner | centre | edge)
    gt = centre | edge
    out = rule_metrics(instances, gt)
    assert out["iou_rule_central"] == pytest.approx(4 / 10)
    assert out["iou_rule_all"] == pytest.approx(10 / 30)
    assert out["iou_oracle_single"] == pytest.approx(6 / 10)
    assert out["iou_oracle_union"] == pytest.approx(1.0)


def test_oracles_stop_when_nothing_helps():
    gt = box_mask((6, 6), 0, 3, 0, 3)
    distractor = box_mask((6, 6), 3, 6, 3, 6)
    half = box_mask((6, 6), 0, 3, 0, 2)
    assert oracle_union_iou([distractor, half], gt) == pytest.approx(6 / 9)
    assert oracle_single_iou([], gt) == 0.0
    assert oracle_union_iou([], gt) == 0.0


def test_register_rule_adds_a_metric_and_refuses_duplicates():
    @register_rule("test_smallest")
    def smallest(instances, hw):
        return min(instances, key=lambda i: i.area_px).mask.copy()

    try:
        gt = box_mask((4, 4), 0, 1, 0, 1)
        instances = [inst(0, box_mask((4, 4), 0, 4, 0, 4), 1.0), inst(1, gt.copy(), 0.1)]
        assert rule_metrics(instances, gt)["iou_rule_test_smallest"] == 1.0
        with pytest.raises(ValueError, match="already registered"):
            register_rule("test_smallest")(smallest)
    finally:
        RULES.pop("test_smallest", None)


# -- jittered GT ----------------------------------------------------------------------------
def test_jitter_is_deterministic_and_degrades_mildly():
    yy, xx = np.mgrid[0:160, 0:200]
    disk = (yy - 80) ** 2 + (xx - 100) ** 2 < 50**2
    first = jitter_mask(disk, item_rng(7, "item"))
    again = jitter_mask(disk, item_rng(7, "item"))
    other = jitter_mask(disk, item_rng(8, "item"))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert 0.85 < iou(first, disk) < 1.0  # edges moved a few pixels, not a different object


def test_jitter_loses_thin_structures():
    mask = box_mask((80, 80), 20, 60, 10, 40)
    mask[39:40, 40:75] = True  # a 1-px wire sticking out of the blob
    params = JitterParams(edge_shift_px=0.0, holes_per_mpx=0.0)
    out = jitter_mask(mask, item_rng(0, "wire"), params)
    assert not out[39, 50:75].any()
    assert out[30:50, 15:35].all()
    with pytest.raises(ValueError, match="bool"):
        jitter_mask(mask.astype(np.uint8), item_rng(0, "x"))
