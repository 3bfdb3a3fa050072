"""``pipeline.stages.shared_matting``: the same alpha as pymatting's ``estimate_alpha_sm``, bit for
bit, on synthetic trimaps (always) and on a real photo's crop (with ../shared); its errors."""

from __future__ import annotations

import numpy as np
import pytest
from pymatting import estimate_alpha_sm as pymatting_sm

from pipeline.stages.shared_matting import estimate_alpha_sm
from tests.badfiles import shared_dir


def disc_scene(seed: int, h: int = 90, w: int = 120, band_px: int = 6):
    """A textured disc on a textured background, ``h×w×3 float64`` in [0, 1], and its trimap
    (1 inside, 0 outside, 0.5 in a ``band_px`` ring around the edge), ``h×w float64``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    radius = np.hypot(yy - h / 2, xx - w / 2)
    inside = radius < min(h, w) / 3
    image = np.where(inside[..., None], [0.8, 0.3, 0.2], [0.1, 0.5, 0.7])
    image = np.clip(image + rng.normal(0, 0.08, (h, w, 3)), 0, 1)
    trimap = np.where(inside, 1.0, 0.0)
    trimap[np.abs(radius - min(h, w) / 3) < band_px] = 0.5
    return image, trimap


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("expansion_px", [0, 1, 10])
def test_alpha_equals_pymatting_bit_for_bit(seed, expansion_px):
    image, trimap = disc_scene(seed)
    ours = estimate_alpha_sm(image, trimap, trimap_expansion_radius=expansion_px)
    theirs = pymatting_sm(image, trimap, trimap_expansion_radius=expansion_px)
    assert ours.dtype == np.float32 and ours.shape == trimap.shape
    assert np.array_equal(ours, theirs)
    band = trimap == 0.5
    assert 0.0 < ours[band].mean() < 1.0  # the band was solved, not copied from the trimap


def test_unknown_pixels_at_the_border_equal_pymatting():
    """Neighbourhoods cut by the crop's edge: the band touches all four sides."""
    image, trimap = disc_scene(3, h=40, w=40, band_px=30)
    trimap[0, :] = trimap[-1, :] = trimap[:, 0] = trimap[:, -1] = 0.5
    trimap[18:22, 18:22] = 1.0
    trimap[5, 5] = 0.0
    ours = estimate_alpha_sm(image, trimap, trimap_expansion_radius=1)
    assert np.array_equal(ours, pymatting_sm(image, trimap, trimap_expansion_radius=1))


def test_real_crop_equals_pymatting():
    from PIL import Image

    photo = shared_dir() / "data" / "eval" / "davis2016_val" / "blackswan_00012"
    if not (photo / "image.jpg").is_file():
        pytest.skip(f"shared eval photo absent: {photo}")
    image = np.asarray(Image.open(photo / "image.jpg").convert("RGB"), np.float64) / 255.0
    mask = np.asarray(Image.open(photo / "mask.png").convert("L")) > 127
    from scipy.ndimage import binary_dilation, binary_erosion

    trimap = mask.astype(np.float64)
    band = binary_dilation(mask, iterations=5) & ~binary_erosion(mask, iterations=5)
    trimap[band] = 0.5
    ys, xs = np.nonzero(binary_dilation(mask, iterations=20))
    crop = np.s_[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    ours = estimate_alpha_sm(image[crop], trimap[crop], trimap_expansion_radius=1)
    assert np.array_equal(ours, pymatting_sm(image[crop], trimap[crop], trimap_expansion_radius=1))


def test_bad_shapes_and_a_trimap_without_known_regions_are_errors():
    image, trimap = disc_scene(0)
    with pytest.raises(ValueError, match="h×w×3 image and an h×w trimap"):
        estimate_alpha_sm(image[..., :2], trimap)
    with pytest.raises(ValueError, match="h×w×3 image and an h×w trimap"):
        estimate_alpha_sm(image, trimap[:-1])
    with pytest.raises(ValueError, match="known foreground and background"):
        estimate_alpha_sm(image, np.where(trimap == 0.0, 0.5, trimap))
