"""The Python API: ``Remover`` composes the stages; ``from_config`` is the only place where a
configuration turns into objects.

    from pipeline import Remover
    remover = Remover.from_config()                 # preset chosen by device
    layers = remover("photo.jpg")                   # -> pipeline.layers.Layers
    layers.composite()                              # H×W×4 uint8 RGBA of the kept subjects

Stages are built lazily: a Remover used only with ground-truth proposals never loads a detector.
Any stage can be injected (a fake in tests, a custom model in an application).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import Config, load_config, resolve_device
from pipeline.layers import Layers
from pipeline.protocols import Detector, Ranker, Refiner, SaliencyModel, Segmenter
from pipeline.types import Instance, KeepMode, check_image


class Remover:
    """Runs detect → segment → features → rank → select → refine on one image at a time.

    Args:
        config: the resolved configuration.
        detector, segmenter, saliency, ranker, refiner: optional ready-made stages; any left
            out is built from ``config`` on first use.
    """

    def __init__(
        self,
        config: Config,
        *,
        detector: Detector | None = None,
        segmenter: Segmenter | None = None,
        saliency: SaliencyModel | None = None,
        ranker: Ranker | None = None,
        refiner: Refiner | None = None,
    ):
        self.config = config
        self.device = resolve_device(config.runtime.device)
        self._stages: dict[str, Any] = {
            "detector": detector,
            "segmenter": segmenter,
            "saliency": saliency,
            "ranker": ranker,
            "refiner": refiner,
        }
        self._threads = config.runtime.threads or os.cpu_count() or 1

    @classmethod
    def from_config(
        cls,
        config: Config | str | Path | None = None,
        overrides: Iterable[str] = (),
        device: str | None = None,
    ) -> Remover:
        """Build from a Config, a TOML path or a preset name (``cpu``, ``quality``), with
        ``section.key=value`` overrides; ``None`` picks the preset for the device."""
        if isinstance(config, Config):
            if overrides or device:
                raise ValueError("pass overrides/device with a config path, not a Config object")
            return cls(config)
        return cls(load_config(config, overrides, device))

    # -- lazy stage construction -------------------------------------------------------------
    def _stage(self, name: str):
        if name not in self._stages:
            raise KeyError(name)
        if self._stages[name] is None and not self._stages.get(f"_{name}_built"):
            self._stages[name] = getattr(self, f"_build_{name}")()
            self._stages[f"_{name}_built"] = True
        return self._stages[name]

    def _build_detector(self) -> Detector:
        from pipeline.stages.detect import YoloDetector
        from pipeline.weights import resolve

        cfg = self.config.detect
        return YoloDetector(resolve(cfg.weights), cfg, self.device, self._threads)

    def _build_segmenter(self) -> Segmenter | None:
        from pipeline.stages.segment import build_segmenter
        from pipeline.weights import resolve

        cfg = self.config.segment
        if cfg.model == "none":
            return None
        path = resolve(cfg.weights or cfg.model)
        return build_segmenter(cfg.model, path, self.device, self._threads)

    def _build_saliency(self) -> SaliencyModel | None:
        cfg = self.config.saliency
        if cfg.model == "none":
            return None
        if cfg.model != "isnet":
            raise ValueError(f"saliency.model must be none or isnet, got {cfg.model!r}")
        from pipeline.stages.saliency import IsnetSaliency
        from pipeline.weights import resolve

        return IsnetSaliency(resolve(cfg.weights), cfg.input_px, self._threads)

    def _build_ranker(self) -> Ranker:
        from pipeline.stages.rank import build_ranker

        return build_ranker(self.config.rank)

    def _build_refiner(self) -> Refiner:
        from pipeline.stages.refine import build_refiner

        return build_refiner(self.config.refine)

    def warm_up(self) -> None:
        """Build every configured stage now (a server does this once at start)."""
        for name in ("detector", "segmenter", "saliency", "ranker", "refiner"):
            self._stage(name)

    def _apply_saliency(self, instances: list[Instance], saliency_map: np.ndarray):
        """Edges from the salient map inside a band around each detector mask, then rescue of
        large salient regions that no instance covers (a class COCO lacks, a missed object)."""
        from pipeline.stages.salient_masks import refine_instances, rescue_instances

        cfg = self.config.saliency
        instances = refine_instances(
            instances, saliency_map, cfg.band_px, min_mean_saliency=cfg.min_mean_saliency
        )
        return rescue_instances(
            instances, saliency_map, cfg.rescue_min_area_frac, cfg.rescue_min_part_frac
        )

    def select_fn(self, saliency_map: np.ndarray | None = None):
        """The keep policy as ``Layers`` calls it, ``fn(ranked, mode) -> Selection``: ``select``
        and, given the image's salient map, ``absorb_fragments`` (pieces of a kept subject join
        it)."""
        from pipeline.select import select
        from pipeline.select_saliency import absorb_fragments

        select_config = self.config.select
        cfg = self.config.saliency

        def select_fn(ranked: Sequence[Instance], how: KeepMode):
            selection = select(ranked, how, select_config)
            if saliency_map is None:
                return selection
            return absorb_fragments(
                ranked, selection, saliency_map, cfg.absorb_threshold, cfg.absorb_min_share
            )

        return select_fn

    # -- running -----------------------------------------------------------------------------
    def __call__(self, image: Any, keep: KeepMode | str | None = None) -> Layers:
        """Remove the background of ``image`` (a path, a PIL image or an ``H×W×3`` array)."""
        from pipeline.imageio import image_from_array, image_from_pil, load_image

        if isinstance(image, (str, Path)):
            loaded = load_image(image, self.config.runtime.max_image_px)
        elif isinstance(image, np.ndarray):
            loaded = image_from_array(image)
        else:
            loaded = image_from_pil(image)
        source = str(image) if isinstance(image, (str, Path)) else ""
        return self.run(loaded.rgb, keep=keep, input_alpha=loaded.alpha, source=source)

    def run(
        self,
        image: np.ndarray,
        proposals: Sequence[Instance] | None = None,
        keep: KeepMode | str | None = None,
        input_alpha: np.ndarray | None = None,
        source: str = "",
    ) -> Layers:
        """Run the pipeline on an ``H×W×3 uint8`` RGB image.

        ``proposals`` (e.g. ground-truth instances) skip the detector and the segmenter.
        The kept layers are matted before returning, so ``timings_s['refine']`` is meaningful.
        """
        from pipeline.features import compute_features

        check_image(image)
        mode = KeepMode.parse(keep or self.config.select.keep)
        timings: dict[str, float] = {}
        start_total = time.perf_counter()
        if proposals is None:
            start = time.perf_counter()
            instances = self._stage("detector").detect(image)
            timings["detect"] = time.perf_counter() - start
            segmenter = self._stage("segmenter")
            start = time.perf_counter()
            if segmenter is not None and instances:
                instances = segmenter.segment(image, instances)
            timings["segment"] = time.perf_counter() - start
        else:
            instances = list(proposals)
        saliency_map = None
        saliency = self._stage("saliency")
        if saliency is not None:
            start = time.perf_counter()
            saliency_map = saliency.predict(image)
            if proposals is None:  # given proposals (ground truth) are never altered
                instances = self._apply_saliency(instances, saliency_map)
            timings["saliency"] = time.perf_counter() - start

        start = time.perf_counter()
        instances = compute_features(image, instances, saliency_map)
        timings["features"] = time.perf_counter() - start

        start = time.perf_counter()
        scores = self._stage("ranker").score(instances) if instances else np.zeros(0)
        instances = [
            inst.replace(score=float(s)) for inst, s in zip(instances, scores, strict=True)
        ]
        timings["rank"] = time.perf_counter() - start

        refiner = self._stage("refiner")
        select_fn = self.select_fn(saliency_map if proposals is None else None)
        start = time.perf_counter()
        layers = Layers(
            image,
            instances,
            mode,
            select_fn,
            refiner.refine,
            input_alpha=input_alpha,
            timings_s=timings,
            source=source,
        )
        layers.saliency = saliency_map
        timings_select = time.perf_counter() - start
        layers.timings_s["select"] = timings_select
        layers.timings_s["refine"] = 0.0
        for layer in layers.kept_layers():
            _ = layer.matte  # matte now so the cost is measured where it belongs
        layers.timings_s["total"] = time.perf_counter() - start_total
        return layers
