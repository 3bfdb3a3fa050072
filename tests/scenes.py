"""Synthetic scenes with known answers for the feature, ranking and selection tests.

Everything is built with numpy/cv2 from a seeded generator: images are ``H×W×3 uint8`` RGB,
masks ``H×W bool``. Textures are fine random noise (2 px cells), so a Gaussian blur visibly
removes detail; backgrounds are a smooth gradient with weak noise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.types import Instance, mask_to_xyxy


def background(hw: tuple[int, int], seed: int = 0) -> np.ndarray:
    """``H×W×3 uint8``: a smooth left-to-right gradient with weak noise (little detail)."""
    rng = np.random.default_rng(seed)
    h, w = hw
    ramp = np.linspace(90, 150, w, dtype=np.float32)[None, :, None]
    noise = rng.normal(0.0, 2.0, (h, w, 1)).astype(np.float32)
    return np.clip(np.broadcast_to(ramp, (h, w, 3)) + noise, 0, 255).astype(np.uint8)


def texture(hw: tuple[int, int], seed: int, cell_px: int = 2) -> np.ndarray:
    """``H×W×3 uint8`` high-contrast random texture made of ``cell_px`` square cells."""
    rng = np.random.default_rng(seed)
    h, w = hw
    cells = rng.integers(20, 236, (-(-h // cell_px), -(-w // cell_px), 3), dtype=np.uint8)
    return np.repeat(np.repeat(cells, cell_px, axis=0), cell_px, axis=1)[:h, :w]


def blur(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian defocus of an ``H×W×3 uint8`` image."""
    return cv2.GaussianBlur(image, (0, 0), sigma_px)


def motion_blur(image: np.ndarray, length_px: int) -> np.ndarray:
    """Horizontal box motion blur of ``length_px`` pixels."""
    kernel = np.full((1, length_px), 1.0 / length_px, np.float32)
    return cv2.filter2D(image, -1, kernel)


def rect_mask(hw: tuple[int, int], x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """``H×W bool`` rectangle, ends exclusive, clipped to the image."""
    mask = np.zeros(hw, bool)
    mask[max(0, y0) : y1, max(0, x0) : x1] = True
    return mask


def disk_mask(hw: tuple[int, int], cx: float, cy: float, radius_px: float) -> np.ndarray:
    """``H×W bool`` disk of ``radius_px`` around ``(cx, cy)``."""
    ys, xs = np.ogrid[: hw[0], : hw[1]]
    return (xs - cx) ** 2 + (ys - cy) ** 2 <= radius_px**2


def person_mask(hw: tuple[int, int], x0: int, y0: int, w: int, h: int) -> np.ndarray:
    """A crude standing person inside the box ``(x0, y0, w, h)``: a head disk over a body."""
    head_r = 0.12 * h
    body = rect_mask(hw, x0, int(y0 + 2 * head_r), x0 + w, y0 + h)
    return body | disk_mask(hw, x0 + w / 2, y0 + head_r, head_r)


def paint(image: np.ndarray, mask: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Copy of ``image`` with ``source`` pixels where ``mask`` is set."""
    out = image.copy()
    out[mask] = source[mask]
    return out


def instance(
    inst_id: int,
    mask: np.ndarray,
    label: str = "object",
    det_score: float = 0.9,
    features: Mapping[str, float] | None = None,
    score: float = 0.0,
) -> Instance:
    """An ``Instance`` whose box is the mask's tight box."""
    return Instance(
        id=inst_id,
        xyxy=mask_to_xyxy(mask),
        label=label,
        class_id=0 if label == "person" else -1,
        det_score=det_score,
        mask=mask,
        features=features or {},
        score=score,
    )


@dataclass(frozen=True)
class Scene:
    """An image and its instances (features not computed yet)."""

    image: np.ndarray
    instances: list[Instance]


def focus_scene(sigma_px: float = 3.0, hw: tuple[int, int] = (240, 320)) -> Scene:
    """Two same-size squares of the same texture: #0 sharp (left), #1 blurred by ``sigma_px``."""
    image = background(hw)
    tex = texture(hw, seed=1)
    sharp = rect_mask(hw, 30, 70, 130, 170)
    soft = rect_mask(hw, 190, 70, 290, 170)
    shifted = np.roll(tex, 160, axis=1)  # the same texture under the right square
    image = paint(image, sharp, tex)
    image = paint(image, soft, blur(shifted, sigma_px))
    return Scene(image, [instance(0, sharp), instance(1, soft)])


def keep_scene(hw: tuple[int, int] = (300, 400)) -> Scene:
    """The keep-policy scene, ids in this order:

    0. a sharp, large person in the centre, standing on the bottom edge;
    1. a sharp object held against that person's body (contact on its outline);
    2. a smaller person behind on the left, blurred (σ = 4 px);
    3. an object cut by the right frame edge, sharp;
    4. a sharp object on the floor beside the person, well apart from them.
    """
    image = background(hw)
    masks = {}
    masks[2] = person_mask(hw, 40, 60, 70, 170)
    image = paint(image, masks[2], blur(texture(hw, seed=12), 4.0))
    masks[0] = person_mask(hw, 150, 40, 100, 260)
    masks[1] = rect_mask(hw, 175, 150, 225, 200)
    masks[0] &= ~masks[1]  # the object is in front of the person's torso
    masks[3] = rect_mask(hw, 340, 20, 400, 260)
    masks[4] = rect_mask(hw, 262, 225, 302, 270)
    for k, seed in ((0, 10), (1, 11), (3, 13), (4, 14)):
        image = paint(image, masks[k], texture(hw, seed=seed))
    labels = {0: "person", 1: "cell phone", 2: "person", 3: "potted plant", 4: "suitcase"}
    return Scene(image, [instance(k, masks[k], labels[k]) for k in range(5)])
