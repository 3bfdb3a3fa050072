"""An Ultralytics YOLO-seg ONNX export run with onnxruntime alone: no torch, no Ultralytics.

On a CPU this is what ``detect.weights=…/x.onnx`` runs (``pipeline.api.Remover.detector``);
``pipeline.stages.detect.YoloDetector`` keeps ``.pt`` checkpoints and GPUs. Importing torch
costs a process about 470 MB of resident memory and a second of start-up, which a batch of
small photos beside rembg cannot afford (README, "Speed"). The steps are Ultralytics' own
(8.4: ``LetterBox``, ``SegmentationPredictor.postprocess``, ``non_max_suppression``,
``scale_boxes``, ``process_mask_native``, ``scale_masks``, ``crop_mask``) in numpy and OpenCV,
so both paths give the same instances (``tests/test_onnx_seg.py`` compares them):

1. letterbox: resize with the aspect kept (``cv2.INTER_LINEAR``) into ``imgsz × imgsz``,
   centred, padded with grey 114; RGB, ``/ 255``, NCHW float32;
2. the export's ``output0`` ``1×(4+C+M)×A`` (box centre and size, C class scores, M mask
   coefficients per anchor) and ``output1`` ``1×M×h×w`` mask prototypes;
3. candidates with a best class score above ``conf``, class-aware greedy NMS at ``iou``, at
   most ``max_det``;
4. boxes back to the photo (padding removed, divided by the gain, clipped); masks: coefficients
   × prototypes, the padding cropped, logits resized bilinearly to the photo, ``> 0``, zero
   outside the box; instances whose mask is empty are dropped.

When no instance is left, steps 3–4 run again on the same network output with
``rescue_conf`` instead of ``conf`` (``DetectConfig.rescue_conf``; Ultralytics' path runs the
network again) and the most confident instance is kept: the photo gets the detector's best
guess rather than nothing.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np

from pipeline.config import DetectConfig
from pipeline.types import check_image

PAD_VALUE = 114  # Ultralytics' letterbox grey
MAX_NMS = 30000  # candidates kept for NMS, by score
CLASS_OFFSET_PX = 7680  # Ultralytics' max_wh: boxes of different classes never overlap


def letterbox(image: np.ndarray, side: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """``H×W×3 uint8`` → ``side×side×3 uint8`` (aspect kept, centred, grey padding) and the
    content box ``(top, left, new_h, new_w)`` in the letterboxed image."""
    import cv2

    height, width = image.shape[:2]
    gain = min(side / height, side / width)
    new_w, new_h = max(round(width * gain), 1), max(round(height * gain), 1)
    resized = image
    if (new_w, new_h) != (width, height):
        resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    dw, dh = (side - new_w) / 2, (side - new_h) / 2
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    padded = cv2.copyMakeBorder(
        resized, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3
    )
    return padded, (top, left, new_h, new_w)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS as ``torchvision.ops.nms``: indices of kept ``(N, 4)`` xyxy boxes, highest
    score first; a box is dropped when its IoU with a kept one exceeds ``iou_threshold``."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1) * (y2 - y1)
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        width = np.clip(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0, None)
        height = np.clip(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0, None)
        inter = width * height
        iou = inter / (areas[best] + areas[rest] - inter)
        order = rest[~(iou > iou_threshold)]
    return np.asarray(keep, dtype=np.int64)


def _resize_float(array: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Bilinear resize (half-pixel centres, as torch's ``align_corners=False``) of ``(N, h, w)``
    float32 to ``(N, H, W)``."""
    import cv2

    height, width = size_hw
    if array.shape[1:] == (height, width):
        return array
    out = np.empty((len(array), height, width), np.float32)
    for k, plane in enumerate(array):
        out[k] = cv2.resize(plane, (width, height), interpolation=cv2.INTER_LINEAR)
    return out


def masks_native(
    protos: np.ndarray, coefficients: np.ndarray, boxes: np.ndarray, hw: tuple[int, int]
) -> np.ndarray:
    """``process_mask_native``: ``(N, H, W) bool`` masks at the photo's size ``hw`` from
    ``(M, mh, mw)`` prototypes, ``(N, M)`` coefficients and ``(N, 4)`` xyxy boxes in photo
    pixels."""
    channels, mh, mw = protos.shape
    height, width = hw
    logits = (coefficients @ protos.reshape(channels, -1)).reshape(-1, mh, mw)
    gain = min(4 * mh / height, 4 * mw / width)
    pad = (4 * mh - max(round(height * gain), 1)) | (4 * mw - max(round(width * gain), 1))
    factor = 4 // math.gcd(4, pad | pad // 2)  # upsample so the padding is cropped on whole pixels
    if factor > 1:
        logits = _resize_float(logits.astype(np.float32), (mh * factor, mw * factor))
    grid_h, grid_w = logits.shape[1:]
    gain = min(grid_h / height, grid_w / width)
    pad_w = (grid_w - max(round(width * gain), 1)) / 2
    pad_h = (grid_h - max(round(height * gain), 1)) / 2
    top, left = round(pad_h - 0.1), round(pad_w - 0.1)
    bottom, right = top + max(round(height * gain), 1), left + max(round(width * gain), 1)
    content = np.ascontiguousarray(logits[:, top:bottom, left:right], dtype=np.float32)
    masks = _resize_float(content, hw) > 0
    columns, rows = np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        masks[k] &= ((rows >= y1) & (rows < y2))[:, None] & ((columns >= x1) & (columns < x2))
    return masks


class OnnxSegDetector:
    """``Detector`` for an Ultralytics ``-seg`` ONNX export on the CPU (see the module
    docstring).

    Args:
        weights_path: the ``.onnx`` file (metadata ``task: segment``, or two outputs).
        config: ``conf``, ``iou``, ``imgsz`` (a fixed input side wins, as in ``YoloDetector``),
            ``max_det``, ``min_area_frac``.
        threads: onnxruntime intra-op threads; 0 = all cores.
    """

    def __init__(self, weights_path: Path, config: DetectConfig, threads: int = 0) -> None:
        import onnxruntime as ort

        from pipeline.stages.detect import check_detect_config

        path = Path(weights_path)
        self.config = check_detect_config(config)
        if not path.is_file():
            raise FileNotFoundError(f"detector weights not found: {path}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime's own error types; re-raised with the file named
            raise ValueError(f"cannot load ONNX detector {path}: {exc}") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        outputs = self.session.get_outputs()
        task = meta.get("task") or ("segment" if len(outputs) >= 2 else "detect")
        if task != "segment" or len(outputs) < 2:
            raise ValueError(
                f"{path} is a {task!r} model, not an instance segmentation (-seg) model"
            )
        self.input_name = self.session.get_inputs()[0].name
        shape = self.session.get_inputs()[0].shape
        fixed = len(shape) == 4 and isinstance(shape[2], int) and shape[2] == shape[3]
        self.imgsz = int(shape[2]) if fixed else config.imgsz
        try:
            names = ast.literal_eval(meta.get("names", "{}"))
        except (ValueError, SyntaxError):
            names = {}
        self._names = {int(k): str(v) for k, v in names.items()} if isinstance(names, dict) else {}
        self.path = path

    @property
    def names(self) -> dict[int, str]:
        """Class index → class name from the export's metadata."""
        return dict(self._names)

    def predict(self, image: np.ndarray) -> tuple[np.ndarray, ...]:
        """``(boxes (N, 4) float32 xyxy in photo pixels, scores (N,), classes (N,) int64, masks
        (N, H, W) bool)`` after NMS, highest score first, empty masks dropped."""
        check_image(image)
        return self._decode(self._forward(image), image.shape[:2], None)

    def _forward(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The network's ``(rows (anchors, 4 + classes + coefficients), protos)``."""
        padded, _ = letterbox(image, self.imgsz)
        batch = np.ascontiguousarray(padded.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
        output0, protos = self.session.run(None, {self.input_name: batch})[:2]
        return output0[0].T, protos

    def _decode(
        self,
        raw: tuple[np.ndarray, np.ndarray],
        hw: tuple[int, int],
        conf: float | None,
        max_det: int | None = None,
    ) -> tuple[np.ndarray, ...]:
        """``predict``'s result from the network's raw output (``_forward``), at most
        ``max_det`` (default ``config.max_det``) detections."""
        rows, protos = raw
        height, width = hw
        conf = self.config.conf if conf is None else conf
        n_coeff = protos.shape[1]
        n_classes = rows.shape[1] - 4 - n_coeff
        class_scores = rows[:, 4 : 4 + n_classes]
        scores = class_scores.max(axis=1)
        candidates = np.flatnonzero(scores > conf)
        if len(candidates) > MAX_NMS:
            candidates = candidates[np.argsort(-scores[candidates], kind="stable")[:MAX_NMS]]
        rows, scores = rows[candidates], scores[candidates]
        classes = class_scores[candidates].argmax(axis=1)
        centre, size = rows[:, :2], rows[:, 2:4]
        boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
        keep = nms(boxes + classes[:, None] * CLASS_OFFSET_PX, scores, self.config.iou)
        keep = keep[: self.config.max_det if max_det is None else max_det]
        boxes = _to_photo(boxes[keep], self.imgsz, (height, width))
        coefficients = rows[keep, 4 + n_classes :]
        masks = masks_native(protos[0], coefficients, boxes, (height, width))
        found = masks.any(axis=(1, 2))
        return (
            boxes[found],
            scores[keep][found],
            classes[keep][found].astype(np.int64),
            masks[found],
        )

    def detect(self, image: np.ndarray):
        """Instances found in ``image``, as ``YoloDetector.detect`` returns them: when none
        reaches ``conf``, the most confident one at or above ``rescue_conf`` (decoded from the
        same pass)."""
        from pipeline.stages.detect import instances_from

        check_image(image)
        raw = self._forward(image)
        hw = image.shape[:2]
        instances = instances_from(*self._decode(raw, hw, None), self._names, self.config)
        rescue_conf = self.config.rescue_conf
        if not instances and rescue_conf < self.config.conf:
            found = self._decode(raw, hw, rescue_conf, max_det=1)  # no masks for the others
            instances = instances_from(*found, self._names, self.config, rescue_conf)
        return instances


def _to_photo(boxes: np.ndarray, side: int, hw: tuple[int, int]) -> np.ndarray:
    """``scale_boxes``: xyxy in the letterboxed ``side × side`` image → photo pixels, clipped."""
    height, width = hw
    gain = min(side / height, side / width)
    new_h, new_w = max(round(height * gain), 1), max(round(width * gain), 1)
    pad_x, pad_y = round((side - new_w) / 2 - 0.1), round((side - new_h) / 2 - 0.1)
    out = boxes.astype(np.float32).copy()
    out[:, [0, 2]] = np.clip((out[:, [0, 2]] - pad_x) / (new_w / width), 0, width)
    out[:, [1, 3]] = np.clip((out[:, [1, 3]] - pad_y) / (new_h / height), 0, height)
    return out
