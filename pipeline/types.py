"""Central data types shared by every stage.

Conventions (see DESIGN.md):
- image: ``H×W×3 uint8`` RGB.
- boxes: ``xyxy`` ``(4,) float32`` in original pixels.
- masks: ``H×W bool`` at full image resolution.
- alpha: ``H×W float32`` in [0, 1].

Validation raises ``ValueError`` naming the bad shape; never ``assert``.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np


class KeepMode(str, enum.Enum):
    """Which instances the composite keeps.

    - ``main``: the main subjects and the objects they interact with.
    - ``all``: every portable instance (sharp, not tiny, not cut by the frame).
    - ``interacting``: only people and the objects they interact with.
    """

    MAIN = "main"
    ALL = "all"
    INTERACTING = "interacting"

    @classmethod
    def parse(cls, value: str | KeepMode) -> KeepMode:
        if isinstance(value, KeepMode):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            names = ", ".join(m.value for m in cls)
            raise ValueError(f"unknown keep mode {value!r}; expected one of: {names}") from None


class Role(str, enum.Enum):
    """The decision taken for one instance by the keep policy."""

    MAIN = "main"
    INTERACTING = "interacting"
    KEPT = "kept"  # kept by --keep=all without being a main subject
    DROPPED = "dropped"

    @property
    def kept(self) -> bool:
        return self is not Role.DROPPED


def check_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Return ``image`` if it is ``H×W×3 uint8`` with H, W ≥ 1, else raise ``ValueError``."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{name} must be H×W×3, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8, got {image.dtype}")
    return image


def check_mask(mask: np.ndarray, hw: tuple[int, int], name: str = "mask") -> np.ndarray:
    """Return ``mask`` if it is ``H×W bool`` with the given (H, W), else raise ``ValueError``."""
    if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
        dtype = getattr(mask, "dtype", type(mask).__name__)
        raise ValueError(f"{name} must be a bool numpy array, got {dtype}")
    if mask.shape != tuple(hw):
        raise ValueError(f"{name} must have shape {tuple(hw)}, got {mask.shape}")
    return mask


def check_alpha(alpha: np.ndarray, hw: tuple[int, int] | None = None, name: str = "alpha"):
    """Return ``alpha`` if it is a 2-D float32 array in [0, 1] (of shape ``hw`` when given)."""
    if not isinstance(alpha, np.ndarray) or alpha.ndim != 2 or alpha.dtype != np.float32:
        shape = getattr(alpha, "shape", None)
        dtype = getattr(alpha, "dtype", None)
        raise ValueError(f"{name} must be a 2-D float32 array, got shape {shape} dtype {dtype}")
    if hw is not None and alpha.shape != tuple(hw):
        raise ValueError(f"{name} must have shape {tuple(hw)}, got {alpha.shape}")
    return alpha


def check_saliency(saliency: np.ndarray, hw: tuple[int, int], name: str = "saliency") -> np.ndarray:
    """Return a salient-object map if it is ``H×W float32`` of shape ``hw`` with every value in
    [0, 1] (no NaN, no inf), else raise ``ValueError`` naming ``name``.

    The one check of a map: the pipeline checks the model's output with it, and every function
    that reads a map (mask edges, rescue, cues, the keep policy, evaluation rules) calls it.
    """
    check_alpha(saliency, hw, name)
    if saliency.size:
        low, high = float(saliency.min()), float(saliency.max())  # NaN propagates into both
        if not (0.0 <= low and high <= 1.0):
            raise ValueError(f"{name} must hold values in [0, 1], got min {low:.3g} max {high:.3g}")
    return saliency


def mask_to_xyxy(mask: np.ndarray) -> np.ndarray:
    """Tight ``(4,) float32`` box ``[x0, y0, x1, y1]`` (x1, y1 exclusive) of a bool mask.

    An empty mask gives ``[0, 0, 0, 0]``.
    """
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    if len(xs) == 0:
        return np.zeros(4, np.float32)
    return np.array([xs[0], ys[0], xs[-1] + 1, ys[-1] + 1], np.float32)


@dataclass(frozen=True, eq=False)
class Instance:
    """One object instance proposed for the photo.

    Attributes:
        id: index of the proposal in detection order (stable across stages).
        xyxy: ``(4,) float32`` box in original pixels.
        label: class name (``"person"``, ``"bicycle"``, ``"object"`` for rescued regions).
        class_id: detector class index, or -1 when the instance does not come from a detector.
        det_score: detector confidence in [0, 1] (1.0 for ground-truth proposals).
        mask: ``H×W bool`` at full image resolution.
        soft_mask: optional ``H×W float32`` in [0, 1] (SAM logits or saliency), used by matting.
        features: cue name → value in the unit documented by ``pipeline.features``.
        score: ranker output (higher = more likely a main subject).
        source: ``"detector"``, ``"gt"`` or ``"saliency"``.
    """

    id: int
    xyxy: np.ndarray
    label: str
    class_id: int
    det_score: float
    mask: np.ndarray
    soft_mask: np.ndarray | None = None
    features: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    score: float = 0.0
    source: str = "detector"

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1)
        if xyxy.shape != (4,):
            raise ValueError(f"Instance.xyxy must have 4 values, got shape {xyxy.shape}")
        object.__setattr__(self, "xyxy", xyxy)
        if not isinstance(self.mask, np.ndarray) or self.mask.ndim != 2:
            shape = getattr(self.mask, "shape", None)
            raise ValueError(f"Instance.mask must be a 2-D array, got shape {shape}")
        if self.mask.dtype != np.bool_:
            object.__setattr__(self, "mask", self.mask.astype(bool))
        if self.soft_mask is not None:
            check_alpha(self.soft_mask, self.mask.shape, "Instance.soft_mask")
        object.__setattr__(self, "features", MappingProxyType(dict(self.features)))

    @property
    def area_px(self) -> int:
        """Number of mask pixels."""
        return int(self.mask.sum())

    def replace(self, **changes) -> Instance:
        """A copy with the given fields changed (the instance itself is frozen)."""
        return dataclasses.replace(self, **changes)


# How a reason names another instance: the policy knows instances by id, a user by rank (the
# number of the layer files, the page and the debug view). ``instance_ref(id)`` writes a
# placeholder, ``Layers`` replaces it with ``#<rank>`` when it applies a selection; a bare
# ``#<number>`` in a reason is refused there (it would be an id a user cannot look up).
_REF = re.compile(r"\{#(-?\d+)\}")
_BARE_NUMBER = re.compile(r"#\d")


def instance_ref(instance_id: int) -> str:
    """The placeholder naming instance ``instance_id`` in a ``Decision.reason``
    (``"{#7}"``); users read it as ``#<rank>`` of that instance's layer."""
    return f"{{#{int(instance_id)}}}"


def resolve_refs(reason: str, rank_of: Mapping[int, int]) -> str:
    """``reason`` with every ``instance_ref(id)`` replaced by ``#<rank_of[id]>``.

    Raises ``ValueError`` for a placeholder naming an id not in ``rank_of`` and for a bare
    ``#<number>`` outside placeholders (an id written where a user expects a rank)."""

    def rank(match: re.Match) -> str:
        instance_id = int(match.group(1))
        if instance_id not in rank_of:
            raise ValueError(f"reason {reason!r} names instance {instance_id}, which has no layer")
        return f"#{rank_of[instance_id]}"

    if _BARE_NUMBER.search(_REF.sub("", reason)):
        raise ValueError(
            f"reason {reason!r} names an instance by number; write pipeline.types."
            "instance_ref(id) so that it shows as the layer's rank"
        )
    return _REF.sub(rank, reason)


def ids_to_ranks(instance_ids, rank_of: Mapping[int, int]) -> tuple[int, ...]:
    """The ranks of ``instance_ids`` (e.g. one alternative of a ``Selection``); ``ValueError``
    for an id not in ``rank_of``."""
    missing = [int(i) for i in instance_ids if int(i) not in rank_of]
    if missing:
        raise ValueError(f"keep policy offers instance(s) {missing}, which have no layer")
    return tuple(rank_of[int(i)] for i in instance_ids)


@dataclass(frozen=True)
class Decision:
    """The keep policy's verdict on one instance: its role and a short human reason.

    A reason that names another instance does so with ``instance_ref(instance.id)``; what a
    user reads (``Layer.reason``, ``layers.json``, the page, the debug view) says ``#<rank>``.
    """

    role: Role
    reason: str


@dataclass(frozen=True)
class Selection:
    """The keep policy's result for one image (``pipeline.stages.select``).

    Attributes:
        decisions: one ``Decision`` per instance, in the order the policy was given them.
        ambiguity: in [0, 1]; high when two main candidates are close (the policy's
            measure: ``pipeline.stages.select``).
        alternatives: instance ids of a few other main selections, best first, the chosen one
            excluded; each tuple lists its lead instance first. ``Layers.alternatives`` gives
            them as ranks.
        fallback: "" normally; a sentence when the policy would have kept nothing although
            something was found, and the best candidate was kept instead (the CLI warns, the
            server flags it, ``layers.json`` records it).
    """

    decisions: tuple[Decision, ...]
    ambiguity: float
    alternatives: tuple[tuple[int, ...], ...]
    fallback: str = ""


@dataclass(frozen=True)
class Matte:
    """A refined cut-out of one instance, stored as a crop to keep memory small.

    Attributes:
        alpha: ``h×w float32`` in [0, 1] for the crop.
        foreground: ``h×w×3 uint8`` decontaminated colour for the crop.
        x0, y0: the crop's top-left corner in image pixels.
    """

    alpha: np.ndarray
    foreground: np.ndarray
    x0: int
    y0: int

    def __post_init__(self) -> None:
        check_alpha(self.alpha, name="Matte.alpha")
        fg = self.foreground
        if fg.shape != (*self.alpha.shape, 3) or fg.dtype != np.uint8:
            raise ValueError(
                f"Matte.foreground must be {(*self.alpha.shape, 3)} uint8, "
                f"got {fg.shape} {fg.dtype}"
            )

    def within(self, allowed: np.ndarray) -> Matte:
        """This matte with its alpha zeroed where ``allowed`` (``H×W bool`` at the image's
        resolution) is False; the same matte when nothing changes."""
        h, w = self.alpha.shape
        inside = allowed[self.y0 : self.y0 + h, self.x0 : self.x0 + w]
        if inside.all():
            return self
        alpha = np.where(inside, self.alpha, np.float32(0.0)).astype(np.float32)
        return Matte(alpha, self.foreground, self.x0, self.y0)

    def full_alpha(self, hw: tuple[int, int]) -> np.ndarray:
        """The alpha pasted into an ``H×W float32`` zero canvas."""
        out = np.zeros(hw, np.float32)
        h, w = self.alpha.shape
        out[self.y0 : self.y0 + h, self.x0 : self.x0 + w] = self.alpha
        return out
