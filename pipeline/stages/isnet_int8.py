"""Int8 ISNet: a static per-channel QDQ quantisation of an ISNet export, built once into the
weights cache (``layercut weights quantize``, or on first use by ``saliency.precision = "auto"``,
the ``cpu`` preset's, where ranges ship for the file: ``auto_int8``) and read with
``saliency.precision = "int8"`` or ``"auto"``.

On a CPU with int8 dot products (VNNI) onnxruntime runs the quantised 1024² pass about three
times faster than the float32 one. The map alone stays within 0.005 IoU of the float32 map's
on every evaluation set; the keep decision trained on float32 maps flips on a few DAVIS photos
with it, so the int8 map is read by a ranker and keep model trained on int8 maps
(``pipeline.api.INT8_TWINS``), which cross-validate within the noise of the float32 pair
(README, "Speed", has the times and the per-set IoU of both).

How the file is built (``quantize``): the export rewritten for the CPU as the float32 path loads
it (``pipeline.stages.onnx_fp32.for_cpu``: float16 widened, only the map's output kept), run
through onnxruntime's quantisation pre-processing, then ``quantize_static`` in QDQ format with
int8 weights per output channel and uint8 activations whose ranges are percentiles of the values
seen on calibration photos (``calibrate``). Convolutions fed by the network input stay in
float32 (one small layer): with min/max ranges onnxruntime's quantiser refuses ISNet's first
convolution, whose bias scale (input scale × weight scale) is too small for int32, and the
measured file was built that way.

Activation ranges come either from the user's photos (``photos``) or, for the one export they
were measured on (``RANGES_PATH``, matched by sha256), from the ranges shipped with the package,
which reproduces the measured file byte for byte with the same onnxruntime. Quantising needs the
``onnx`` package (the ``quantize`` extra); running the int8 file needs only onnxruntime.

The int8 file lives in ``<cache>/int8/`` under a name made of the source's file name and a
digest of its resolved path, size and modification time: a source that changes is never paired
with an old int8 file, and finding the file costs no hashing at start-up.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from importlib.resources import files
from pathlib import Path

import numpy as np

from pipeline.weights import WeightsError, derived_path

RANGES_PATH = files("pipeline") / "models" / "isnet_int8_ranges.json"
INT8_FOLDER = "int8"
QUANTIZE_HINT = "pip install onnx (a dependency of layercut, missing here)"
# share of each tensor's values inside its range (0.005 % cut on each side); plain min/max
# ranges lose up to 0.02 IoU of the map on the DAVIS sets (README, "Speed")
PERCENTILE = 99.99


def int8_path(source: Path) -> Path:
    """Where the int8 file built from ``source`` (an ``.onnx`` file) lives in the cache."""
    return derived_path(source, INT8_FOLDER, ".int8.onnx", version=1)


def built_int8(source: Path, weights: str) -> Path:
    """The int8 file built from ``source``; raises WeightsError (one line, with the command that
    builds it; ``weights`` is the config's ``saliency.weights``) when there is none."""
    path = int8_path(source)
    if not path.is_file():
        raise WeightsError(
            f"no int8 ISNet built from {source} (looked for {path}); run "
            f"`layercut weights quantize {weights}` once, or set saliency.precision=fp32"
        )
    return path


def auto_int8(source: Path) -> Path | None:
    """``saliency.precision = "auto"``: the int8 file of ``source`` when one is built, else
    built now (about 5 s, once) when ranges ship for this export, else None (the map runs in
    float32; also, with one line on stderr, when the cache cannot be written). Whether ranges
    ship is decided by the file's size, then its sha256, so another export costs one ``stat``
    per start, not a hash."""
    path = int8_path(source)
    if path.is_file():
        return path
    data = json.loads(RANGES_PATH.read_text(encoding="utf-8"))
    if Path(source).stat().st_size != data.get("source_bytes"):
        return None
    digest = hashlib.sha256(Path(source).read_bytes()).hexdigest()
    if digest != data.get("source_sha256"):
        return None
    try:
        return quantize(source)
    except OSError as exc:  # a cache that cannot be written: the float32 map, said in one line
        reason = " ".join(str(exc).split())
        print(
            f"layercut: the int8 map of {source} could not be built in the cache ({reason}); "
            "the map runs in float32",
            file=sys.stderr,
        )
        return None


def shipped_ranges(source_sha256: str) -> dict[str, tuple[float, float]] | None:
    """Activation ranges ``{tensor name: (min, max)}`` shipped for the export whose sha256 is
    ``source_sha256``; None for any other file."""
    data = json.loads(RANGES_PATH.read_text(encoding="utf-8"))
    if data.get("source_sha256") != source_sha256:
        return None
    return {name: (float(lo), float(hi)) for name, (lo, hi) in data["ranges"].items()}


def input_convs(model) -> list[str]:
    """Names of the Conv nodes of ``model`` (an ``onnx.ModelProto``) whose data input is the
    graph input, directly or through Cast nodes: the ones left in float32."""
    fed = {value.name for value in model.graph.input}
    for node in model.graph.node:  # nodes are stored in topological order
        if node.op_type == "Cast" and node.input and node.input[0] in fed:
            fed.update(node.output)
    return [n.name for n in model.graph.node if n.op_type == "Conv" and n.input[0] in fed]


def _photo_batches(photos: Sequence[Path], input_name: str, input_px: int) -> Iterator[dict]:
    """One network input per photo, pre-processed as ``IsnetSaliency`` does; a photo that
    cannot be read is skipped with one line on stderr."""
    from pipeline.imageio import load_image
    from pipeline.stages.saliency import preprocess

    for photo in photos:
        try:
            rgb = load_image(photo).rgb
        except (OSError, ValueError) as exc:
            print(f"layercut weights quantize: skipped {photo}: {exc}", file=sys.stderr)
            continue
        yield {input_name: preprocess(rgb, input_px)}


def calibrate(model_path: Path, photos: Sequence[Path], folder: Path) -> dict:
    """Activation ranges ``{tensor name: (min, max)}`` of the model at ``model_path`` on
    ``photos``: onnxruntime's percentile calibrator (``PERCENTILE``, asymmetric), fed one photo
    at a time so that one photo's activations are held at once, not all of them (about 2 GB
    each at 1024²); ``folder`` takes its temporary model. Raises WeightsError when no photo
    can be read."""
    import onnx
    from onnxruntime.quantization.calibrate import (
        CalibrationDataReader,
        CalibrationMethod,
        create_calibrator,
    )

    (input_value,) = onnx.load(str(model_path), load_external_data=False).graph.input
    input_px = input_value.type.tensor_type.shape.dim[-1].dim_value or 1024  # free side: 1024
    calibrator = create_calibrator(
        str(model_path),
        None,
        augmented_model_path=str(folder / "augmented.onnx"),
        calibrate_method=CalibrationMethod.Percentile,
        extra_options={"percentile": PERCENTILE, "symmetric": False},
    )

    class One(CalibrationDataReader):
        def __init__(self, item: dict) -> None:
            self.items = iter([item])

        def get_next(self):
            return next(self.items, None)

    seen = 0
    for batch in _photo_batches(photos, input_value.name, input_px):
        calibrator.collect_data(One(batch))
        seen += 1
    if not seen:
        raise WeightsError(f"none of the {len(photos)} calibration photos could be read")
    return {name: tuple(data.range_value) for name, data in calibrator.compute_data().items()}


def quantize(source: Path, photos: Sequence[Path] = (), force: bool = False) -> Path:
    """Build the int8 file of the ISNet export ``source`` into the cache (``int8_path``) and
    return its path; an existing one is kept unless ``force``.

    ``photos``: calibration photos (any readable images); empty: the shipped ranges, which
    exist for one export only. Raises WeightsError (one line) without the ``onnx`` package,
    without photos for another export, or when onnxruntime cannot quantise the file.
    """
    source = Path(source)
    target = int8_path(source)
    if target.is_file() and not force:
        return target
    data = source.read_bytes()
    ranges = None if photos else shipped_ranges(hashlib.sha256(data).hexdigest())
    if not photos and ranges is None:
        raise WeightsError(
            f"{source}: no shipped calibration for this ISNet file (they exist for "
            f"isnet_medium.onnx only); give calibration photos with --photos DIR"
        )
    try:
        from onnxruntime.quantization import (
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as exc:
        raise WeightsError(f"quantizing needs the onnx package: {QUANTIZE_HINT} ({exc})") from exc
    if "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
        raise WeightsError("quantizing needs onnxruntime >= 1.32 (calibration_cache_path)")
    import onnx

    from pipeline.stages.onnx_fp32 import for_cpu
    from pipeline.stages.saliency import OUTPUT_NAME

    widened = for_cpu(data, OUTPUT_NAME)[0] or data
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".quantize.", dir=target.parent) as tmp:
        folder = Path(tmp)
        (folder / "fp32.onnx").write_bytes(widened)
        del data, widened
        try:
            quant_pre_process(
                str(folder / "fp32.onnx"), str(folder / "pre.onnx"), skip_symbolic_shape=True
            )
            exclude = input_convs(onnx.load(str(folder / "pre.onnx"), load_external_data=False))
            if ranges is None:
                # onnxruntime's calibrator prints its progress: stdout is for the path only
                with contextlib.redirect_stdout(sys.stderr):
                    ranges = calibrate(folder / "pre.onnx", photos, folder)
            # the ranges reach the quantiser as its calibration cache (no calibration run)
            cache = folder / "ranges.json"
            tensors = {
                name: TensorData(lowest=np.float32(lo), highest=np.float32(hi))
                for name, (lo, hi) in ranges.items()
            }
            save_tensors_data(TensorsData(CalibrationMethod.MinMax, tensors), cache)
            quantize_static(
                str(folder / "pre.onnx"),
                str(folder / "int8.onnx"),
                None,
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=exclude,
                calibrate_method=CalibrationMethod.MinMax,  # the label the cache carries
                calibration_cache_path=str(cache),
            )
        except WeightsError:
            raise
        except (ValueError, RuntimeError, KeyError, onnx.checker.ValidationError) as exc:
            detail = " ".join(str(exc).split())
            raise WeightsError(f"{source}: onnxruntime could not quantize it ({detail})") from exc
        os.replace(folder / "int8.onnx", target)
    return target
