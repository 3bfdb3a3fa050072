"""Salient-object map from an ISNet (DIS) ONNX export, run with onnxruntime on the CPU.

The map says *where* the salient things are and gives fine edges (the network sees a 1024²
input, far finer than a 320-px detector mask); ``pipeline.stages.salient_masks`` uses it to
refine kept instances and to rescue salient regions the detector missed.

Pre-processing (``preprocess``): RGB resized to ``input_px × input_px`` (aspect ratio not kept,
as the network was trained), normalised per channel, NCHW float32. Two recipes exist for the
same ISNet weights:

- ``"rembg"`` (the default): rembg's ``isnet-general-use`` session (``rembg/sessions/
  dis_general_use.py`` + ``base.py``): Lanczos resize, ``x / max(x)`` (the image's own maximum,
  not 255), minus the ImageNet mean ``(0.485, 0.456, 0.406)``, std ``(1, 1, 1)``;
- ``"imgly"``: ``@imgly/background-removal`` (whose ``/models/medium`` is our
  ``isnet_medium.onnx``): bilinear resize, ``(x − 128) / 256``.

Both are the DIS training normalisation (``x/255 − 0.5``, std 1) up to a small per-channel
shift. On the 20 DAVIS items (map ≥ 0.5 vs mask.png, 1024² input) ``rembg`` scores mean IoU
0.883 and ``imgly`` 0.875, most of the difference in the two breakdance frames (0.40/0.48 vs
0.37/0.40, the salient crowd): elsewhere they agree within ±0.02. rembg also min–max
stretches the output; we do not, so 0.5 keeps an absolute meaning and a photo with nothing
salient stays near 0.

Only the ``output`` head (the finest side output, already a sigmoid in [0, 1]) is requested: the
other outputs are deep-supervision maps and intermediate features nobody needs.

Some exports have a fixed input side. ``isnet_medium.onnx`` is one: its input is declared
1×3×1024×1024 and its upsampling sizes are constants in the graph (with the declared size
patched to 768 the session fails at ``/stage1/Add``), so only ``input_px = 1024`` works with it.
Asking a fixed-size model for another ``input_px`` raises ``ValueError`` rather than silently
running at its own size.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.types import check_image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
NORMALIZATIONS = ("rembg", "imgly")
OUTPUT_NAME = "output"


def preprocess(image: np.ndarray, input_px: int, normalization: str = "rembg") -> np.ndarray:
    """``H×W×3 uint8`` RGB → ``1×3×input_px×input_px float32`` network input.

    ``normalization``: ``"rembg"`` or ``"imgly"`` (see the module docstring).
    """
    check_image(image)
    if input_px < 1:
        raise ValueError(f"input_px must be ≥ 1, got {input_px}")
    if normalization == "rembg":
        resized = Image.fromarray(image).resize((input_px, input_px), Image.Resampling.LANCZOS)
        pixels = np.asarray(resized, dtype=np.float32)
        pixels = pixels / max(float(pixels.max()), 1e-6) - np.asarray(IMAGENET_MEAN, np.float32)
    elif normalization == "imgly":
        resized = Image.fromarray(image).resize((input_px, input_px), Image.Resampling.BILINEAR)
        pixels = (np.asarray(resized, dtype=np.float32) - 128.0) / 256.0
    else:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)[None])


def postprocess(output: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Network output ``1×1×S×S`` (or ``S×S``) in [0, 1] → ``H×W float32`` in [0, 1].

    Resized with PIL's bilinear filter on float data, which averages over the source footprint
    when shrinking (no aliasing of thin structures) and interpolates when enlarging.
    """
    square = np.asarray(output, dtype=np.float32)
    if square.ndim == 4 and square.shape[:2] == (1, 1):
        square = square[0, 0]
    if square.ndim != 2:
        raise ValueError(f"saliency output must be 1×1×S×S or S×S, got shape {output.shape}")
    height, width = hw
    resized = Image.fromarray(square, mode="F").resize((width, height), Image.Resampling.BILINEAR)
    # The head ends in a sigmoid, but bilinear resampling can overshoot by float rounding.
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


REWRITE_FOLDER = "cpu"
REWRITE_VERSION = 1  # of pipeline.stages.onnx_fp32.for_cpu's output: bump when it changes


def _model_for_cpu(path: Path) -> tuple[bytes | str, str | None]:
    """(what onnxruntime loads for ``path``, the output to read, or None to ask the session):
    the model rewritten for the CPU (``pipeline.stages.onnx_fp32.for_cpu``: a float16 export
    widened to float32, every graph output but the map dropped; the same map with less memory
    and time on the CPU), else the path. A file protobuf cannot parse goes to onnxruntime as
    it is, which names the problem.

    The rewrite is kept in the weights cache (``<cache>/cpu/``, keyed by the source's path, size
    and time) and later processes load that file: the same bytes, without the 0.4 s of parsing
    and rewriting at every start. Where the cache cannot be written the rewrite stays in memory.
    """
    from google.protobuf.message import DecodeError

    from pipeline.outputs import write_file
    from pipeline.stages.onnx_fp32 import for_cpu
    from pipeline.weights import derived_path

    cached = derived_path(path, REWRITE_FOLDER, ".onnx", REWRITE_VERSION)
    if cached.is_file():
        return str(cached), None  # its one output is the map
    try:
        model, output = for_cpu(path.read_bytes(), OUTPUT_NAME)
    except DecodeError:
        return str(path), None
    if model is None:
        return str(path), output
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        write_file(cached, model)  # atomic: another process sees no file or the whole file
    except OSError:  # a read-only or full cache: this process uses the rewrite in memory
        pass
    return model, output


def _release_freed_heap() -> None:
    """Give the heap's free pages back to the system (glibc's ``malloc_trim``; elsewhere a
    no-op). Parsing and loading the model frees a few hundred MB in chunks that glibc keeps
    for reuse; nothing of the later passes reuses them (their buffers live in onnxruntime's
    arena), so they would only count in the process's resident memory: 250 MB for
    ``isnet_medium.onnx``."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        trim = getattr(libc, "malloc_trim", None)
    except OSError:
        return
    if trim is not None:
        trim(0)


class IsnetSaliency:
    """``SaliencyModel`` backed by an ISNet ONNX file.

    Args:
        weights_path: the ``.onnx`` file (e.g. ``shared/weights/isnet_medium.onnx``).
        input_px: side of the square network input in pixels; must match a fixed-size export.
        threads: onnxruntime intra-op threads; 0 = all CPU cores.
        normalization: ``"rembg"`` or ``"imgly"`` pre-processing (see the module docstring).

    ``predict`` may be called from several threads at once (onnxruntime sessions are
    thread-safe); each pass then holds its own activations (about 0.5 GB at 1024²).
    """

    def __init__(
        self,
        weights_path: Path,
        input_px: int = 1024,
        threads: int = 0,
        normalization: str = "rembg",
    ) -> None:
        import onnxruntime as ort

        path = Path(weights_path)
        if not path.is_file():
            raise ValueError(f"ISNet weights not found: {path}")
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}"
            )
        if input_px < 32:
            raise ValueError(f"saliency input_px must be ≥ 32, got {input_px}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        # One image at a time: parallel branches do not pay for their extra threads on CPU.
        options.inter_op_num_threads = 1
        # No memory pattern: with it onnxruntime plans one block for every activation of the
        # 1024² pass; without it, freed activations are reused from the arena. Peak RSS of a
        # process running one isnet_medium.onnx pass (widened to float32): 1.69 GB with, 1.13 GB
        # without, at the same speed; two passes side by side (pipeline.batch.local): 1.5 GB.
        options.enable_mem_pattern = False
        try:
            model, output_name = _model_for_cpu(path)
            self.session = ort.InferenceSession(
                model, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime's own error types: one line naming the file
            detail = " ".join(str(exc).split()).replace(f"Load model from {path} failed:", "")
            raise ValueError(f"{path}: not a loadable ONNX model ({detail.strip()})") from exc
        _release_freed_heap()
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"{path.name}: expected one input, got {len(inputs)}")
        self.input_name = inputs[0].name
        shape = inputs[0].shape
        if len(shape) != 4:
            raise ValueError(f"{path.name}: expected an NCHW input, got shape {shape}")
        fixed = [side for side in shape[2:] if isinstance(side, int)]
        if fixed and any(side != input_px for side in fixed):
            raise ValueError(
                f"{path.name} has a fixed input of {shape[2]}×{shape[3]} px; "
                f"saliency.input_px={input_px} cannot be used with it"
            )
        outputs = [o.name for o in self.session.get_outputs()]
        # Prefer the head named "output"; exports without names put the final map first.
        self.output_name = output_name or (OUTPUT_NAME if OUTPUT_NAME in outputs else outputs[0])
        self.input_px = input_px
        self.normalization = normalization

    def predict(self, image: np.ndarray) -> np.ndarray:
        """``H×W×3 uint8`` RGB → salient-object map ``H×W float32`` in [0, 1]."""
        check_image(image)
        batch = preprocess(image, self.input_px, self.normalization)
        (output,) = self.session.run([self.output_name], {self.input_name: batch})
        return postprocess(output, image.shape[:2])
