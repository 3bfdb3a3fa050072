"""A fake pipeline for tests and tools: ``FakeRemover`` is ``Remover``-shaped and returns a real
``pipeline.layers.Layers`` without running any network, so the server, the evaluation loop and
the load test run their real code on known geometry. Nothing of the product imports this module.

Without proposals a photo gets four hand-made instances (``fake_masks``): a person (centre), a
bag touching it, a dog (right) and a tiny cup (top-left corner), with fixed roles per keep mode
(``FAKE_ROLES``). With proposals (the evaluation's ground-truth instances) each is scored by its
area fraction, and ``keep_labels`` decides what is kept.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.config import Config
from pipeline.layers import Layers
from pipeline.types import Decision, Instance, KeepMode, Matte, Role

# label -> role per keep mode (labels not listed are kept in every mode)
FAKE_ROLES: dict[str, dict[str, Role]] = {
    "person": {"main": Role.MAIN, "all": Role.KEPT, "interacting": Role.MAIN},
    "bag": {"main": Role.INTERACTING, "all": Role.KEPT, "interacting": Role.INTERACTING},
    "dog": {"main": Role.DROPPED, "all": Role.KEPT, "interacting": Role.DROPPED},
    "cup": {"main": Role.DROPPED, "all": Role.DROPPED, "interacting": Role.DROPPED},
}
FAKE_SCORES = {"person": 0.9, "dog": 0.6, "bag": 0.5, "cup": 0.1}
# what the fake pipeline reports having spent (seconds), before any matting
FAKE_TIMINGS_S = {"features": 0.01, "total": 0.02}


@dataclass(frozen=True)
class FakeSelection:
    """What a keep policy returns (``decisions`` aligned with the instances it was given)."""

    decisions: tuple[Decision, ...]
    ambiguity: float
    alternatives: tuple[tuple[int, ...], ...]
    fallback: str = ""


def fake_masks(h: int, w: int) -> dict[str, np.ndarray]:
    """``H×W bool`` masks: person (centre ellipse), bag touching it, dog (right), cup (tiny,
    top-left corner)."""
    yy, xx = np.mgrid[0:h, 0:w]
    person = ((xx - 0.45 * w) / (0.15 * w)) ** 2 + ((yy - 0.55 * h) / (0.3 * h)) ** 2 <= 1
    bag = (xx >= 0.58 * w) & (xx < 0.68 * w) & (yy >= 0.55 * h) & (yy < 0.75 * h)
    dog = ((xx - 0.85 * w) / (0.08 * w)) ** 2 + ((yy - 0.8 * h) / (0.1 * h)) ** 2 <= 1
    cup = (xx < 0.06 * w) & (yy < 0.06 * h)
    return {"person": person, "bag": bag & ~person, "dog": dog, "cup": cup}


def fake_instances(h: int, w: int) -> list[Instance]:
    """The four ``fake_masks`` as scored instances (ids 0..3 in person, bag, dog, cup order),
    each box the mask's own extent."""
    instances = []
    for i, (label, mask) in enumerate(fake_masks(h, w).items()):
        ys, xs = np.nonzero(mask)
        box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        instances.append(Instance(i, box, label, i, 0.8, mask, score=FAKE_SCORES[label]))
    return instances


def fake_select(instances: Sequence[Instance], mode: KeepMode) -> FakeSelection:
    """Roles from ``FAKE_ROLES``; under ``main`` an ambiguity of 0.6 with two alternatives
    (ids 0 + 1 and 2: those of the four ``fake_instances``; only those present are offered)."""
    decisions = tuple(
        Decision(
            FAKE_ROLES.get(inst.label, {}).get(mode.value, Role.KEPT),
            f"{inst.label} under {mode.value}",
        )
        for inst in instances
    )
    if mode is KeepMode.MAIN:
        present = {inst.id for inst in instances}
        offers = tuple(alt for alt in ((0, 1), (2,)) if present.issuperset(alt))
        return FakeSelection(decisions, 0.6, offers)
    return FakeSelection(decisions, 0.1, ())


def fake_refine(image: np.ndarray, inst: Instance, erode_px: int = 0, halo_px: int = 0) -> Matte:
    """The mask (shrunk by ``erode_px``, a deliberately worse matting) as alpha on the mask's
    extent, the photo's colours as foreground; with ``halo_px`` a ring that wide around it at
    alpha 0.5, the soft edge a matting gives (it reaches into a touching neighbour)."""
    mask = inst.mask
    for _ in range(erode_px):
        mask = mask & np.roll(mask, 1, 0) & np.roll(mask, -1, 0)
        mask = mask & np.roll(mask, 1, 1) & np.roll(mask, -1, 1)
    grown = mask
    for _ in range(halo_px):
        grown = grown | np.roll(grown, 1, 0) | np.roll(grown, -1, 0)
        grown = grown | np.roll(grown, 1, 1) | np.roll(grown, -1, 1)
    ys, xs = np.nonzero(grown)
    if ys.size == 0:
        return Matte(np.zeros((0, 0), np.float32), np.zeros((0, 0, 3), np.uint8), 0, 0)
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    alpha = np.where(mask, 1.0, np.where(grown, 0.5, 0.0))[y0:y1, x0:x1].astype(np.float32)
    return Matte(alpha, np.ascontiguousarray(image[y0:y1, x0:x1]), x0, y0)


class FakeRemover:
    """``Remover``-shaped: ``.config`` and ``.run(rgb, proposals=, keep=, input_alpha=, source=)``
    returning a real ``Layers``.

    Args:
        keep_labels: with proposals, keep (role ``main``) exactly the instances with these
            labels in every keep mode; None: roles from ``FAKE_ROLES``.
        erode_px: shrink every matte by this many pixels (a worse "matting" to compare against).
        halo_px: a soft ring this wide around every matte (``fake_refine``).
        fail_on_shape: ``run`` raises ``RuntimeError`` for images of this ``(H, W)``.
        release: when given, ``run`` waits for it (to hold a server worker busy); ``started``
            is set when a run begins.

    ``calls`` lists the proposals of every run (None when the fake made its own instances).
    """

    def __init__(
        self,
        *,
        keep_labels: Collection[str] | None = None,
        erode_px: int = 0,
        halo_px: int = 0,
        fail_on_shape: tuple[int, int] | None = None,
        release: threading.Event | None = None,
    ):
        self.config = Config()
        self.keep_labels = None if keep_labels is None else frozenset(keep_labels)
        self.erode_px = erode_px
        self.halo_px = halo_px
        self.fail_on_shape = fail_on_shape
        self.release = release
        self.started = threading.Event()
        self.calls: list[Sequence[Instance] | None] = []

    def run(self, image, proposals=None, keep=None, input_alpha=None, source="") -> Layers:
        self.calls.append(proposals)
        self.started.set()
        if self.release is not None and not self.release.wait(timeout=30):
            raise RuntimeError("test never released the fake remover")
        h, w = image.shape[:2]
        if (h, w) == self.fail_on_shape:
            raise RuntimeError("stage exploded")
        if proposals is None:
            instances = fake_instances(h, w)
        else:
            instances = [inst.replace(score=inst.area_px / (h * w)) for inst in proposals]
        return Layers(
            image,
            instances,
            KeepMode.parse(keep or "main"),
            self._select,
            self._refine,
            input_alpha=input_alpha,
            timings_s=FAKE_TIMINGS_S,
            source=source,
        )

    def _select(self, instances: Sequence[Instance], mode: KeepMode) -> FakeSelection:
        if self.keep_labels is None:
            return fake_select(instances, mode)
        decisions = tuple(
            Decision(Role.MAIN, "a kept label")
            if inst.label in self.keep_labels
            else Decision(Role.DROPPED, "not a kept label")
            for inst in instances
        )
        return FakeSelection(decisions, 0.0, ())

    def _refine(self, image: np.ndarray, inst: Instance) -> Matte:
        return fake_refine(image, inst, self.erode_px, self.halo_px)


def fake_app():
    """The server app around one ``FakeRemover``: ``tools/loadtest.py --app
    pipeline.fakes:fake_app`` loads the HTTP layer, decoding and encoding without models."""
    from pipeline.serve.app import create_app

    return create_app([FakeRemover()])
