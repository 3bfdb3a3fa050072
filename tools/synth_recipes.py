"""Scene recipes: one per principle the ranker must learn (see ``SUBCLASSES``).

Each recipe composes one scene from a ``SourcePool`` with a seeded generator and returns a
``Scene``: the finished JPEG bytes, the ``H×W int32`` instance map (0 = background, ids 1..N
in paste order, front-most wins) and per instance its label, role (``main`` /
``interacting`` / ``distractor``) and rank (1 = the most salient; distractors after the main
and interacting instances, ordered by a recipe-specific salience: sharp before degraded,
then larger first).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from tools.synth_ops import (
    Canvas,
    Sprite,
    crop_background,
    finish,
    make_sprite,
    match_colour,
)
from tools.synth_sources import PERSON, Cutout, SourcePool

SCENE_LONG_PX = 640
SCENE_SHORT_PX = 480
MIN_VISIBLE_FRAC = 0.004  # instances with less visible area than this (share of the image) go
MAIN_MIN_VISIBLE = 0.6  # a main instance must keep this share of its pasted area (not hidden)


@dataclass
class Scene:
    """A composed scene; see the module docstring."""

    subclass: str
    jpeg: bytes
    index_map: np.ndarray
    labels: dict[int, str]
    roles: dict[int, str]
    ranks: dict[int, int]
    background: str
    cutouts: list[str]
    params: dict[str, float] = field(default_factory=dict)


class Builder:
    """Pastes sprites and books their roles; ``scene()`` finishes the JPEG and the ranks."""

    def __init__(self, base: np.ndarray, background_group: str, rng: np.random.Generator):
        self.canvas = Canvas.from_image(base)
        self.rng = rng
        self.background = background_group
        self.labels: dict[int, str] = {}
        self.roles: dict[int, str] = {}
        self.salience: dict[int, float] = {}
        self.pasted_px: dict[int, int] = {}
        self.cutouts: list[str] = []
        self.params: dict[str, float] = {}

    @property
    def hw(self) -> tuple[int, int]:
        return self.canvas.hw

    def add_native(self, mask: np.ndarray, label: str, group: str) -> int:
        """The photo's own object (already in the pixels) as the main instance."""
        new_id = len(self.labels) + 1
        self.canvas.index_map[mask] = new_id
        self._book([new_id], [label], ["main"], 10.0, group, [int(mask.sum())])
        return new_id

    def add(self, sprite: Sprite, x0: int, y0: int, role: str, salience: float) -> list[int]:
        """Paste ``sprite``; a main sprite with a person and other parts (a rider and a bike)
        books the person ``main`` and the rest ``interacting``."""
        ids = self.canvas.paste(sprite, int(x0), int(y0), len(self.labels) + 1)
        roles = [role] * len(ids)
        if role == "main" and PERSON in sprite.labels and len(ids) > 1:
            roles = ["main" if lb == PERSON else "interacting" for lb in sprite.labels]
        pasted = [int((self.canvas.index_map == i).sum()) for i in ids]
        self._book(ids, sprite.labels, roles, salience, sprite.group, pasted)
        return ids

    def _book(self, ids, labels, roles, salience, group, pasted) -> None:
        for i, label, role, px in zip(ids, labels, roles, pasted, strict=True):
            self.labels[i], self.roles[i] = label, role
            self.salience[i], self.pasted_px[i] = float(salience), px
        self.cutouts.append(group)

    def scene(self, subclass: str, post: Callable[[np.ndarray], np.ndarray] | None = None):
        """Finish: drop hidden/tiny instances, renumber, rank, add noise and JPEG. ``None``
        when a main instance ended up mostly hidden (the caller draws another layout)."""
        h, w = self.hw
        index_map = self.canvas.index_map
        keep = []
        for i in sorted(self.labels):
            visible = int((index_map == i).sum())
            if self.roles[i] == "main" and visible < MAIN_MIN_VISIBLE * max(self.pasted_px[i], 1):
                return None
            if visible >= MIN_VISIBLE_FRAC * h * w:
                keep.append(i)
        if not any(self.roles[i] == "main" for i in keep) or len(keep) < 2:
            return None
        new_of = {old: k + 1 for k, old in enumerate(keep)}
        out_map = np.zeros_like(index_map)
        for old, new in new_of.items():
            out_map[index_map == old] = new
        rgb = np.clip(self.canvas.rgb, 0, 255).astype(np.uint8)
        if post is not None:
            rgb = post(rgb)
        noise = float(self.rng.uniform(0.5, 3.0))
        quality = int(self.rng.integers(72, 96))
        self.params.update(noise_sigma=noise, jpeg_quality=quality)
        jpeg = finish(rgb.astype(np.float32), self.rng, noise, quality)
        roles = {new_of[i]: self.roles[i] for i in keep}
        return Scene(
            subclass,
            jpeg,
            out_map,
            {new_of[i]: self.labels[i] for i in keep},
            roles,
            _ranks(roles, {new_of[i]: self.salience[i] for i in keep}),
            self.background,
            self.cutouts,
            self.params,
        )


def _ranks(roles: dict[int, str], salience: dict[int, float]) -> dict[int, int]:
    """Dense ranks: main 1, interacting next, distractors by descending salience."""
    tier = {"main": 0, "interacting": 1, "distractor": 2}
    keys = {i: (tier[roles[i]], -round(salience[i], 6) if roles[i] == "distractor" else 0.0)
            for i in roles}  # fmt: skip
    ordered = sorted(set(keys.values()))
    return {i: ordered.index(keys[i]) + 1 for i in roles}


# ---------------------------------------------------------------- helpers used by the recipes


def scene_hw(rng: np.random.Generator) -> tuple[int, int]:
    """Landscape 480×640 three times in four, else portrait 640×480 (H, W)."""
    if rng.random() < 0.75:
        return SCENE_SHORT_PX, SCENE_LONG_PX
    return SCENE_LONG_PX, SCENE_SHORT_PX


def pick(rng: np.random.Generator, items: Sequence, exclude: Sequence = ()):
    """A random element not in ``exclude`` (by identity), else any element."""
    pool = [x for x in items if all(x is not e for e in exclude)] or list(items)
    return pool[int(rng.integers(len(pool)))]


def pick_main(rng: np.random.Generator, pool: SourcePool, person_p: float) -> Cutout:
    """A person cut-out with probability ``person_p`` (when the pool has one), else any."""
    people = pool.people()
    if people and rng.random() < person_p:
        return pick(rng, people)
    return pick(rng, pool.cutouts)


def sprite(rng, cutout: Cutout, height_px: float, bg: np.ndarray) -> Sprite:
    """Scaled, randomly mirrored, colour-matched (20–50 %) sprite of ``cutout``."""
    s = make_sprite(cutout, height_px, flip=bool(rng.random() < 0.5))
    return match_colour(s, bg, float(rng.uniform(0.2, 0.5)))


def at(b: Builder, s: Sprite, cx_frac: float, bottom_frac: float) -> tuple[int, int]:
    """Top-left corner putting the sprite's centre at ``cx_frac`` of the width and its bottom
    at ``bottom_frac`` of the height (objects stand on a ground line)."""
    h, w = b.hw
    sh, sw = s.hw
    return int(cx_frac * w - sw / 2), int(bottom_frac * h - sh)


def base_photo(rng, pool: SourcePool, hw) -> tuple[np.ndarray, str]:
    photo = pick(rng, pool.backgrounds)
    return crop_background(photo.rgb, hw, rng), photo.group
