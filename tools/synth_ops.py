"""Image operations of the scene synthesiser: scale, defocus, motion blur, colour match, paste.

A *sprite* is a cut-out ready to paste: ``rgb`` ``h×w×3 float32`` in [0, 255] and one alpha per
part, ``h×w float32`` in [0, 1]. Blur is applied to the premultiplied colour and to the alpha
together, as a real defocused or moving object blurs its own edge too: a sharp paste border
around a blurry object would be an artefact a ranker could learn instead of the cue.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from tools.synth_sources import Cutout


@dataclass
class Sprite:
    """A pasteable cut-out: ``rgb`` ``h×w×3 float32`` [0, 255], ``alphas`` per part
    (``h×w float32`` [0, 1]) with their ``labels``, and where its pixels came from."""

    rgb: np.ndarray
    alphas: list[np.ndarray]
    labels: list[str]
    group: str

    @property
    def hw(self) -> tuple[int, int]:
        return self.rgb.shape[0], self.rgb.shape[1]

    @property
    def alpha(self) -> np.ndarray:
        return np.max(np.stack(self.alphas), axis=0)


def make_sprite(cutout: Cutout, height_px: float, flip: bool = False) -> Sprite:
    """``cutout`` scaled so its box is ``height_px`` tall (width capped at 1.6× that height,
    so a wide car does not fill the frame), optionally mirrored left–right."""
    h, w = cutout.rgb.shape[:2]
    factor = min(height_px / h, 1.6 * height_px / w)
    size = (max(2, round(w * factor)), max(2, round(h * factor)))
    interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    rgb = cv2.resize(cutout.rgb, size, interpolation=interp).astype(np.float32)
    alphas = [np.clip(cv2.resize(p.alpha, size, interpolation=interp), 0, 1) for p in cutout.parts]
    if flip:
        rgb = rgb[:, ::-1].copy()
        alphas = [a[:, ::-1].copy() for a in alphas]
    return Sprite(rgb, alphas, [p.label for p in cutout.parts], cutout.group)


def _pad(sprite: Sprite, pad_px: int) -> Sprite:
    """Room around the sprite for blur to spread into."""
    if pad_px <= 0:
        return sprite
    width = ((pad_px, pad_px), (pad_px, pad_px))
    rgb = np.pad(sprite.rgb, (*width, (0, 0)), mode="edge")
    alphas = [np.pad(a, width) for a in sprite.alphas]
    return Sprite(rgb, alphas, sprite.labels, sprite.group)


def _filter(sprite: Sprite, apply) -> Sprite:
    """Apply a linear filter to premultiplied colour and alphas, then un-premultiply."""
    alpha = sprite.alpha
    premult = apply(sprite.rgb * alpha[..., None])
    alpha_f = np.clip(apply(alpha), 0, 1)
    rgb = premult / np.maximum(alpha_f, 1e-3)[..., None]
    alphas = [np.clip(apply(a), 0, 1) for a in sprite.alphas]
    return Sprite(np.clip(rgb, 0, 255), alphas, sprite.labels, sprite.group)


def defocus(sprite: Sprite, sigma_px: float) -> Sprite:
    """Gaussian defocus of ``sigma_px`` on colour and edge."""
    padded = _pad(sprite, int(3 * sigma_px) + 1)
    return _filter(padded, lambda x: cv2.GaussianBlur(x, (0, 0), sigma_px))


def motion_blur(sprite: Sprite, length_px: int, angle_deg: float) -> Sprite:
    """Linear motion blur: a ``length_px`` line kernel at ``angle_deg``."""
    size = max(3, int(length_px) | 1)
    kernel = np.zeros((size, size), np.float32)
    kernel[size // 2, :] = 1.0
    rot = cv2.getRotationMatrix2D((size / 2 - 0.5, size / 2 - 0.5), angle_deg, 1.0)
    kernel = cv2.warpAffine(kernel, rot, (size, size))
    kernel /= max(float(kernel.sum()), 1e-6)
    padded = _pad(sprite, size // 2 + 1)
    return _filter(padded, lambda x: cv2.filter2D(x, -1, kernel))


def match_colour(sprite: Sprite, background: np.ndarray, strength: float) -> Sprite:
    """Move the sprite's per-channel LAB mean/std ``strength`` (0–1) of the way towards the
    background's (Reinhard transfer), so a pasted object shares the scene's light."""
    lab = cv2.cvtColor(np.clip(sprite.rgb, 0, 255).astype(np.uint8), cv2.COLOR_RGB2LAB)
    lab = lab.astype(np.float32)
    bg_u8 = np.clip(background, 0, 255).astype(np.uint8)  # a float canvas is [0, 255] too
    bg = cv2.cvtColor(bg_u8, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float32)
    weight = sprite.alpha > 0.5
    if weight.sum() < 16:
        return sprite
    src = lab[weight]
    mu_s, sd_s = src.mean(0), src.std(0) + 1e-3
    mu_b, sd_b = bg.mean(0), bg.std(0) + 1e-3
    mu_t = mu_s + strength * (mu_b - mu_s)
    sd_t = sd_s + strength * (sd_b - sd_s)
    out = (lab - mu_s) / sd_s * sd_t + mu_t
    rgb = cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
    return Sprite(rgb.astype(np.float32), sprite.alphas, sprite.labels, sprite.group)


def posterize(rgb: np.ndarray, levels: int) -> np.ndarray:
    """Flat-colour look: edge-preserving smoothing, then ``levels`` values per channel.
    ``rgb`` ``H×W×3 uint8`` → same shape and dtype."""
    smooth = cv2.bilateralFilter(rgb, 9, 60, 9)
    smooth = cv2.medianBlur(smooth, 5)
    step = 256.0 / levels
    return (np.floor(smooth / step) * step + step / 2).clip(0, 255).astype(np.uint8)


@dataclass
class Canvas:
    """The scene being composed: ``rgb`` ``H×W×3 float32`` and an ``H×W int32`` map of the
    front-most instance per pixel (0 = background), filled back to front."""

    rgb: np.ndarray
    index_map: np.ndarray

    @classmethod
    def from_image(cls, image: np.ndarray) -> Canvas:
        return cls(image.astype(np.float32), np.zeros(image.shape[:2], np.int32))

    @property
    def hw(self) -> tuple[int, int]:
        return self.rgb.shape[0], self.rgb.shape[1]

    def paste(self, sprite: Sprite, x0: int, y0: int, first_id: int) -> list[int]:
        """Alpha-composite ``sprite`` with its top-left at (x0, y0) (it may leave the frame:
        truncation); part k gets id ``first_id + k`` where its alpha > 0.5. Returns the ids."""
        h, w = self.hw
        sh, sw = sprite.hw
        cx0, cy0 = max(0, x0), max(0, y0)
        cx1, cy1 = min(w, x0 + sw), min(h, y0 + sh)
        ids = [first_id + k for k in range(len(sprite.alphas))]
        if cx1 <= cx0 or cy1 <= cy0:
            return ids
        sl = (slice(cy0 - y0, cy1 - y0), slice(cx0 - x0, cx1 - x0))
        alpha = sprite.alpha[sl][..., None]
        region = self.rgb[cy0:cy1, cx0:cx1]
        self.rgb[cy0:cy1, cx0:cx1] = region * (1 - alpha) + sprite.rgb[sl] * alpha
        view = self.index_map[cy0:cy1, cx0:cx1]
        for k, part in enumerate(sprite.alphas):
            view[part[sl] > 0.5] = ids[k]
        return ids


def finish(rgb: np.ndarray, rng: np.random.Generator, noise_sigma: float, quality: int) -> bytes:
    """Add sensor-like Gaussian noise, then JPEG-encode at ``quality``: the whole frame gets
    the same noise and compression, so pasted and native pixels look alike. Returns bytes."""
    noisy = rgb + rng.normal(0, noise_sigma, rgb.shape).astype(np.float32)
    img = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=int(quality))
    return buffer.getvalue()


def crop_background(photo: np.ndarray, hw: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random crop of ``photo`` with the aspect of ``hw`` (scale jitter: 60–100 % of the
    largest such crop), resized to ``hw``; ``H×W×3 uint8``."""
    ph, pw = photo.shape[:2]
    aspect = hw[1] / hw[0]
    ch = min(ph, pw / aspect) * rng.uniform(0.6, 1.0)
    cw = ch * aspect
    y0 = int(rng.uniform(0, ph - ch + 1e-6))
    x0 = int(rng.uniform(0, pw - cw + 1e-6))
    crop = photo[y0 : y0 + max(2, int(ch)), x0 : x0 + max(2, int(cw))]
    interp = cv2.INTER_AREA if crop.shape[0] > hw[0] else cv2.INTER_LINEAR
    return cv2.resize(crop, (hw[1], hw[0]), interpolation=interp)


def plain_background(hw: tuple[int, int], photo: np.ndarray, rng: np.random.Generator):
    """A studio-like backdrop: a smooth vertical gradient between two colours taken from a real
    photo (so its palette is natural), ``H×W×3 uint8``."""
    pixels = photo.reshape(-1, 3)
    top, bottom = (pixels[rng.integers(len(pixels))].astype(np.float32) for _ in range(2))
    top = 0.5 * top + 0.5 * rng.uniform(150, 250)  # studio backdrops are light and muted
    bottom = 0.5 * bottom + 0.5 * rng.uniform(120, 230)
    t = np.linspace(0.0, 1.0, hw[0], dtype=np.float32)[:, None, None]
    grad = top * (1 - t) + bottom * t
    return np.broadcast_to(grad, (*hw, 3)).clip(0, 255).astype(np.uint8)
