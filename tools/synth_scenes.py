"""The nine scene recipes (subclasses). Each ``recipe(rng, pool) -> Scene | None``.

=================  ===========================================================================
subclass           what decides the main subject
=================  ===========================================================================
portability        sharp subject; defocused copies of people/objects behind it, as large or
                   larger (size alone misleads)
motion_blur        sharp subject; motion-blurred candidates of similar or larger size
truncated          a smaller subject fully in frame; larger candidates cut by the left, right
                   or top edge
candidates         3–4 sharp candidates of similar size: the most central one, in front
                   (occluding a neighbour), is the subject
interaction        a person with an object touching their side (kept: interacting) and an
                   unrelated sharp object apart (dropped); rider + bicycle when available
plain              one object on a studio-like gradient backdrop, a small one in a corner
illustration       candidates as above, the scene posterised into flat colours (no texture cue)
no_subject         3–4 similar, sharp, equally sized things in a row: every one is ``main``
                   and all share rank 1 (the ambiguity value should be high)
davis_native       a real DAVIS frame whose own, unpasted main object is the subject, with
                   pasted defocused / truncated / smaller distractors (catches paste detectors)
=================  ===========================================================================
"""

from __future__ import annotations

import cv2
import numpy as np

from tools.synth_ops import defocus, motion_blur, plain_background, posterize
from tools.synth_recipes import (
    Builder,
    Scene,
    at,
    base_photo,
    pick,
    pick_main,
    scene_hw,
    sprite,
)
from tools.synth_sources import SourcePool


def _photo_scene(rng: np.random.Generator, pool: SourcePool) -> tuple[Builder, np.ndarray]:
    """A builder on a crop of a random background photo, and that crop (``H×W×3``)."""
    hw = scene_hw(rng)
    bg, group = base_photo(rng, pool, hw)
    return Builder(bg, group, rng), bg


def portability(rng: np.random.Generator, pool: SourcePool) -> Scene | None:
    b, bg = _photo_scene(rng, pool)
    hw = b.hw
    main = pick_main(rng, pool, 0.7)
    main_h = rng.uniform(0.45, 0.75) * hw[0]
    for k in range(int(rng.integers(1, 4))):
        # "copies of other people": the same cut-out as the subject half of the time
        src = main if rng.random() < 0.5 else pick_main(rng, pool, 0.7)
        sigma = float(rng.uniform(2.5, 6.0))
        s = defocus(sprite(rng, src, main_h * rng.uniform(0.6, 1.2), bg), sigma)
        side = (0.15 + 0.7 * rng.random()) if k else (0.2 if rng.random() < 0.5 else 0.8)
        b.add(s, *at(b, s, side, rng.uniform(0.7, 1.0)), "distractor", 1.0 - sigma / 10)
    s = sprite(rng, main, main_h, bg)
    b.add(s, *at(b, s, rng.uniform(0.35, 0.65), rng.uniform(0.85, 1.0)), "main", 10.0)
    return b.scene("portability")


def motion(rng: np.random.Generator, pool: SourcePool) -> Scene | None:
    b, bg = _photo_scene(rng, pool)
    hw = b.hw
    main = pick_main(rng, pool, 0.5)
    main_h = rng.uniform(0.4, 0.65) * hw[0]
    main_cx = rng.uniform(0.25, 0.75)
    for _ in range(int(rng.integers(1, 3))):
        src = pick(rng, pool.cutouts, [main])
        length = int(rng.integers(12, 32))
        s = motion_blur(
            sprite(rng, src, main_h * rng.uniform(0.8, 1.3), bg), length, rng.uniform(-30, 30)
        )
        cx = (main_cx + rng.choice([-1, 1]) * rng.uniform(0.3, 0.5)) % 1.0
        b.add(s, *at(b, s, cx, rng.uniform(0.75, 1.0)), "distractor", 1.0 - length / 40)
    s = sprite(rng, main, main_h, bg)
    b.add(s, *at(b, s, main_cx, rng.uniform(0.8, 1.0)), "main", 10.0)
    return b.scene("motion_blur")


def truncated(rng: np.random.Generator, pool: SourcePool) -> Scene | None:
    b, bg = _photo_scene(rng, pool)
    hw = b.hw
    main = pick_main(rng, pool, 0.5)
    main_h = rng.uniform(0.35, 0.6) * hw[0]
    sides = ["left", "right", "top"]
    rng.shuffle(sides)
    for side in sides[: int(rng.integers(1, 3))]:
        s = sprite(rng, pick(rng, pool.cutouts, [main]), main_h * rng.uniform(1.0, 1.6), bg)
        sh, sw = s.hw
        cut = rng.uniform(0.3, 0.55)  # share of the sprite outside the frame
        if side == "left":
            x0, y0 = int(-cut * sw), int(hw[0] * rng.uniform(0.8, 1.0) - sh)
        elif side == "right":
            x0, y0 = int(hw[1] - (1 - cut) * sw), int(hw[0] * rng.uniform(0.8, 1.0) - sh)
        else:
            x0, y0 = int(rng.uniform(0, hw[1] - sw / 2)), int(-cut * sh)
        b.add(s, x0, y0, "distractor", 1.0 - cut)
    s = sprite(rng, main, main_h, bg)
    b.add(s, *at(b, s, rng.uniform(0.4, 0.6), rng.uniform(0.75, 0.95)), "main", 10.0)
    return b.scene("truncated")


def _candidates(rng, pool: SourcePool, b: Builder, hw, spread: float) -> None:
    """3–4 similar-size sharp candidates; the central one in front is ``main``."""
    n_side = int(rng.integers(2, 4))
    main = pick_main(rng, pool, 0.5)
    cand_h = rng.uniform(0.3, 0.5) * hw[0]
    used = [main]
    slots = [0.12, 0.3, 0.7, 0.88]
    rng.shuffle(slots)
    for cx in slots[:n_side]:
        src = pick(rng, pool.cutouts, used)
        used.append(src)
        s = sprite(rng, src, cand_h * rng.uniform(1 - spread, 1 + spread), b.canvas.rgb)
        centrality = 1.0 - abs(cx - 0.5)
        b.add(s, *at(b, s, cx, rng.uniform(0.6, 0.85)), "distractor", centrality)
    s = sprite(rng, main, cand_h * rng.uniform(1.0, 1.25), b.canvas.rgb)
    b.add(s, *at(b, s, rng.uniform(0.42, 0.58), rng.uniform(0.85, 1.0)), "main", 10.0)


def candidates(rng: np.random.Generator, pool: SourcePool) -> Scene | None:
    b, bg = _photo_scene(rng, pool)
    hw = b.hw
    _candidates(rng, pool, b, hw, 0.15)
    return b.scene("candidates")


def illustration(rng: np.random.Generator, pool: SourcePool) -> Scene | None:
    hw = scene_hw(rng)
    photo, group = base_photo(rng, pool, hw)
    b = Builder(plain_background(hw, photo, rng), group, rng)
    _candidates(rng, pool, b, hw, 0.15)
    levels = int(rng.integers(3, 6))
    b.params["posterize_levels"] = levels
    return b.scene("illustration", post=lambda rgb: posterize(rgb, levels))


def interaction(rng: np.random.Generator, pool: SourcePool) -> Scene | None:
    b, bg = _photo_scene(rng, pool)
    hw = b.hw
    pairs = [c for c in pool.people() if len(c.parts) > 1]
    singles = [c for c in pool.people() if len(c.parts) == 1] or list(pool.people())
    objects = pool.objects() or pool.cutouts
    person_h = rng.uniform(0.5, 0.8) * hw[0]
    person_cx = rng.uniform(0.3, 0.45) if rng.random() < 0.5 else rng.uniform(0.55, 0.7)
    far_cx = 0.88 if person_cx < 0.5 else 0.12
    unrelated = pick(rng, objects)
    if pairs and rng.random() < 0.5:  # a real rider + bicycle pair, kept together
        s = sprite(rng, pick(rng, pairs), person_h, bg)
        b.add(s, *at(b, s, person_cx, rng.uniform(0.85, 1.0)), "main", 10.0)
    else:
        person = sprite(rng, pick(rng, singles), person_h, bg)
        px0, py0 = at(b, person, person_cx, rng.uniform(0.88, 1.0))
        b.add(person, px0, py0, "main", 10.0)
        held_src = pick(rng, objects, [unrelated])
        held = sprite(rng, held_src, person_h * rng.uniform(0.25, 0.4), bg)
        # held at the side of the body at hand height, overlapping the person's outline
        ph, pw = person.hw
        hh, hwid = held.hw
        side_x = px0 + (pw * rng.uniform(0.6, 0.85) if rng.random() < 0.5 else pw * 0.15)
        hx0 = int(side_x - hwid / 2)
        hy0 = int(py0 + ph * rng.uniform(0.35, 0.6) - hh / 2)
        b.add(held, hx0, hy0, "interacting", 5.0)
        b.cutouts[-1] = held_src.group
    s = sprite(rng, unrelated, person_h * rng.uniform(0.25, 0.45), bg)
    b.add(s, *at(b, s, far_cx, rng.uniform(0.75, 0.98)), "distractor", 1.0)
    return b.scene("interaction")


def plain(rng: np.random.Generator, pool: SourcePool) -> Scene | None:
    hw = scene_hw(rng)
    photo, group = base_photo(rng, pool, hw)
    b = Builder(plain_background(hw, photo, rng), group, rng)
    main = pick(rng, pool.cutouts)
    s_small = sprite(rng, pick(rng, pool.cutouts, [main]), hw[0] * rng.uniform(0.12, 0.25), photo)
    corner = rng.choice([0.1, 0.9])
    b.add(s_small, *at(b, s_small, corner, rng.uniform(0.3, 0.95)), "distractor", 1.0)
    s = sprite(rng, main, hw[0] * rng.uniform(0.5, 0.8), photo)
    b.add(s, *at(b, s, rng.uniform(0.4, 0.6), rng.uniform(0.85, 0.97)), "main", 10.0)
    return b.scene("plain")


def no_subject(rng: np.random.Generator, pool: SourcePool) -> Scene | None:
    b, bg = _photo_scene(rng, pool)
    hw = b.hw
    n = int(rng.integers(3, 5))
    height = rng.uniform(0.25, 0.4) * hw[0]
    used: list = []
    bottom = rng.uniform(0.7, 0.95)
    for k in range(n):
        src = pick(rng, pool.cutouts, used)
        used.append(src)
        s = sprite(rng, src, height * rng.uniform(0.95, 1.05), bg)
        b.add(s, *at(b, s, (k + 0.5) / n, bottom + rng.uniform(-0.03, 0.03)), "main", 10.0)
    return b.scene("no_subject")


def davis_native(rng: np.random.Generator, pool: SourcePool) -> Scene | None:
    if not pool.natives:
        return None
    frame = pick(rng, pool.natives)
    h, w = frame.rgb.shape[:2]
    factor = min(1.0, 640 / max(h, w))
    size = (round(w * factor), round(h * factor))
    rgb = cv2.resize(frame.rgb, size, interpolation=cv2.INTER_AREA)
    mask = cv2.resize(frame.mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    hw = rgb.shape[:2]
    b = Builder(rgb, frame.group, rng)
    b.add_native(mask, frame.label, frame.group)
    ys, xs = np.nonzero(mask)
    main_h = max(float(ys.max() - ys.min()), 0.25 * hw[0])
    main_cx = float(xs.mean()) / hw[1]
    others = [c for c in pool.cutouts if c.group != frame.group] or list(pool.cutouts)
    for _ in range(int(rng.integers(1, 4))):
        src = pick(rng, others)
        kind = rng.choice(["defocus", "truncated", "small"])
        cx = (main_cx + rng.choice([-1, 1]) * rng.uniform(0.3, 0.45)) % 1.0
        if kind == "defocus":
            sigma = float(rng.uniform(2.5, 6.0))
            s = defocus(sprite(rng, src, main_h * rng.uniform(0.7, 1.3), rgb), sigma)
            b.add(s, *at(b, s, cx, rng.uniform(0.7, 1.0)), "distractor", 0.5 - sigma / 20)
        elif kind == "truncated":
            s = sprite(rng, src, main_h * rng.uniform(0.9, 1.4), rgb)
            sw = s.hw[1]
            x0 = int(-0.4 * sw) if cx < 0.5 else int(hw[1] - 0.6 * sw)
            b.add(s, x0, at(b, s, cx, rng.uniform(0.8, 1.0))[1], "distractor", 0.4)
        else:
            s = sprite(rng, src, main_h * rng.uniform(0.3, 0.6), rgb)
            b.add(s, *at(b, s, cx, rng.uniform(0.6, 0.95)), "distractor", 1.0)
    return b.scene("davis_native")


RECIPES = {
    "portability": portability,
    "motion_blur": motion,
    "truncated": truncated,
    "candidates": candidates,
    "interaction": interaction,
    "plain": plain,
    "illustration": illustration,
    "no_subject": no_subject,
    "davis_native": davis_native,
}
SUBCLASSES: tuple[str, ...] = tuple(RECIPES)
