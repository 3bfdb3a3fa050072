"""Refine stage on synthetic scenes with a known alpha: a disc with a linear ramp edge,
composited from a foreground colour F over a background colour B."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from pipeline.config import RefineConfig
from pipeline.stages.refine import (
    ESTIMATORS,
    BinaryRefiner,
    MattingRefiner,
    RembgRecipeRefiner,
    build_refiner,
    crop_box,
    guided_upsample,
    resize,
    solve_alpha,
)
from pipeline.stages.trimap import base_band_px, rembg_trimap, trimap_from_mask
from pipeline.types import Instance

F = np.array([230.0, 200.0, 40.0])
B = np.array([20.0, 60.0, 160.0])
METHODS = ["matting", "closed_form", "rembg", "none"]


def disc_alpha(h, w, radius, ramp_px, centre=None):
    """``h×w float32`` disc of ``radius`` px whose edge ramps linearly over ``ramp_px``."""
    cy, cx = centre if centre is not None else (h / 2, w / 2)
    yy, xx = np.ogrid[:h, :w]
    dist = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2, dtype=np.float32)
    return np.clip((radius - dist) / ramp_px + 0.5, 0, 1).astype(np.float32)


def compose(alpha, seed=0, noise=2.0):
    """``alpha·F + (1 - alpha)·B`` plus a little noise, as ``h×w×3 uint8``."""
    a = alpha[..., None]
    image = a * F + (1 - a) * B
    image += np.random.default_rng(seed).normal(0, noise, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def disc_scene(h=240, w=320, radius=70, ramp_px=6, seed=0):
    alpha = disc_alpha(h, w, radius, ramp_px)
    return compose(alpha, seed), alpha


def instance_of(mask, soft=None):
    ys, xs = np.nonzero(mask)
    box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] if len(xs) else [0, 0, 0, 0]
    return Instance(0, box, "object", -1, 1.0, mask, soft_mask=soft)


def sad(matte, alpha):
    return float(np.abs(matte.full_alpha(alpha.shape) - alpha).sum())


def check_matte(matte, hw):
    """The invariants every refiner output must satisfy on an ``hw`` image."""
    h, w = matte.alpha.shape
    assert matte.alpha.dtype == np.float32 and matte.foreground.dtype == np.uint8
    assert np.isfinite(matte.alpha).all()
    assert 0.0 <= matte.alpha.min() and matte.alpha.max() <= 1.0
    assert 0 <= matte.x0 and 0 <= matte.y0 and matte.x0 + w <= hw[1] and matte.y0 + h <= hw[0]


@pytest.mark.parametrize("method", ["matting", "closed_form", "rembg"])
def test_matting_beats_the_binary_mask(method):
    image, alpha = disc_scene()
    inst = instance_of(alpha >= 0.5)
    binary = build_refiner(RefineConfig(method="none")).refine(image, inst)
    refined = build_refiner(RefineConfig(method=method)).refine(image, inst)
    check_matte(refined, alpha.shape)
    assert sad(refined, alpha) < 0.35 * sad(binary, alpha)


def test_foreground_colour_is_decontaminated():
    image, alpha = disc_scene()
    matte = build_refiner(RefineConfig()).refine(image, instance_of(alpha >= 0.5))
    full = matte.full_alpha(alpha.shape)
    edge = (full > 0.3) & (full < 0.9)
    y, x = np.nonzero(edge)
    colours = matte.foreground[y - matte.y0, x - matte.x0].astype(float)
    # the photo's edge pixels are mixed with B; the estimated foreground is close to F
    mixed = image[edge].astype(float)
    assert np.abs(colours - F).mean() < 0.5 * np.abs(mixed - F).mean()
    inside = full > 0.5
    y, x = np.nonzero(inside)
    assert np.abs(matte.foreground[y - matte.y0, x - matte.x0] - F).mean() < 10


def band_width_px(trimap, row):
    """Number of unknown pixels on one row of a trimap."""
    return int((trimap[row] == 0.5).sum())


def test_adaptive_band_is_wider_for_a_larger_object():
    assert base_band_px(100 * 100) < base_band_px(800 * 800)
    flat = np.full((400, 400, 3), 128, np.uint8)
    small = np.zeros((400, 400), bool)
    small[180:220, 180:220] = True
    large = np.zeros((400, 400), bool)
    large[50:350, 50:350] = True
    small_band = band_width_px(trimap_from_mask(flat, small), 200)
    large_band = band_width_px(trimap_from_mask(flat, large), 200)
    assert small_band > 0 and large_band > small_band


def test_band_is_wider_where_the_boundary_is_high_frequency():
    h, w = 200, 200
    mask = np.zeros((h, w), bool)
    mask[50:150, 50:150] = True
    flat = np.full((h, w, 3), 128, np.uint8)
    hairy = flat.copy()
    rng = np.random.default_rng(1)
    hairy[:, :100] = rng.integers(0, 255, (h, 100, 3), dtype=np.uint8)  # left half textured
    unknown = trimap_from_mask(hairy, mask, band_px=4) == 0.5
    assert unknown[:, :100].sum() > 1.3 * unknown[:, 100:].sum()
    assert (trimap_from_mask(flat, mask, band_px=4) == 0.5).sum() < unknown.sum()


def test_soft_mask_keeps_semi_transparent_interior_unknown():
    h, w = 100, 100
    mask = np.zeros((h, w), bool)
    mask[20:80, 20:80] = True
    soft = mask.astype(np.float32)
    soft[40:60, 40:60] = 0.4  # a glass pane inside the object
    trimap = trimap_from_mask(np.full((h, w, 3), 100, np.uint8), mask, 2, soft)
    assert (trimap[45:55, 45:55] == 0.5).all()
    assert trimap[25, 25] == 1.0 and trimap[5, 5] == 0.0


def test_trimap_of_a_mask_filling_the_crop_is_all_foreground():
    image = np.full((30, 40, 3), 90, np.uint8)
    assert (trimap_from_mask(image, np.ones((30, 40), bool)) == 1.0).all()
    with pytest.raises(ValueError, match="mask must be"):
        trimap_from_mask(image, np.ones((30, 41), bool))


def square_erosion(region, size, outside):
    """Reference erosion by a ``size×size`` square with scipy's origin (window offsets
    ``-size//2 .. size - size//2 - 1``), pixels outside the array counting as ``outside``."""
    lo, hi = size // 2, size - size // 2 - 1
    padded = np.pad(region, ((lo, hi), (lo, hi)), constant_values=outside)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (size, size))
    return windows.all(axis=(2, 3))


def test_rembg_trimap_thresholds_and_erosion():
    rng = np.random.default_rng(3)
    soft = np.zeros((80, 80), np.uint8)
    soft[15:65, 15:65] = 250
    soft[15:65, 40:65] = 200  # between the thresholds: unknown
    soft[30, 20] = 240  # exactly 240: not foreground (rembg uses >)
    soft[70:78, 2:10] = 10  # exactly 10: not background (rembg uses <)
    soft[:, 75:] = rng.integers(0, 256, (80, 5), dtype=np.uint8)
    trimap = rembg_trimap(soft)
    fg = square_erosion(soft > 240, 10, outside=False)
    bg = square_erosion(soft < 10, 10, outside=True)
    expected = np.where(fg, 1.0, np.where(bg, 0.0, 128 / 255))
    np.testing.assert_array_equal(trimap, expected)
    assert trimap[40, 30] == 1.0 and trimap[40, 50] == 128 / 255
    assert trimap[0, 0] == 0.0  # the frame does not erode the background (border_value=1)
    assert trimap[11, 30] == 128 / 255  # background within the erosion of the object
    assert (trimap[25:36, 15:26] != 1.0).any()  # the 240 pixel eroded its neighbourhood


def test_rembg_recipe_on_a_crop_matches_the_whole_image():
    alpha = disc_alpha(90, 200, 20, 4, centre=(45, 60))
    image = compose(alpha, seed=5)
    soft = np.clip(alpha * 1.1 - 0.05, 0, 1).astype(np.float32)
    inst = instance_of(alpha >= 0.5, soft)
    config = RefineConfig(method="rembg")
    on_crop = RembgRecipeRefiner(config).refine(image, inst)
    whole = RembgRecipeRefiner(config, crop=False).refine(image, inst)
    assert on_crop.alpha.size < 0.5 * whole.alpha.size  # the crop really is smaller
    difference = np.abs(on_crop.full_alpha(alpha.shape) - whole.alpha)
    assert difference.max() <= 1 / 255 + 1e-6  # at most one uint8 level (CG tolerance)
    assert sad(whole, alpha) < 0.5 * float(np.abs((alpha >= 0.5) - alpha).sum())


def test_rembg_recipe_falls_back_to_the_mask_when_nothing_is_foreground():
    image, alpha = disc_scene(h=60, w=60, radius=20)
    soft = (alpha * 0.7).astype(np.float32)  # peaks at 178 < 240: no known foreground
    matte = RembgRecipeRefiner(RefineConfig()).refine(image, instance_of(alpha >= 0.5, soft))
    expected = (soft * 255).astype(np.uint8) / np.float32(255)
    np.testing.assert_array_equal(matte.full_alpha(alpha.shape), expected)


def test_guided_upsampling_follows_full_resolution_edges():
    # a sharp vertical edge at x = 101, off the 4× low-resolution grid
    h, w, factor = 64, 256, 4
    truth = np.zeros((h, w), np.float32)
    truth[:, 101:] = 1.0
    image = compose(truth, noise=0.0)
    small_size = (w // factor, h // factor)
    small = resize(image, small_size, Image.Resampling.BOX)
    small_alpha = resize(truth, small_size, Image.Resampling.BOX)
    guided = guided_upsample(small, small_alpha, image)
    bilinear = resize(small_alpha, (w, h), Image.Resampling.BILINEAR)
    assert guided.shape == (h, w) and guided.dtype == np.float32
    sad_guided = np.abs(guided - truth).sum()
    assert sad_guided < 0.5 * np.abs(bilinear - truth).sum()
    assert sad_guided < 0.1 * h  # under 0.1 of a pixel column per row


def test_large_crop_takes_the_downscaled_path():
    h, w = 3000, 4000
    alpha = np.zeros((h, w), np.float32)
    y0, x0 = 1000, 1500  # the subject only: building a full 12 MP ramp costs seconds
    alpha[y0 : y0 + 1000, x0 : x0 + 1000] = disc_alpha(1000, 1000, 420, 8)
    image = np.empty((h, w, 3), np.uint8)
    image[:] = B.astype(np.uint8)
    image[y0 : y0 + 1000, x0 : x0 + 1000] = compose(alpha[y0 : y0 + 1000, x0 : x0 + 1000])
    refiner = MattingRefiner(RefineConfig(max_solve_px=250_000))
    matte = refiner.refine(image, instance_of(alpha >= 0.5))
    assert refiner.last_scale < 0.6
    check_matte(matte, (h, w))
    binary_sad = float(np.abs((alpha >= 0.5) - alpha).sum())
    assert sad(matte, alpha) < 0.5 * binary_sad
    small_image, small_alpha = disc_scene()
    refiner.refine(small_image, instance_of(small_alpha >= 0.5))
    assert refiner.last_scale == 1.0  # a crop under max_solve_px is solved at full resolution


def test_crop_covers_the_instance_and_is_clipped():
    mask = np.zeros((50, 80), bool)
    mask[0:30, 60:80] = True  # touches the top and right border
    inst = instance_of(mask)
    x0, y0, x1, y1 = crop_box(inst, mask.shape, 0.1, extra_px=4)
    assert (x0, y0, x1, y1) == (54, 0, 80, 37)
    image = np.where(mask[..., None], F, B).astype(np.uint8)
    for method in METHODS:
        matte = build_refiner(RefineConfig(method=method)).refine(image, inst)
        check_matte(matte, mask.shape)
        # no band along the image frame: the object stays opaque where the frame cuts it
        assert matte.full_alpha(mask.shape)[mask].min() > 0.9


@pytest.mark.parametrize("method", METHODS)
def test_degenerate_masks(method):
    refiner = build_refiner(RefineConfig(method=method))
    image = compose(np.zeros((30, 30), np.float32), seed=2)
    empty = refiner.refine(image, instance_of(np.zeros((30, 30), bool)))
    assert empty.alpha.shape == (1, 1) and empty.full_alpha((30, 30)).max() == 0.0
    one_px = np.zeros((30, 30), bool)
    one_px[15, 15] = True
    tiny = refiner.refine(image, instance_of(one_px))
    check_matte(tiny, (30, 30))
    assert tiny.full_alpha((30, 30))[15, 15] > 0.5
    assert tiny.full_alpha((30, 30))[~one_px].max() < 0.5  # not grown into a blob
    full = refiner.refine(image, instance_of(np.ones((30, 30), bool)))
    np.testing.assert_array_equal(full.full_alpha((30, 30)), 1.0)
    # an image smaller than the margin and the erosion
    small_image = compose(np.zeros((5, 6), np.float32))
    small_mask = np.zeros((5, 6), bool)
    small_mask[1:4, 2:5] = True
    check_matte(refiner.refine(small_image, instance_of(small_mask)), (5, 6))


@pytest.mark.parametrize("method", METHODS)
def test_outputs_are_float32_in_unit_range_on_a_textured_scene(method):
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, (80, 100, 3), dtype=np.uint8)
    mask = disc_alpha(80, 100, 25, 1) >= 0.5
    soft = np.clip(mask + rng.normal(0, 0.2, mask.shape), 0, 1).astype(np.float32)
    matte = build_refiner(RefineConfig(method=method)).refine(image, instance_of(mask, soft))
    check_matte(matte, (80, 100))
    assert matte.foreground.shape == (*matte.alpha.shape, 3)


def test_bad_inputs_and_unknown_method():
    image = np.zeros((30, 30, 3), np.uint8)
    wrong = instance_of(np.ones((20, 30), bool))
    for refiner in (MattingRefiner(RefineConfig()), BinaryRefiner()):
        with pytest.raises(ValueError, match=r"instance.mask must have shape \(30, 30\)"):
            refiner.refine(image, wrong)
        with pytest.raises(ValueError, match="image must be"):
            refiner.refine(image[..., 0], instance_of(np.ones((30, 30), bool)))
    with pytest.raises(ValueError, match="refine.method must be one of"):
        build_refiner(RefineConfig(method="magic"))
    with pytest.raises(ValueError, match="upsample must be one of"):
        MattingRefiner(RefineConfig(), upsample="nearest")
    kinds = {m: type(build_refiner(RefineConfig(method=m))) for m in METHODS}
    assert kinds == {
        "matting": MattingRefiner,
        "closed_form": MattingRefiner,
        "rembg": RembgRecipeRefiner,
        "none": BinaryRefiner,
    }


def shifted_mask(alpha, shift_px):
    """A segmenter-like mask: the true edge moved outward by ``shift_px`` on the right half and
    inward on the left half (``alpha`` of a disc scene)."""
    grow = ndimage.binary_dilation(alpha >= 0.5, iterations=shift_px)
    shrink = ndimage.binary_erosion(alpha >= 0.5, iterations=shift_px)
    half = np.arange(alpha.shape[1]) >= alpha.shape[1] // 2
    return np.where(half[None, :], grow, shrink)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_estimators_recover_a_ramp_edge_from_a_shifted_mask(estimator):
    # a 220 px disc gets a 4 px band (band_frac 0.02), enough for an edge 3 px off
    image, alpha = disc_scene(h=300, w=360, radius=110, ramp_px=8)
    inst = instance_of(shifted_mask(alpha, 3))
    binary = BinaryRefiner().refine(image, inst)
    refiner = MattingRefiner(RefineConfig(estimator=estimator))
    refined = refiner.refine(image, inst)
    check_matte(refined, alpha.shape)
    assert sad(refined, alpha) < 0.15 * sad(binary, alpha)


def test_closed_form_method_is_the_matting_refiner_with_levins_estimator():
    refiner = build_refiner(RefineConfig(method="closed_form"))
    assert refiner.config.estimator == "closed_form"
    assert build_refiner(RefineConfig()).config.estimator == "shared"
    with pytest.raises(ValueError, match="refine.estimator must be one of"):
        MattingRefiner(RefineConfig(estimator="knn"))
    trimap = np.full((10, 10), 0.5)
    trimap[:, :3], trimap[:, 7:] = 0.0, 1.0
    with pytest.raises(ValueError, match="estimator must be one of"):
        solve_alpha(np.zeros((10, 10, 3), np.uint8), trimap, trimap, estimator="magic")


def test_band_frac_scales_the_adaptive_band():
    flat = np.full((300, 300, 3), 128, np.uint8)
    mask = np.zeros((300, 300), bool)
    mask[50:250, 50:250] = True
    narrow = band_width_px(trimap_from_mask(flat, mask, band_frac=0.01), 150)
    wide = band_width_px(trimap_from_mask(flat, mask, band_frac=0.04), 150)
    assert wide >= 3 * narrow > 0
    assert base_band_px(200 * 200, band_frac=0.04) == 8


def test_semi_transparent_interior_stays_soft():
    """A glass disc: opaque rim, α = 0.4 inside; a soft mask that says so keeps it soft."""
    alpha = disc_alpha(160, 160, 60, 2)
    inner = disc_alpha(160, 160, 45, 2)
    alpha = alpha - 0.6 * inner
    image = compose(alpha, seed=3)
    soft = alpha.copy()  # the segmenter's soft mask knows the pane is partly transparent
    matte = build_refiner(RefineConfig()).refine(image, instance_of(alpha >= 0.2, soft))
    full = matte.full_alpha(alpha.shape)
    pane = inner > 0.99
    assert 0.25 < float(full[pane].mean()) < 0.55
    assert float(np.abs(full[pane] - 0.4).mean()) < 0.1


def test_gt_trimap_proposal_carries_the_unknown_region():
    from pipeline.eval.dataset import EvalItem, GroundTruth
    from pipeline.eval.proposals import make_proposals

    alpha = disc_alpha(60, 80, 20, 6)
    trimap = np.where(alpha >= 1, 255, np.where(alpha <= 0, 0, 128)).astype(np.uint8)
    image = compose(alpha)
    item = EvalItem("disc", "synthetic", "matting", "alpha", Path("disc.png"))
    for gt_trimap in (trimap, None):
        gt = GroundTruth(image, alpha, alpha > 0.5, None, (), (), gt_trimap)
        (inst,) = make_proposals("gt-trimap", item, gt)
        unknown = inst.soft_mask == 0.5
        assert unknown.any() and inst.mask[unknown].all()
        assert (inst.soft_mask[(alpha >= 1) & ~unknown] == 1).all()
        refined = build_refiner(RefineConfig(band_px=1)).refine(image, inst)
        assert sad(refined, alpha) < 0.5 * float(np.abs((alpha > 0.5) - alpha).sum())
