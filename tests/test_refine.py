"""Refine stage on synthetic scenes with a known alpha: a disc with a linear ramp edge,
composited from a foreground colour F over a background colour B."""

import numpy as np
import pytest

from pipeline.config import RefineConfig
from pipeline.stages.refine import MattingRefiner, build_refiner, crop_box
from pipeline.stages.trimap import base_band_px, rembg_trimap, trimap_from_mask
from pipeline.types import Instance

F = np.array([230.0, 200.0, 40.0])
B = np.array([20.0, 60.0, 160.0])


def disc_scene(h=240, w=320, radius=70, ramp_px=6, seed=0):
    yy, xx = np.mgrid[:h, :w]
    dist = np.hypot(yy - h / 2, xx - w / 2)
    alpha = np.clip((radius - dist) / ramp_px + 0.5, 0, 1).astype(np.float32)
    noise = np.random.default_rng(seed).normal(0, 2, (h, w, 3))
    image = alpha[..., None] * F + (1 - alpha[..., None]) * B + noise
    return np.clip(image, 0, 255).astype(np.uint8), alpha


def instance_of(mask, soft=None):
    h, w = mask.shape
    return Instance(0, [0, 0, w, h], "object", -1, 1.0, mask, soft_mask=soft)


def sad(matte, alpha):
    return float(np.abs(matte.full_alpha(alpha.shape) - alpha).sum())


@pytest.mark.parametrize("method", ["closed_form", "rembg"])
def test_matting_beats_the_binary_mask(method):
    image, alpha = disc_scene()
    inst = instance_of(alpha >= 0.5)
    binary = build_refiner(RefineConfig(method="none")).refine(image, inst)
    refined = build_refiner(RefineConfig(method=method)).refine(image, inst)
    assert refined.alpha.dtype == np.float32
    assert 0.0 <= refined.alpha.min() and refined.alpha.max() <= 1.0
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


def test_band_grows_with_size_and_with_high_frequency_edges():
    assert base_band_px(100 * 100) < base_band_px(800 * 800)
    h, w = 200, 200
    mask = np.zeros((h, w), bool)
    mask[50:150, 50:150] = True
    flat = np.full((h, w, 3), 128, np.uint8)
    hairy = flat.copy()
    rng = np.random.default_rng(1)
    hairy[:, :100] = rng.integers(0, 255, (h, 100, 3), dtype=np.uint8)  # left half textured
    unknown = trimap_from_mask(hairy, mask, band_px=4) == 0.5
    left = unknown[:, :100].sum()
    right = unknown[:, 100:].sum()
    assert left > 1.3 * right
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


def test_rembg_trimap_thresholds_and_erosion():
    soft = np.zeros((60, 60), np.uint8)
    soft[10:50, 10:50] = 250
    soft[10:50, 30:50] = 200  # between the thresholds: unknown
    trimap = rembg_trimap(soft)
    assert trimap[30, 20] == 1.0  # > 240, deep inside
    assert trimap[10, 20] == 0.5  # > 240 but eroded away at the edge
    assert trimap[30, 40] == 0.5  # 200: neither fg nor bg
    assert trimap[0, 0] == 0.0  # frame does not erode background (border_value=1)
    assert trimap[6, 30] == 0.5  # background within the erosion of the object


def test_large_crop_takes_the_downscaled_path_and_stays_in_bounds():
    image, alpha = disc_scene(h=1200, w=1600, radius=450, ramp_px=8)
    refiner = MattingRefiner(RefineConfig(max_solve_px=200_000))
    matte = refiner.refine(image, instance_of(alpha >= 0.5))
    assert refiner.last_scale < 1.0
    h, w = matte.alpha.shape
    assert matte.x0 >= 0 and matte.y0 >= 0 and matte.x0 + w <= 1600 and matte.y0 + h <= 1200
    binary_sad = float(np.abs((alpha >= 0.5) - alpha).sum())
    assert sad(matte, alpha) < binary_sad


def test_crop_covers_the_instance_and_is_clipped():
    mask = np.zeros((50, 80), bool)
    mask[0:30, 60:80] = True  # touches the top and right border
    inst = instance_of(mask)
    x0, y0, x1, y1 = crop_box(inst, mask.shape, 0.1, extra_px=4)
    assert (x0, y0, x1, y1) == (54, 0, 80, 37)
    image = np.where(mask[..., None], F, B).astype(np.uint8)
    matte = build_refiner(RefineConfig()).refine(image, inst)
    assert matte.full_alpha(mask.shape)[mask].min() > 0.9


def test_empty_mask_and_unknown_method():
    empty = instance_of(np.zeros((30, 30), bool))
    for method in ("closed_form", "rembg", "none"):
        matte = build_refiner(RefineConfig(method=method)).refine(
            np.zeros((30, 30, 3), np.uint8), empty
        )
        assert matte.full_alpha((30, 30)).max() == 0.0
    with pytest.raises(ValueError, match="refine.method must be one of"):
        build_refiner(RefineConfig(method="magic"))
