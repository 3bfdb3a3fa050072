"""Salient-object map stage: mask refinement and rescue on synthetic maps with known answers,
plus the real ISNet on one DAVIS photo when ``shared/weights`` and ``shared/data`` exist."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipeline.stages.saliency import IsnetSaliency, postprocess, preprocess
from pipeline.stages.salient_masks import (
    adaptive_band_px,
    refine_instances,
    refine_with_saliency,
    rescue_instances,
)
from pipeline.types import Instance, mask_to_xyxy
from tests.checkpoints import shared_root, shared_weights_dir

HW = (100, 120)


def box_mask(rows: slice, cols: slice, hw: tuple[int, int] = HW) -> np.ndarray:
    mask = np.zeros(hw, bool)
    mask[rows, cols] = True
    return mask


def make_instance(mask: np.ndarray, id_: int = 0, label: str = "person") -> Instance:
    return Instance(
        id=id_, xyxy=mask_to_xyxy(mask), label=label, class_id=0, det_score=0.9, mask=mask
    )


# -- refine_with_saliency -------------------------------------------------------------------------
def test_refined_mask_follows_the_map_edge_inside_the_band_and_not_beyond():
    instance = make_instance(box_mask(slice(30, 70), slice(30, 70)))
    saliency = np.zeros(HW, np.float32)
    # The map starts 3 px lower than the detector mask, reaches 3 px further left, and runs
    # 10 px further right (beyond the 5 px band).
    saliency[33:70, 27:80] = 0.9
    refined = refine_with_saliency(instance, saliency, band_px=5)
    expected = box_mask(slice(33, 70), slice(27, 75))
    np.testing.assert_array_equal(refined.mask, expected)
    assert refined.id == instance.id and refined.label == "person"


def test_soft_mask_is_the_map_in_the_band_one_in_the_core_zero_outside():
    instance = make_instance(box_mask(slice(30, 70), slice(30, 70)))
    rng = np.random.default_rng(0)
    saliency = rng.uniform(0.0, 1.0, HW).astype(np.float32)
    saliency[20:80, 20:80] = np.clip(saliency[20:80, 20:80] + 0.5, 0, 1)  # covered on average
    refined = refine_with_saliency(instance, saliency, band_px=4)
    soft = refined.soft_mask
    assert soft.dtype == np.float32 and soft.shape == HW
    assert soft.min() >= 0.0 and soft.max() <= 1.0
    core = box_mask(slice(34, 66), slice(34, 66))
    grown = box_mask(slice(26, 74), slice(26, 74))
    band = grown & ~core
    np.testing.assert_array_equal(soft[core], 1.0)
    np.testing.assert_array_equal(soft[~grown], 0.0)
    # In the band the soft mask is the map, except salient bits cut off from the instance.
    connected = band & refined.mask
    np.testing.assert_array_equal(soft[connected], saliency[connected])
    below = band & (saliency < 0.5)
    np.testing.assert_array_equal(soft[below], saliency[below])
    assert not refined.mask[~grown].any()


def test_salient_bits_in_the_band_not_connected_to_the_core_are_left_out():
    instance = make_instance(box_mask(slice(30, 70), slice(30, 70)))
    saliency = np.zeros(HW, np.float32)
    saliency[36:70, 30:70] = 0.8  # the object itself, its top 6 px lower than the detector's
    saliency[24:27, 40:50] = 0.95  # a separate salient speck 3-6 px above the mask, in the band
    refined = refine_with_saliency(instance, saliency, band_px=8)
    assert not refined.mask[24:27].any()
    np.testing.assert_array_equal(refined.soft_mask[24:27, 40:50], 0.0)
    np.testing.assert_array_equal(refined.mask, box_mask(slice(36, 70), slice(30, 70)))


def test_instance_the_map_does_not_cover_is_returned_unchanged():
    instance = make_instance(box_mask(slice(10, 40), slice(10, 40)))
    saliency = np.zeros(HW, np.float32)
    saliency[50:90, 60:110] = 1.0  # salient elsewhere
    saliency[10:40, 10:14] = 1.0  # a sliver of the instance: mean map value ≈ 0.13 in its mask
    assert refine_with_saliency(instance, saliency, band_px=5) is instance
    refined_all = refine_instances([instance], saliency, band_px=5)
    assert refined_all[0] is instance


def test_frame_edge_does_not_erode_a_truncated_instance():
    instance = make_instance(box_mask(slice(0, 40), slice(0, 40)))  # cut by the top-left frame
    saliency = np.zeros(HW, np.float32)
    saliency[0:40, 0:40] = 0.3  # weak map everywhere in the mask …
    saliency[0:30, 0:30] = 0.9  # … strong only near the frame corner (mean ≈ 0.64)
    refined = refine_with_saliency(instance, saliency, band_px=5)
    # The core (5 px from the inner edges, none from the frame) reaches the frame.
    assert refined.mask[0, 0] and refined.soft_mask[0, 0] == 1.0
    np.testing.assert_array_equal(refined.mask, box_mask(slice(0, 35), slice(0, 35)))


def test_band_px_zero_adapts_to_instance_size():
    assert adaptive_band_px(40_000, (1000, 1000)) == 20  # 0.1 · sqrt(40 000)
    assert adaptive_band_px(100, (1000, 1000)) == 2  # floor of 2 px
    assert adaptive_band_px(1_000_000, (1000, 1000)) == 30  # capped at 3 % of the long side
    small = make_instance(box_mask(slice(30, 70), slice(30, 70)))  # 1600 px → band 4 px
    saliency = np.zeros(HW, np.float32)
    saliency[24:76, 24:76] = 1.0  # the map reaches 6 px beyond the mask
    refined = refine_with_saliency(small, saliency, band_px=0)
    # Grown by exactly 4 px (Euclidean, so the corners are rounded), not by the map's 6 px.
    np.testing.assert_array_equal(refined.mask[26:74, 30:70], True)
    np.testing.assert_array_equal(refined.mask[30:70, 26:74], True)
    assert not refined.mask[:26].any() and not refined.mask[:, 74:].any()
    assert not refined.mask[26, 26]  # √32 ≈ 5.7 px from the mask corner


def test_saliency_of_the_wrong_shape_or_dtype_is_refused():
    instance = make_instance(box_mask(slice(30, 70), slice(30, 70)))
    with pytest.raises(ValueError, match=r"\(50, 60\)"):
        refine_with_saliency(instance, np.zeros((50, 60), np.float32), band_px=5)
    with pytest.raises(ValueError, match="float32"):
        refine_with_saliency(instance, np.zeros(HW, np.float64), band_px=5)
    with pytest.raises(ValueError, match="shape"):
        rescue_instances([instance], np.zeros((50, 60), np.float32), 0.01, 0.2)


def test_core_gives_way_only_where_the_map_is_sure_it_is_background():
    instance = make_instance(box_mask(slice(20, 80), slice(20, 100)))
    saliency = np.zeros(HW, np.float32)
    saliency[20:80, 20:100] = 0.9
    saliency[35:65, 70:90] = 0.0  # a bystander's torso inside the coarse mask: sure background
    saliency[35:65, 30:45] = 0.2  # a faint, motion-blurred limb: not sure, stays
    refined = refine_with_saliency(instance, saliency, band_px=5)
    assert not refined.mask[36:64, 71:89].any()
    assert refined.mask[35:65, 30:45].all()
    assert refined.soft_mask[50, 80] == 0.0 and refined.soft_mask[50, 35] == 1.0


# -- two instances in one salient region ----------------------------------------------------------
def test_touching_instances_keep_their_cores():
    person = make_instance(box_mask(slice(20, 60), slice(30, 70)), 0, "person")
    bike = make_instance(box_mask(slice(60, 90), slice(25, 75)), 1, "bicycle")
    saliency = np.zeros(HW, np.float32)
    saliency[15:95, 20:80] = 1.0  # one salient region over both, wider than either
    alone = refine_with_saliency(person, saliency, band_px=6)
    assert alone.mask[60:66, 30:70].all()  # on its own the person's band eats into the bike
    refined_person, refined_bike = refine_instances([person, bike], saliency, band_px=6)
    assert not (refined_person.mask & refined_bike.mask).any()
    # Neither takes pixels of the other's detector mask (not only its core) …
    assert not (refined_person.mask & bike.mask).any()
    assert not (refined_bike.mask & person.mask).any()
    # … and beside the person the bike's wider top corners stay the bike's (nearer to it).
    assert refined_bike.mask[57:60, 25:28].all() and not refined_person.mask[57:60, 25:28].any()
    # Each still grows where nobody else is: the map is wider than both masks.
    assert refined_person.mask[15:20, 30:70].all() and refined_person.mask[20:50, 24].all()
    assert refined_bike.mask[90:95, 25:75].all() and refined_bike.mask[60:90, 20:25].all()
    bike_core = box_mask(slice(66, 84), slice(31, 69))
    assert refined_bike.mask[bike_core].all()


def test_gap_between_two_instances_is_split_by_proximity():
    upper = make_instance(box_mask(slice(20, 60), slice(30, 70)), 0)
    lower = make_instance(box_mask(slice(64, 90), slice(30, 70)), 1, "bicycle")
    saliency = np.zeros(HW, np.float32)
    saliency[20:90, 30:70] = 1.0  # the 4-row gap (rows 60–63) is salient too
    refined_upper, refined_lower = refine_instances([upper, lower], saliency, band_px=6)
    assert refined_upper.mask[60:62, 30:70].all() and not refined_upper.mask[62:].any()
    assert refined_lower.mask[62:64, 30:70].all() and not refined_lower.mask[:62].any()


# -- rescue_instances -----------------------------------------------------------------------------
def test_large_uncovered_salient_blob_is_rescued_as_object():
    person = make_instance(box_mask(slice(10, 40), slice(10, 30)), 4)
    saliency = np.zeros(HW, np.float32)
    saliency[10:40, 10:30] = 0.9  # the person, covered
    saliency[50:90, 60:110] = np.linspace(0.6, 1.0, 50, dtype=np.float32)  # an uncovered blob
    saliency[5:8, 100:104] = 1.0  # salient but tiny (12 px < 1 % of 12 000)
    result = rescue_instances([person], saliency, min_area_frac=0.01, min_part_frac=0.2)
    assert len(result) == 2 and result[0] is person
    rescued = result[1]
    blob = box_mask(slice(50, 90), slice(60, 110))
    np.testing.assert_array_equal(rescued.mask, blob)
    assert (rescued.id, rescued.label, rescued.class_id, rescued.source) == (
        5,
        "object",
        -1,
        "saliency",
    )
    assert rescued.det_score == pytest.approx(float(saliency[blob].mean()))
    np.testing.assert_array_equal(rescued.soft_mask[blob], saliency[blob])
    np.testing.assert_array_equal(rescued.soft_mask[~blob], 0.0)
    np.testing.assert_array_equal(rescued.xyxy, [60, 50, 110, 90])


def test_with_nothing_detected_the_largest_salient_speck_is_rescued_rather_than_nothing():
    saliency = np.zeros(HW, np.float32)
    saliency[5:8, 100:104] = 1.0  # 12 px, under 1 % of the image
    saliency[60:64, 20:25] = 0.7  # 20 px: the largest speck
    saliency[30:40, 30:40] = 0.4  # below the map's threshold: not salient
    (rescued,) = rescue_instances([], saliency, min_area_frac=0.01, min_part_frac=0.2)
    np.testing.assert_array_equal(rescued.mask, box_mask(slice(60, 64), slice(20, 25)))
    assert (rescued.id, rescued.source) == (0, "saliency")
    # beside a detected instance the specks stay noise, and a map with nothing salient gives
    # nothing
    person = make_instance(box_mask(slice(10, 40), slice(50, 70)), 4)
    assert rescue_instances([person], saliency, 0.01, 0.2) == [person]
    assert rescue_instances([], np.full(HW, 0.4, np.float32), 0.01, 0.2) == []


def test_blob_covered_by_an_instance_is_not_rescued():
    saliency = np.zeros(HW, np.float32)
    saliency[50:90, 60:110] = 0.9
    covering = make_instance(box_mask(slice(55, 90), slice(60, 110)))  # 87.5 % of the blob
    # the uncovered 5-row strip is the instance's edge, not a missed object
    assert rescue_instances([covering], saliency, 0.01, 0.2, gap_px=3) == [covering]
    # Covering only a tenth of it: rescued, minus the pixels the instance already holds.
    corner = make_instance(box_mask(slice(50, 54), slice(60, 110)))
    result = rescue_instances([corner], saliency, 0.01, 0.2, gap_px=3)
    assert len(result) == 2
    np.testing.assert_array_equal(result[1].mask, box_mask(slice(54, 90), slice(60, 110)))


def test_uncovered_half_of_a_partly_detected_region_is_rescued():
    # One salient region: a detected rider (top) on an undetected cart (bottom), like the
    # soapbox photos; the rider covers 40 % of the region, far above any "uncovered" cut-off.
    saliency = np.zeros(HW, np.float32)
    saliency[20:70, 30:80] = 0.95
    rider = make_instance(box_mask(slice(20, 40), slice(30, 80)), 2)
    result = rescue_instances([rider], saliency, 0.01, 0.2, gap_px=3)
    assert len(result) == 2 and result[0] is rider
    cart = result[1]
    np.testing.assert_array_equal(cart.mask, box_mask(slice(40, 70), slice(30, 80)))
    assert not (cart.mask & rider.mask).any()
    # A piece smaller than min_part_frac of the covered part is the rider's fringe: kept out.
    assert rescue_instances([rider], saliency, 0.01, 2.0, gap_px=3) == [rider]
    # A thin salient sliver along the mask (the map reaching past a coarse detector edge) is no
    # piece whatever the fractions.
    fringe = np.zeros(HW, np.float32)
    fringe[20:43, 30:80] = 0.95
    assert rescue_instances([rider], fringe, 0.001, 0.0, gap_px=3) == [rider]


def test_rescue_gap_scales_with_the_image():
    hw = (1000, 1500)  # default gap: max(3, 0.004 × 1500) = 6 px
    saliency = np.zeros(hw, np.float32)
    saliency[100:500, 100:600] = 0.9
    covering = make_instance(box_mask(slice(100, 495), slice(100, 600), hw))
    assert len(rescue_instances([covering], saliency, 0.0001, 0.0)) == 1  # 5-row strip: edge
    assert len(rescue_instances([covering], saliency, 0.0001, 0.0, gap_px=1)) == 2


def test_rescue_without_instances_starts_ids_at_zero_and_validates_fractions():
    saliency = np.zeros(HW, np.float32)
    saliency[10:30, 10:30] = 1.0
    saliency[60:95, 50:100] = 1.0
    result = rescue_instances([], saliency, 0.01, 0.5)
    assert [r.id for r in result] == [0, 1]
    assert result[0].area_px == 35 * 50 and result[1].area_px == 400  # largest first
    with pytest.raises(ValueError, match="min_area_frac"):
        rescue_instances([], saliency, 0.0, 0.5)
    with pytest.raises(ValueError, match="min_part_frac"):
        rescue_instances([], saliency, 0.01, -0.5)


# -- pre/post-processing --------------------------------------------------------------------------
def test_preprocess_layout_and_normalisations():
    white = np.full((30, 50, 3), 255, np.uint8)
    batch = preprocess(white, 64, "rembg")
    assert batch.shape == (1, 3, 64, 64) and batch.dtype == np.float32
    np.testing.assert_allclose(batch[0, :, 5, 5], [1 - 0.485, 1 - 0.456, 1 - 0.406], atol=1e-6)
    gray = np.full((30, 50, 3), 128, np.uint8)
    np.testing.assert_allclose(preprocess(gray, 64, "imgly"), 0.0, atol=1e-6)
    rgb = np.zeros((30, 50, 3), np.uint8)
    rgb[..., 0] = 200  # only red: channel order must stay R, G, B
    batch = preprocess(rgb, 16, "rembg")
    np.testing.assert_allclose(batch[0, :, 8, 8], [1 - 0.485, -0.456, -0.406], atol=1e-6)
    with pytest.raises(ValueError, match="normalization"):
        preprocess(white, 64, "caffe")
    with pytest.raises(ValueError, match="H×W×3"):
        preprocess(np.zeros((30, 50), np.uint8), 64)


def test_postprocess_resizes_to_the_image_and_clips():
    square = np.zeros((1, 1, 64, 64), np.float32)
    square[0, 0, :, 32:] = 1.0
    out = postprocess(square, (30, 50))
    assert out.shape == (30, 50) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert out[:, :20].max() == 0.0 and out[:, 30:].min() == 1.0
    with pytest.raises(ValueError, match="shape"):
        postprocess(np.zeros((1, 2, 64, 64), np.float32), (30, 50))


# -- the real ISNet -------------------------------------------------------------------------------
ISNET = shared_weights_dir() / "isnet_medium.onnx"
BLACKSWAN = shared_root() / "data" / "eval" / "davis2016_val" / "blackswan_00012"


@pytest.mark.skipif(
    not ISNET.is_file() or not BLACKSWAN.is_dir(),
    reason=f"real ISNet weights or DAVIS item absent ({ISNET}, {BLACKSWAN}); set LAYERCUT_SHARED",
)
def test_real_isnet_finds_the_swan():
    image = np.asarray(Image.open(BLACKSWAN / "image.jpg").convert("RGB"))
    truth = np.asarray(Image.open(BLACKSWAN / "mask.png").convert("L")) > 127
    model = IsnetSaliency(ISNET, input_px=1024, threads=2)
    saliency = model.predict(image)
    assert saliency.shape == image.shape[:2] and saliency.dtype == np.float32
    assert saliency.min() >= 0.0 and saliency.max() <= 1.0
    predicted = saliency >= 0.5
    iou = (predicted & truth).sum() / (predicted | truth).sum()
    assert iou > 0.7, f"IoU {iou:.3f} with mask.png: the pre-processing is probably wrong"
    # This export has a fixed 1024² input: another size is refused, not silently ignored.
    with pytest.raises(ValueError, match="fixed input"):
        IsnetSaliency(ISNET, input_px=768)
