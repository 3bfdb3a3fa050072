"""Configuration: defaults live in these dataclasses; TOML files and ``--set`` only override.

``load_config(path, overrides)`` is the only way a config is built from text. A TOML file has
one table per section (``[detect]``, ``[segment]`` …); an override is ``section.key=value`` with
the value parsed as TOML when it can be (``0.3``, ``true``, ``"x"``) and kept as a string
otherwise. Unknown sections or keys raise ``ValueError`` naming them.

Every value is checked when its section is built (``Config(...)``, ``with_overrides`` and so
``load_config``): a choice key is typed ``Literal[...]`` (its choices are declared here once and
the stages read their name tables from them), a number key carries its range (``num``,
``pipeline.config_fields``). A bad value raises one ``ValueError`` line naming the key and what
is allowed, e.g. ``config output.format must be one of png, webp, mask; got 'gif'``, before any
model loads.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, ClassVar, Literal

import tomllib

from pipeline.config_fields import SHARE, Section, coerce, num
from pipeline.outputs import FORMAT_NAMES
from pipeline.resources import default_max_image_px

# Data the product reads at run time ships inside the package (pyproject's package-data), so a
# wheel install reads the same files as a checkout: the presets and the ranker JSON files.
CONFIGS_DIR = files("pipeline") / "configs"
MODELS_DIR = files("pipeline") / "models"

# The choices of each choice key, declared once; the stages take their name tables from these.
SegmentModel = Literal["none", "mobile_sam", "sam_vit_b", "sam_vit_l", "sam_vit_h"]
SaliencyModelName = Literal["none", "isnet"]
# int8: the file `layercut weights quantize` built from saliency.weights (stages/isnet_int8.py);
# auto: int8 where it is built or its ranges ship for the weights file (built once), else fp32
SaliencyPrecision = Literal["fp32", "int8", "auto"]
KeepName = Literal["main", "all", "interacting"]  # pipeline.types.KeepMode's values
# learned: the keep decision over segments (pipeline.stages.fusion) decides --keep main;
# rules: the hand-set rules of pipeline.stages.select (a baseline)
SelectMethod = Literal["learned", "rules"]
RefineMethod = Literal["matting", "closed_form", "rembg", "none"]
MattingEstimator = Literal["shared", "closed_form"]
# the output formats are the table of pipeline.outputs: a new format is one entry there
OutputFormat = Literal[FORMAT_NAMES]  # type: ignore[valid-type]
DeviceName = Literal["auto", "cpu", "cuda"]

# Keys that moved to another section: the old name raises an error naming the new one.
MOVED_KEYS = {
    "saliency.absorb_threshold": "select.absorb_threshold",
    "saliency.absorb_min_share": "select.absorb_min_share",
}


@dataclass(frozen=True)
class DetectConfig(Section):
    """Ultralytics YOLO-seg proposals."""

    section: ClassVar[str] = "detect"
    weights: str = "yolo11n-seg"  # manifest name or a local checkpoint path (.pt or .onnx)
    conf: float = num(0.25, *SHARE)  # minimum detector confidence
    # when nothing reaches conf, the most confident detection at or above this is proposed
    # (said in the result's fallback): a photo the detector is unsure of is not left empty;
    # ≥ conf turns it off. Chosen on the synthetic training scenes (README "Sensitivity").
    rescue_conf: float = num(0.01, *SHARE)
    iou: float = num(0.7, *SHARE)  # NMS IoU threshold
    imgsz: int = num(640, 32)  # network input side in pixels (320 for the int8 ONNX here)
    max_det: int = num(30, 1)  # at most this many instances
    min_area_frac: float = num(0.0005, *SHARE)  # drop instances whose mask covers less


@dataclass(frozen=True)
class SegmentConfig(Section):
    """Segment Anything box-prompt refinement."""

    section: ClassVar[str] = "segment"
    model: SegmentModel = "none"
    weights: str = ""  # manifest name or local path; empty = the manifest entry named by model


@dataclass(frozen=True)
class DedupeConfig(Section):
    """Duplicate detections of one object merged before ranking (``pipeline.stages.dedupe``).
    Shares of mask pixels, in [0, 1]."""

    section: ClassVar[str] = "dedupe"
    enabled: bool = True
    min_mask_iou: float = num(0.7, *SHARE)  # same label: mask intersection / union
    # same label: share of the smaller mask inside the larger (a part found on its own)
    min_contained_share: float = num(0.9, *SHARE)
    min_mask_iou_any_label: float = num(0.9, *SHARE)  # two labels on the same pixels


@dataclass(frozen=True)
class SaliencyConfig(Section):
    """Optional salient-object map (ISNet) used as ranking cue and mask refiner."""

    section: ClassVar[str] = "saliency"
    model: SaliencyModelName = "none"
    weights: str = "isnet-general-use"  # manifest name or local .onnx path
    precision: SaliencyPrecision = "fp32"
    input_px: int = num(1024, 32)  # side of the square network input
    # Edges from the map (pipeline.stages.salient_masks.refine_instances):
    band_px: int = num(0, 0)  # half-width of the band where the map decides; 0 = adaptive
    min_mean_saliency: float = num(0.3, *SHARE)  # lower mean map value: own mask kept
    # Rescue of salient regions no instance covers (salient_masks.rescue_instances):
    rescue_min_area_frac: float = num(0.005, *SHARE, open_low=True)  # share of the image area
    rescue_min_part_frac: float = num(0.05, 0)  # … and of the covered part of its region


@dataclass(frozen=True)
class RankConfig(Section):
    """Instance ranking."""

    section: ClassVar[str] = "rank"
    model: str = "ranker"  # prior | a ranker JSON path | a file name in pipeline/models/

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.model.strip() != "prior" and ranker_path(self.model) is None:
            raise ValueError(
                "config rank.model must be prior, a ranker JSON path or the name of a file in "
                f"{MODELS_DIR}; got {self.model!r} (no such file)"
            )


def ranker_path(model: str) -> Path | Traversable | None:
    """The ranker JSON ``rank.model`` names: a path, or ``MODELS_DIR/<name>`` then
    ``MODELS_DIR/<name>.json`` (``pipeline/models/``); None when there is no such file (or
    ``model`` is blank)."""
    model = model.strip()
    if not model:
        return None
    path = Path(model).expanduser()
    if path.is_file():
        return path
    if len(path.parts) == 1:
        for candidate in (MODELS_DIR / model, MODELS_DIR / f"{model}.json"):
            if candidate.is_file():
                return candidate
    return None


@dataclass(frozen=True)
class SelectConfig(Section):
    """Keep policy (``pipeline.stages.select``, with ``method = "learned"`` the keep decision of
    ``pipeline.stages.fusion`` for ``--keep main``): thresholds, units in the names."""

    section: ClassVar[str] = "select"
    keep: KeepName = "main"
    method: SelectMethod = "learned"
    # the learned keep decision (method learned): a JSON path or a file name in pipeline/models/
    model: str = "keep"
    main_rel_score: float = num(0.75, 0)  # co-main subjects score at least this × the top score
    # with a salient map, co-subjects are at least this share as salient inside as the top one
    co_subject_min_saliency_rel: float = num(0.5, 0)
    # … and a region rescued from the map is a co-subject only if this share of the top's area
    co_subject_min_rescued_area_rel: float = num(0.5, 0)
    min_sharpness_rel: float = num(0.35, 0)  # portability: sharpness / sharpest instance
    max_truncation_frac: float = num(0.35, *SHARE)  # portability: box border on the frame edge
    min_area_frac: float = num(0.002, *SHARE)  # portability: smallest kept mask area / image
    # person–object interaction score needed to keep the object; below 0.5 because a coarse
    # detector mask of a ridden bicycle scores just under it (README, "Keep policy settings")
    min_interaction: float = num(0.45, *SHARE)
    # Fragments, with a salient map (pipeline.stages.select_fragments.absorb_fragments): a
    # dropped instance with at least absorb_min_share of its mask in the salient region of a
    # kept one (map ≥ absorb_threshold, grown from the kept instance's salient pixels) is part
    # of it and kept with it. The threshold stays at or under the seed level (0.5).
    absorb_threshold: float = num(0.2, 0.0, 0.5, open_low=True)
    absorb_min_share: float = num(0.3, *SHARE, open_low=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.method == "learned" and ranker_path(self.model) is None:
            raise ValueError(
                "config select.model must be a keep-model JSON path or the name of a file in "
                f"{MODELS_DIR}; got {self.model!r} (no such file)"
            )


@dataclass(frozen=True)
class RefineConfig(Section):
    """Edge refinement with pymatting."""

    section: ClassVar[str] = "refine"
    method: RefineMethod = "matting"  # none: the binary mask as alpha
    estimator: MattingEstimator = "shared"  # matting's pymatting estimator
    band_px: int = num(0, 0)  # unknown band half-width; 0 = adapt to object size and edges
    band_frac: float = num(0.02, 0)  # adaptive band half-width, share of sqrt(object area)
    edge_gain: float = num(1.0, 0)  # band up to (1 + edge_gain)× wider at high-frequency edges
    expansion_px: int = num(1, 0)  # shared matting: known regions grow into similar colours
    max_solve_px: int = num(1_000_000, 1)  # downscale the crop for the alpha solve above this
    margin_frac: float = num(0.08, 0)  # crop margin around the box, share of the box side


@dataclass(frozen=True)
class OutputConfig(Section):
    """How results are written."""

    section: ClassVar[str] = "output"
    format: OutputFormat = "png"
    png_compress_level: int = num(1, 0, 9)  # zlib level: 1 is ~5× faster than Pillow's 6
    webp_quality: int = num(90, 0, 100)


@dataclass(frozen=True)
class RuntimeConfig(Section):
    """Device and resource limits."""

    section: ClassVar[str] = "runtime"
    device: DeviceName = "auto"
    threads: int = num(0, 0)  # torch CPU threads; 0 = all cores
    # larger images are refused before decoding; the default follows this machine's memory
    # (pipeline.resources: what the default accepts, it finishes; at most 150 MP)
    max_image_px: int = num(default_max_image_px(), 1)


@dataclass(frozen=True)
class Config:
    detect: DetectConfig = field(default_factory=DetectConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    dedupe: DedupeConfig = field(default_factory=DedupeConfig)
    saliency: SaliencyConfig = field(default_factory=SaliencyConfig)
    rank: RankConfig = field(default_factory=RankConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for spec in dataclasses.fields(self):
            if not isinstance(getattr(self, spec.name), hints[spec.name]):
                raise ValueError(f"config {spec.name} must be a {hints[spec.name].__name__}")

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dict (JSON-serialisable) of every resolved value."""
        return dataclasses.asdict(self)

    def with_overrides(self, overrides: Mapping[str, Mapping[str, Any]]) -> Config:
        """A copy with ``{section: {key: value}}`` applied, types and ranges checked."""
        sections = {f.name: f for f in dataclasses.fields(self)}
        changes = {}
        for section, values in overrides.items():
            if section not in sections:
                raise ValueError(
                    f"unknown config section {section!r}; known: {', '.join(sections)}"
                )
            if not isinstance(values, Mapping):
                raise ValueError(f"config section {section!r} must be a table")
            current = getattr(self, section)
            kinds = typing.get_type_hints(type(current))
            names = [f.name for f in dataclasses.fields(current)]
            fields = {}
            for key, value in values.items():
                dotted = f"{section}.{key}"
                if dotted in MOVED_KEYS:
                    raise ValueError(f"config key {dotted} is now {MOVED_KEYS[dotted]}")
                if key not in names:
                    raise ValueError(f"unknown config key {dotted}; known: {', '.join(names)}")
                fields[key] = coerce(dotted, value, kinds[key])
            changes[section] = dataclasses.replace(current, **fields)
        return dataclasses.replace(self, **changes)


def parse_override(text: str) -> tuple[str, str, Any]:
    """Parse ``section.key=value`` into ``(section, key, value)``; ``ValueError`` if malformed."""
    if "=" not in text:
        raise ValueError(f"--set expects section.key=value, got {text!r}")
    dotted, raw = text.split("=", 1)
    parts = dotted.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"--set expects section.key=value, got {text!r}")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return parts[0], parts[1], value


def preset_path(name: str) -> Path | Traversable:
    """A preset in ``CONFIGS_DIR`` (``pipeline/configs/``) by name (``cpu``, ``quality`` …), or
    the name as a path when it ends in ``.toml`` or exists."""
    candidate = Path(name)
    if candidate.suffix == ".toml" or candidate.exists():
        return candidate
    return CONFIGS_DIR / f"{name}.toml"


def load_config(
    path: str | Path | None = None,
    overrides: Iterable[str] = (),
    device: str | None = None,
) -> Config:
    """Build a Config: dataclass defaults ← preset/TOML file ← ``--set`` overrides ← ``device``.

    Without ``path`` the preset follows the device: ``quality`` on CUDA, ``cpu`` otherwise.
    ``ValueError`` (one line) for a bad value, and for ``cuda`` where torch sees no GPU.
    """
    resolved_device = resolve_device(device or "auto")
    if path is None:
        path = preset_path("quality" if resolved_device == "cuda" else "cpu")
    config = Config()
    file = preset_path(str(path))
    if not file.is_file():
        raise ValueError(f"config file not found: {file}")
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"config file {file} is not valid TOML: {exc}") from None
    config = config.with_overrides(data)
    table: dict[str, dict[str, Any]] = {}
    for text in overrides:
        section, key, value = parse_override(text)
        table.setdefault(section, {})[key] = value
    config = config.with_overrides(table)
    if device is not None:
        config = config.with_overrides({"runtime": {"device": device}})
    if config.runtime.device == "cuda":  # also when a file or --set asks for it
        resolve_device("cuda")
    return config


# What a loaded GPU driver leaves on Linux: NVIDIA (CUDA), AMD (ROCm builds of torch), WSL2.
GPU_DRIVER_PATHS = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/kfd", "/dev/dxg")


def gpu_driver_present() -> bool:
    """False on Linux when no GPU driver is loaded, so torch could find no device and ``auto``
    is ``cpu`` without importing torch (470 MB of memory and a second of start-up that an ONNX
    pipeline never needs); True elsewhere (torch is asked)."""
    if not sys.platform.startswith("linux"):
        return True
    return any(os.path.exists(path) for path in GPU_DRIVER_PATHS)


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when torch sees a GPU, else ``cpu``. ``cuda`` where torch sees none
    raises ``ValueError`` in one line, so the choice fails before any model or weights load."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    if device == "cpu" or (device == "auto" and not gpu_driver_present()):
        return "cpu"
    import warnings

    import torch

    with warnings.catch_warnings():  # a CUDA build without a driver warns; our message says it
        warnings.simplefilter("ignore")
        available = bool(torch.cuda.is_available())
    if device == "cuda" and not available:
        build = "a CPU-only build" if torch.version.cuda is None else "it finds no usable GPU"
        raise ValueError(
            f"device cuda: CUDA is not available (torch {torch.__version__}: {build}); "
            "use --device cpu or --device auto"
        )
    return "cuda" if available else "cpu"
