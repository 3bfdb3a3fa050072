"""Detect stage: Ultralytics YOLO instance segmentation proposes instances.

``YoloDetector`` accepts any Ultralytics ``-seg`` checkpoint (``.pt``) and ONNX exports of one
(e.g. the int8 ``yolov8n-seg_int8.onnx``, whose input is fixed at 320×320). It turns Ultralytics'
``Results`` into :class:`pipeline.types.Instance` objects at this boundary: RGB in, BGR only for
Ultralytics, masks ``H×W bool`` at full image resolution.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from pipeline.config import DetectConfig
from pipeline.stages.safe_load import CheckpointRefusedError, pickle_globals
from pipeline.stages.ultra import (
    import_ultralytics,
    load_yolo,
    resolve_torch_device,
    restore_threads,
)
from pipeline.types import Instance, check_image

LOG = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = (".pt", ".onnx")


def check_detect_config(config: DetectConfig) -> DetectConfig:
    """Return ``config`` if its values are usable, else raise ``ValueError`` naming the key."""
    if not 0.0 <= config.conf <= 1.0:
        raise ValueError(f"detect.conf must be in [0, 1], got {config.conf}")
    if not 0.0 <= config.rescue_conf <= 1.0:
        raise ValueError(f"detect.rescue_conf must be in [0, 1], got {config.rescue_conf}")
    if not 0.0 < config.iou <= 1.0:
        raise ValueError(f"detect.iou must be in (0, 1], got {config.iou}")
    if config.imgsz < 32:
        raise ValueError(f"detect.imgsz must be at least 32 pixels, got {config.imgsz}")
    if config.max_det < 1:
        raise ValueError(f"detect.max_det must be at least 1, got {config.max_det}")
    if not 0.0 <= config.min_area_frac < 1.0:
        raise ValueError(f"detect.min_area_frac must be in [0, 1), got {config.min_area_frac}")
    return config


def onnx_task_and_side(path: Path) -> tuple[str | None, int | None]:
    """``(task, fixed input side in pixels)`` of an ONNX export; either may be ``None``.

    ``task`` comes from the metadata Ultralytics writes on export; without metadata a model with
    two or more outputs (boxes + mask prototypes) is taken as ``segment``. The side is ``None``
    when the input shape is dynamic or not square.
    """
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own error types; re-raised with the file named
        raise ValueError(f"cannot load ONNX detector {path}: {exc}") from exc
    task = session.get_modelmeta().custom_metadata_map.get("task")
    if task is None:
        task = "segment" if len(session.get_outputs()) >= 2 else "detect"
    shape = session.get_inputs()[0].shape  # [batch, channels, height, width]
    side = None
    if len(shape) == 4 and isinstance(shape[2], int) and shape[2] == shape[3]:
        side = int(shape[2])
    return task, side


# what an Ultralytics checkpoint may name; anything else is shown in the refusal message
_ULTRALYTICS_CHECKPOINT_MODULES = ("torch.", "ultralytics.", "collections.", "numpy.", "pathlib.")


def _load_checkpoint(path: Path):
    """``YOLO`` for a ``.pt`` loaded with weights-only unpickling (``ultra.load_yolo``).

    Raises ``CheckpointRefusedError`` (one line: the file, the globals that would need code, how to
    convert it) when the pickle names anything beyond Ultralytics' model classes, and
    ``ValueError`` naming the file for any other load failure.
    """
    try:
        return load_yolo(path)
    except CheckpointRefusedError:
        raise
    except Exception as exc:  # Ultralytics' and torch's error types; re-raised with the file named
        chain = [exc, exc.__cause__, exc.__context__]
        refused = any(
            type(e).__name__ == "UnpicklingError" or "outside the supported" in str(e)
            for e in chain
            if e is not None
        ) or isinstance(exc, ModuleNotFoundError)
        if refused:
            with open(path, "rb") as file:
                try:
                    names = pickle_globals(file, path)
                except CheckpointRefusedError as inner:  # not even a torch.save archive
                    raise CheckpointRefusedError(
                        f"cannot load detector checkpoint {inner}"
                    ) from exc
            foreign = sorted(n for n in names if not n.startswith(_ULTRALYTICS_CHECKPOINT_MODULES))
            shown = ", ".join(foreign[:4]) or "classes outside Ultralytics' allow-list"
            raise CheckpointRefusedError(
                f"{path}: refused: loading this checkpoint would run code from the file (it "
                f"references {shown}); layercut loads .pt files weights-only; export it to ONNX "
                "in an environment you trust (yolo export model=FILE format=onnx) and set "
                "detect.weights to the .onnx file"
            ) from exc
        first = " ".join((str(exc).strip().splitlines() or [type(exc).__name__])[0].split())
        first = first.replace("ERROR ❌️ ", "")
        raise ValueError(f"cannot load detector checkpoint {path}: {first}") from exc


class YoloDetector:
    """Ultralytics YOLO-seg proposals as ``Instance`` objects (implements ``Detector``).

    Args:
        weights_path: a ``.pt`` Ultralytics ``-seg`` checkpoint or an ONNX export of one.
        config: thresholds and sizes (``conf``, ``iou``, ``imgsz``, ``max_det``,
            ``min_area_frac``).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        threads: torch CPU threads to restore after each predict (0 = all cores).

    Raises:
        FileNotFoundError: the file does not exist (checked first: Ultralytics would otherwise
            try to download a file of that name).
        ValueError: the file is not a segmentation model, has an unsupported suffix, or cannot
            be loaded; the message names the file.
    """

    def __init__(
        self, weights_path: Path, config: DetectConfig, device: str = "cpu", threads: int = 0
    ) -> None:
        path = Path(weights_path)
        self.config = check_detect_config(config)
        self.device = resolve_torch_device(device)
        self.threads = threads
        restore_threads(threads)  # validates threads before the slow part
        if not path.is_file():
            raise FileNotFoundError(f"detector weights not found: {path}")
        suffix = path.suffix.lower()
        if suffix not in SUPPORTED_SUFFIXES:
            raise ValueError(
                f"detector weights {path} must be a .pt checkpoint or an .onnx export, "
                f"got suffix {suffix!r}"
            )
        self.imgsz = config.imgsz
        ultralytics = import_ultralytics()
        if suffix == ".onnx":
            task, side = onnx_task_and_side(path)
            if task != "segment":
                raise ValueError(
                    f"{path} is a {task!r} model, not an instance segmentation (-seg) model"
                )
            if side is not None and side != config.imgsz:
                # A static ONNX graph runs at exactly one size; any other imgsz fails inside
                # onnxruntime with a shape error, so use the graph's and say so.
                LOG.warning(
                    "%s has a fixed %d×%d input; using imgsz=%d instead of detect.imgsz=%d",
                    path.name,
                    side,
                    side,
                    side,
                    config.imgsz,
                )
                self.imgsz = side
            self.model = ultralytics.YOLO(str(path), task="segment")
        else:
            self.model = _load_checkpoint(path)
            if self.model.task != "segment":
                raise ValueError(
                    f"{path} is a {self.model.task!r} model, not an instance segmentation "
                    "(-seg) model"
                )
        restore_threads(threads)
        self.path = path

    @property
    def names(self) -> dict[int, str]:
        """Class index → class name of the loaded model."""
        return dict(self.model.names)

    def detect(self, image: np.ndarray) -> list[Instance]:
        """Instances found in ``image`` (``H×W×3 uint8`` RGB).

        Returns:
            Instances sorted by ``det_score`` descending with ids ``0..N-1``: ``xyxy`` ``(4,)
            float32`` in original pixels, ``mask`` ``H×W bool`` at full resolution, ``label``
            from the model's names. Instances with ``det_score < conf`` or mask area below
            ``min_area_frac`` of the image are dropped; at most ``max_det`` are returned.
            When none is left, the network runs again at ``rescue_conf`` and the most confident
            instance found at or above it is returned alone (the best candidate rather than
            nothing; its ``det_score`` below ``conf`` says so downstream).
        """
        check_image(image)
        instances = self._detect_at(image, self.config.conf, self.config.max_det)
        if not instances and self.config.rescue_conf < self.config.conf:
            # one detection asked for: no full-resolution masks made for guesses not kept
            instances = self._detect_at(image, self.config.rescue_conf, 1)
        return instances

    def _detect_at(self, image: np.ndarray, conf: float, max_det: int) -> list[Instance]:
        """``detect`` with ``conf`` as the minimum confidence and at most ``max_det``."""
        height, width = image.shape[:2]
        bgr = np.ascontiguousarray(image[..., ::-1])  # Ultralytics reads numpy arrays as BGR
        try:
            results = self.model.predict(
                bgr,
                conf=conf,
                iou=self.config.iou,
                imgsz=self.imgsz,
                max_det=max_det,
                retina_masks=True,  # masks computed at the original resolution
                device=self.device,
                verbose=False,
                save=False,
            )
        finally:
            restore_threads(self.threads)
        result = results[0]
        if result.masks is None or len(result.boxes) == 0:
            return []
        masks = result.masks.data
        if tuple(masks.shape[1:]) != (height, width):
            raise RuntimeError(
                f"Ultralytics returned masks of shape {tuple(masks.shape[1:])} for an image of "
                f"{(height, width)}; expected full-resolution masks (retina_masks=True)"
            )
        boxes = result.boxes.xyxy.cpu().numpy().astype(np.float32)
        scores = result.boxes.conf.cpu().numpy().astype(np.float64)
        classes = result.boxes.cls.cpu().numpy().astype(np.int64)
        masks_hw = (masks > 0.5).cpu().numpy()
        return instances_from(boxes, scores, classes, masks_hw, result.names, self.config, conf)


def instances_from(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    masks: np.ndarray,
    names: dict[int, str],
    config: DetectConfig,
    conf: float | None = None,
) -> list[Instance]:
    """Detections → ``Instance``s sorted by ``det_score`` descending with ids ``0..N-1``.

    ``boxes`` ``(N, 4)`` xyxy in photo pixels, ``scores`` ``(N,)``, ``classes`` ``(N,)`` int,
    ``masks`` ``(N, H, W) bool`` at the photo's size. Detections with ``score < conf`` (default
    ``config.conf``; the rescue passes ``config.rescue_conf``), an empty
    mask or a mask area below ``min_area_frac`` of the image are dropped; at most ``max_det``
    are returned. The one rule for every detector backend (``YoloDetector``,
    ``pipeline.stages.onnx_seg.OnnxSegDetector``)."""
    height, width = masks.shape[1:]
    areas_px = masks.sum(axis=(1, 2))
    min_area_px = config.min_area_frac * height * width
    conf = config.conf if conf is None else conf
    instances: list[Instance] = []
    for index in np.argsort(-np.asarray(scores, np.float64), kind="stable"):
        if len(instances) == config.max_det:
            break
        if scores[index] < conf or areas_px[index] < min_area_px:
            continue
        if areas_px[index] == 0:
            continue  # an empty mask is no instance, even with min_area_frac = 0
        class_id = int(classes[index])
        instances.append(
            Instance(
                id=len(instances),
                xyxy=np.asarray(boxes[index], np.float32),
                label=str(names.get(class_id, class_id)),
                class_id=class_id,
                det_score=float(scores[index]),
                mask=np.asarray(masks[index], bool),
            )
        )
    return instances
