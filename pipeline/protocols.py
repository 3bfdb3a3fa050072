"""One small Protocol per pipeline role.

Stages are composed in ``pipeline.api.Remover`` (built from the config on first use, or
injected); adapters convert library outputs at their boundary so tests can substitute fakes.
All images are ``H×W×3 uint8`` RGB.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from pipeline.types import Instance, KeepMode, Matte, Selection


@runtime_checkable
class Detector(Protocol):
    """Proposes instances: box, class, score and a full-resolution coarse mask."""

    def detect(self, image: np.ndarray) -> list[Instance]:
        """Instances sorted by ``det_score`` descending, ids ``0..N-1``."""
        ...


@runtime_checkable
class Segmenter(Protocol):
    """Refines each instance mask from its box (one image embedding per image)."""

    def segment(self, image: np.ndarray, instances: Sequence[Instance]) -> list[Instance]:
        """The same instances, in the same order, with refined ``mask`` (and ``soft_mask``)."""
        ...


@runtime_checkable
class SaliencyModel(Protocol):
    """One salient-object map per image."""

    def predict(self, image: np.ndarray) -> np.ndarray:
        """``H×W float32`` in [0, 1] at the image's resolution."""
        ...


@runtime_checkable
class Ranker(Protocol):
    """Scores instances from their features: higher means more likely a main subject."""

    name: str

    def score(self, instances: Sequence[Instance]) -> np.ndarray:
        """``(N,) float64`` scores, one per instance, in input order."""
        ...


@runtime_checkable
class ExplainingRanker(Ranker, Protocol):
    """A ranker that can say what moved each score (``LinearRanker``): the debug view prints
    each instance's strongest contributions."""

    features: tuple[str, ...]

    def contributions(self, instances: Sequence[Instance]) -> np.ndarray:
        """``(N, len(features)) float64``: each feature's additive share of each score (in
        the units of the score before any link function)."""
        ...


@runtime_checkable
class Fusion(Protocol):
    """The learned keep decision over the segments the map and the instances make."""

    def fuse(
        self,
        image: np.ndarray,
        instances: Sequence[Instance],
        saliency: np.ndarray | None,
    ) -> list[Instance]:
        """The instances (features and scores set), same order and ids, each with the decision
        in its features (``keep``, ``keep_prob`` …) and a kept one's mask the part it keeps;
        kept salient regions no instance owns may follow as new ``object`` instances."""
        ...


@runtime_checkable
class Selector(Protocol):
    """The keep policy: which ranked instances the cut-out keeps, each with a reason."""

    def select(
        self,
        ranked: Sequence[Instance],
        mode: KeepMode | str,
        saliency: np.ndarray | None = None,
    ) -> Selection:
        """One decision per instance of ``ranked`` (features and scores set), in that order;
        ``saliency`` is the image's ``H×W float32`` map in [0, 1] when one was computed."""
        ...


@runtime_checkable
class Refiner(Protocol):
    """Turns one instance's mask into a soft alpha matte with decontaminated colours."""

    def refine(self, image: np.ndarray, instance: Instance) -> Matte:
        """A ``Matte`` on a crop around the instance."""
        ...
