"""Configuration: defaults live in these dataclasses; TOML files and ``--set`` only override.

``load_config(path, overrides)`` is the only way a config is built from text. A TOML file has
one table per section (``[detect]``, ``[segment]`` …); an override is ``section.key=value`` with
the value parsed as TOML when it can be (``0.3``, ``true``, ``"x"``) and kept as a string
otherwise. Unknown sections or keys raise ``ValueError`` naming them.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"


@dataclass(frozen=True)
class DetectConfig:
    """Ultralytics YOLO-seg proposals."""

    weights: str = "yolo11n-seg"  # manifest name or a local checkpoint path (.pt or .onnx)
    conf: float = 0.25  # minimum detector confidence
    iou: float = 0.7  # NMS IoU threshold
    imgsz: int = 640  # network input side in pixels (320 for the int8 ONNX here)
    max_det: int = 30  # at most this many instances
    min_area_frac: float = 0.0005  # drop instances whose mask covers less of the image


@dataclass(frozen=True)
class SegmentConfig:
    """Segment Anything box-prompt refinement."""

    model: str = "none"  # none | mobile_sam | sam_vit_b | sam_vit_l | sam_vit_h
    weights: str = ""  # manifest name or local path; empty = the manifest entry named by model


@dataclass(frozen=True)
class SaliencyConfig:
    """Optional salient-object map (ISNet) used as ranking cue and mask refiner."""

    model: str = "none"  # none | isnet
    weights: str = "isnet-general-use"  # manifest name or local .onnx path
    input_px: int = 1024  # side of the square network input
    # Edges from the map (pipeline.stages.salient_masks.refine_instances):
    band_px: int = 0  # half-width of the band where the map decides; 0 = adapt to instance size
    min_mean_saliency: float = 0.3  # instances with a lower mean map value keep their own mask
    # Rescue of salient regions no instance covers (salient_masks.rescue_instances):
    rescue_min_area_frac: float = 0.005  # smallest rescued piece, share of the image area
    rescue_min_part_frac: float = 0.05  # … and share of the covered part of its salient region
    # Fragments (pipeline.select_saliency.absorb_fragments): a dropped instance with at least
    # absorb_min_share of its mask in the salient region of a kept one (map ≥ absorb_threshold,
    # grown from the kept instance's salient pixels) is part of it and kept with it.
    absorb_threshold: float = 0.2
    absorb_min_share: float = 0.3


@dataclass(frozen=True)
class RankConfig:
    """Instance ranking."""

    model: str = "ranker"  # prior | a ranker JSON path | a name of a file in models/ (ranker.json)


@dataclass(frozen=True)
class SelectConfig:
    """Keep policy thresholds (units in the names)."""

    keep: str = "main"  # main | all | interacting
    main_rel_score: float = 0.75  # co-main subjects score at least this share of the top score
    # with a salient map, co-subjects are at least this share as salient inside as the top one
    co_subject_min_saliency_rel: float = 0.5
    # … and a region rescued from the map is a co-subject only if this share of the top's area
    co_subject_min_rescued_area_rel: float = 0.5
    min_sharpness_rel: float = 0.35  # portability: sharpness / sharpest instance
    max_truncation_frac: float = 0.35  # portability: share of the box border on the frame edge
    min_area_frac: float = 0.002  # portability: smallest kept mask area / image area
    # person–object interaction score needed to keep the object; 0.45, not 0.5: the real int8
    # detector's coarse bicycle mask under its rider (cutie_bike) scores 0.499, and no DAVIS
    # item's kept region changes between 0.4 and 0.5 (pipeline.features.interaction)
    min_interaction: float = 0.45


@dataclass(frozen=True)
class RefineConfig:
    """Edge refinement with pymatting."""

    method: str = "matting"  # matting | closed_form | rembg | none (binary mask as alpha)
    estimator: str = "shared"  # matting's pymatting estimator: shared | closed_form
    band_px: int = 0  # unknown band half-width; 0 = adapt to object size and edges
    band_frac: float = 0.02  # adaptive band half-width, share of sqrt(object area in px)
    edge_gain: float = 1.0  # band up to (1 + edge_gain)× wider where the edge is high-frequency
    expansion_px: int = 1  # shared matting: known regions grow this far into similar colours
    max_solve_px: int = 1_000_000  # downscale the crop for the alpha solve above this
    margin_frac: float = 0.08  # crop margin around the box, share of the box side


@dataclass(frozen=True)
class OutputConfig:
    """How results are written."""

    format: str = "png"  # png | webp
    png_compress_level: int = 1  # zlib level: 1 is ~5× faster than Pillow's 6 on 12 MP
    webp_quality: int = 90


@dataclass(frozen=True)
class RuntimeConfig:
    """Device and resource limits."""

    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # torch CPU threads; 0 = all cores
    max_image_px: int = 150_000_000  # larger images are refused (decompression bombs)


@dataclass(frozen=True)
class Config:
    detect: DetectConfig = field(default_factory=DetectConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    saliency: SaliencyConfig = field(default_factory=SaliencyConfig)
    rank: RankConfig = field(default_factory=RankConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dict (JSON-serialisable) of every resolved value."""
        return dataclasses.asdict(self)

    def with_overrides(self, overrides: Mapping[str, Mapping[str, Any]]) -> Config:
        """A copy with ``{section: {key: value}}`` applied, types checked."""
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
            fields = {}
            for key, value in values.items():
                if key not in kinds:
                    known = ", ".join(kinds)
                    raise ValueError(f"unknown config key {section}.{key}; known: {known}")
                fields[key] = _coerce(f"{section}.{key}", value, kinds[key])
            changes[section] = dataclasses.replace(current, **fields)
        return dataclasses.replace(self, **changes)


def _coerce(name: str, value: Any, kind: type) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ValueError(f"config {name} must be true or false, got {value!r}")
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError(f"config {name} must be an integer, got {value!r}")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"config {name} must be an integer, got {value!r}") from None
        if number != int(number):
            raise ValueError(f"config {name} must be an integer, got {value!r}")
        return int(number)
    if kind is float:
        if isinstance(value, bool):
            raise ValueError(f"config {name} must be a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"config {name} must be a number, got {value!r}") from None
    if kind is str:
        return str(value)
    raise ValueError(f"config {name}: unsupported type {kind}")


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


def preset_path(name: str) -> Path:
    """Path of a preset in ``configs/`` by name (``cpu``, ``quality`` …) or the name as a path."""
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
    return config


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when torch sees a GPU, else ``cpu``; others are validated."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
