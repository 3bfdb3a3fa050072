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
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import Config, load_config, resolve_device
from pipeline.explain import ranker_contributions
from pipeline.layers import Layers, rank_instances
from pipeline.protocols import (
    Detector,
    Fusion,
    Ranker,
    Refiner,
    SaliencyModel,
    Segmenter,
    Selector,
)
from pipeline.stages.dedupe import merge_duplicates
from pipeline.types import Instance, KeepMode, Selection, check_image, check_saliency

# ``around_stage(name)`` returns a context manager entered around one stage (tools/benchmark.py
# meters time and memory with it)
AroundStage = Callable[[str], AbstractContextManager[Any]]
# the stages ``Remover.run`` times, in the order they run (``timings_s`` keys, with ``total``);
# detect, segment and dedupe only without given proposals, saliency only with a map,
# salient_masks only with both, fusion only with ``select.method = "learned"``
STAGES = (
    "detect", "segment", "dedupe", "saliency", "salient_masks", "features", "rank", "fusion",
    "select",
    "refine",
)  # fmt: skip


# the shipped models (pipeline/models/) that have a twin trained on the int8 map's output
INT8_TWINS = {"ranker": "ranker_int8", "keep": "keep_int8"}


class Remover:
    """Runs detect → segment → saliency → features → rank → fusion → select → refine on one
    image at a time and returns complete ``Layers``.

    Args:
        config: the resolved configuration.
        detector, segmenter, saliency, ranker, fusion, selector, refiner: optional ready-made
            stages; any left out is built from ``config`` on first use (``Remover.detector`` …).
    """

    def __init__(
        self,
        config: Config,
        *,
        detector: Detector | None = None,
        segmenter: Segmenter | None = None,
        saliency: SaliencyModel | None = None,
        ranker: Ranker | None = None,
        fusion: Fusion | None = None,
        selector: Selector | None = None,
        refiner: Refiner | None = None,
    ):
        self.config = config
        self.device = resolve_device(config.runtime.device)
        self._threads = config.runtime.threads or os.cpu_count() or 1
        self._detector = detector
        self._segmenter = segmenter
        self._saliency = saliency
        self._ranker = ranker
        self._fusion = fusion
        self._selector = selector
        self._refiner = refiner
        self._map_choice: tuple[Path, bool] | None = None  # see _map_file
        self._map_given = saliency is not None  # an injected map: no file, no int8 twins
        # ``run`` may be called from several threads at once (a pipelined batch,
        # pipeline.batch.local): the stages that keep state across a call run one image at a
        # time (Ultralytics' predictor, SAM's image embedding, pymatting's numba kernels, whose
        # workqueue threading layer aborts on concurrent use); the map's onnxruntime session
        # and the cheap stages run side by side.
        self._one_at_a_time = {name: threading.Lock() for name in ("detect", "segment", "refine")}

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

    # -- the stages, built from the config on first use ---------------------------------------
    @property
    def detector(self) -> Detector:
        if self._detector is None:
            from pipeline.weights import resolve

            cfg = self.config.detect
            path = resolve(cfg.weights)
            if path.suffix.lower() == ".onnx" and self.device == "cpu":  # no torch imported
                from pipeline.stages.onnx_seg import OnnxSegDetector

                self._detector = OnnxSegDetector(path, cfg, self._threads)
            else:
                from pipeline.stages.detect import YoloDetector

                self._detector = YoloDetector(path, cfg, self.device, self._threads)
        return self._detector

    @property
    def segmenter(self) -> Segmenter | None:
        """None with ``segment.model = "none"``: the detector's masks are kept."""
        cfg = self.config.segment
        if self._segmenter is None and cfg.model != "none":
            from pipeline.stages.segment import build_segmenter
            from pipeline.weights import resolve

            path = resolve(cfg.weights or cfg.model)
            self._segmenter = build_segmenter(cfg.model, path, self.device, self._threads)
        return self._segmenter

    @property
    def saliency(self) -> SaliencyModel | None:
        """None with ``saliency.model = "none"``: no salient-object map."""
        if self._saliency is None and self.config.saliency.model == "isnet":
            from pipeline.stages.saliency import IsnetSaliency

            path, _ = self._map_file()
            self._saliency = IsnetSaliency(path, self.config.saliency.input_px, self._threads)
        return self._saliency

    def _map_file(self) -> tuple[Path, bool]:
        """(the ISNet file the map runs, whether it is the int8 one), found once:
        ``saliency.precision`` int8 needs the built file, auto takes it where it is built or
        its ranges ship (``pipeline.stages.isnet_int8.auto_int8``), fp32 the weights file."""
        if self._map_choice is None:
            from pipeline.weights import resolve

            cfg = self.config.saliency
            path = resolve(cfg.weights)
            int8 = None
            if cfg.precision == "int8":
                from pipeline.stages.isnet_int8 import built_int8

                int8 = built_int8(path, cfg.weights)
            elif cfg.precision == "auto":
                from pipeline.stages.isnet_int8 import auto_int8

                int8 = auto_int8(path)
            self._map_choice = (int8, True) if int8 is not None else (path, False)
        return self._map_choice

    def _shipped_model(self, name: str) -> str:
        """``name`` (``rank.model`` / ``select.model``), or its twin trained on int8 maps when
        the map runs in int8 and ``name`` is a shipped model that has one (``ranker`` →
        ``ranker_int8``, ``keep`` → ``keep_int8``): the decision reads the map it was
        trained on. A path or any other name, or a map stage given to the constructor, keeps
        ``name`` as it is."""
        if name not in INT8_TWINS or self.config.saliency.model != "isnet" or self._map_given:
            return name
        return INT8_TWINS[name] if self._map_file()[1] else name

    @property
    def ranker(self) -> Ranker:
        if self._ranker is None:
            from pipeline.stages.rank import build_ranker

            rank = self.config.rank
            self._ranker = build_ranker(replace(rank, model=self._shipped_model(rank.model)))
        return self._ranker

    @property
    def fusion(self) -> Fusion | None:
        """None with ``select.method = "rules"``: the hand-set rules decide alone."""
        if self._fusion is None and self.config.select.method == "learned":
            from pipeline.stages.fusion import build_fusion

            self._fusion = build_fusion(self._shipped_model(self.config.select.model))
        return self._fusion

    @property
    def selector(self) -> Selector:
        if self._selector is None:
            from pipeline.stages.select import build_selector

            self._selector = build_selector(self.config.select)
        return self._selector

    @property
    def refiner(self) -> Refiner:
        if self._refiner is None:
            from pipeline.stages.refine import build_refiner

            self._refiner = build_refiner(self.config.refine)
        return self._refiner

    def warm_up(self) -> None:
        """Build every configured stage now (a server does this once at start)."""
        names = ("detector", "segmenter", "saliency", "ranker", "fusion", "selector", "refiner")
        for name in names:
            getattr(self, name)

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
        *,
        around_stage: AroundStage | None = None,
    ) -> Layers:
        """Run the pipeline on an ``H×W×3 uint8`` RGB image and return complete ``Layers``.

        ``proposals`` (e.g. ground-truth instances) skip the detector and the segmenter; the
        salient map is then only a ranking cue (given proposals are never altered, nor joined
        by the keep policy). The kept layers are matted here, so ``timings_s`` holds every
        stage of ``STAGES`` that ran and ``total``. ``around_stage(name)``, when given, returns
        a context manager entered around each stage (e.g. to meter its memory).
        """
        from pipeline.features import compute_features

        check_image(image)
        mode = KeepMode.parse(keep or self.config.select.keep)
        timings: dict[str, float] = {}
        stage = partial(_timed, timings, around_stage)
        start_total = time.perf_counter()
        if proposals is None:
            with self._one_at_a_time["detect"], stage("detect"):
                instances = self.detector.detect(image)
            with self._one_at_a_time["segment"], stage("segment"):
                segmenter = self.segmenter
                if segmenter is not None and instances:
                    instances = segmenter.segment(image, instances)
            with stage("dedupe"):  # one object found twice would read as an ambiguous choice
                instances = merge_duplicates(instances, self.config.dedupe)
        else:
            instances = list(proposals)
        saliency_map = None
        if self.saliency is not None:
            with stage("saliency"):
                saliency_map = check_saliency(self.saliency.predict(image), image.shape[:2])
            if proposals is None:
                with stage("salient_masks"):
                    instances = self._salient_masks(instances, saliency_map)
        with stage("features"):
            instances = compute_features(image, instances, saliency_map)
        with stage("rank"):
            scores = self.ranker.score(instances) if instances else np.zeros(0)
            instances = [
                inst.replace(score=float(s)) for inst, s in zip(instances, scores, strict=True)
            ]
            contributions = ranker_contributions(self.ranker, instances)  # for the debug view
        candidates = None
        fusion = self.fusion
        if fusion is not None:
            candidates = instances
            with stage("fusion"):
                # given proposals are decided on as they are: not split by the map
                fused_map = saliency_map if proposals is None else None
                instances = fusion.fuse(image, instances, fused_map)
        ranked = rank_instances(instances)
        # given proposals are never joined by the map's fragments rule
        select_fn = partial(
            self.selector.select, saliency=saliency_map if proposals is None else None
        )
        if proposals is None:  # a kept detection below detect.conf is said (the rescue)
            select_fn = partial(_noting_rescued, select_fn, self.config.detect.conf)
        with stage("select"):
            selection = select_fn(ranked, mode)
        refine = partial(_one_at_a_time, self._one_at_a_time["refine"], self.refiner.refine)
        with stage("refine"):
            mattes = {
                inst.id: refine(image, inst)
                for inst, decision in zip(ranked, selection.decisions, strict=True)
                if decision.role.kept
            }
        timings["total"] = time.perf_counter() - start_total
        return Layers(
            image,
            ranked,
            mode,
            select_fn,
            refine,  # a layer shown later is matted then, maybe beside another run
            input_alpha=input_alpha,
            timings_s=timings,
            source=source,
            saliency=saliency_map,
            selection=selection,
            mattes=mattes,
            contributions=contributions,
            candidates=candidates,
        )

    def _salient_masks(self, instances: list[Instance], saliency_map: np.ndarray):
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


@contextmanager
def _timed(timings: dict[str, float], around: AroundStage | None, name: str) -> Iterator[None]:
    """Time one stage into ``timings[name]``, inside ``around(name)`` when given."""
    with around(name) if around is not None else nullcontext():
        start = time.perf_counter()
        yield
        timings[name] = time.perf_counter() - start


def _one_at_a_time(lock: threading.Lock, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` holding ``lock``."""
    with lock:
        return fn(*args)


def _noting_rescued(select_fn, conf: float, ranked, mode) -> Selection:
    """``select_fn(ranked, mode)`` with a kept low-confidence detection said in its fallback
    (``pipeline.stages.select_learned.note_rescued``)."""
    from pipeline.stages.select_learned import note_rescued

    return note_rescued(ranked, select_fn(ranked, mode), conf)
