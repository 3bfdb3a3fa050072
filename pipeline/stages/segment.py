"""Segment stage: Segment Anything refines each instance mask from its box.

One image embedding per image, one cheap mask decode per instance. Two back ends:

- ``SamSegmenter``: Meta's ``segment_anything`` (ViT-B/L/H) through its ``SamPredictor``.
- ``MobileSamSegmenter``: MobileSAM built and run by Ultralytics (``TinyViT`` encoder, ~3 s per
  1024² image on 2 CPU cores instead of ~20–40 s for ViT-B).

Both decode with ``multimask_output=False``: a box is an unambiguous prompt, for which the SAM
authors recommend the single-mask output (the three multimask outputs exist for ambiguous point
prompts, and picking among them by predicted IoU favours small parts of the object).

Both load checkpoints with ``pipeline.stages.safe_load.load_state_dict`` (a static check that the
pickle names only tensors, then ``torch.load(weights_only=True)``) into a model built without
weights, instead of the libraries' own loaders, which unpickle with ``weights_only=False``.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.config import SegmentModel
from pipeline.protocols import Segmenter
from pipeline.stages.safe_load import load_state_dict
from pipeline.stages.ultra import import_ultralytics, resolve_torch_device, restore_threads
from pipeline.types import Instance, check_image, check_mask

SEGMENTER_NAMES: tuple[str, ...] = typing.get_args(SegmentModel)  # declared in pipeline.config
SAM_MODELS = tuple(name for name in SEGMENTER_NAMES if name.startswith("sam_"))
SAM_INPUT_PX = 1024  # side of SAM's square encoder input (all variants, MobileSAM included)


def _load_into(module, state: dict, path: Path, model_name: str) -> None:
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ValueError(f"{path} does not hold {model_name} weights: {first}") from exc


def _check_instances(instances: Sequence[Instance], hw: tuple[int, int]) -> list[Instance]:
    instances = list(instances)
    for instance in instances:
        check_mask(instance.mask, hw, f"mask of instance {instance.id}")
    return instances


def _with_sam_mask(instance: Instance, logits, threshold: float) -> Instance:
    """``instance`` with ``soft_mask = sigmoid(logits)`` and ``mask = soft_mask > sigmoid(t)``.

    Args:
        logits: ``H×W`` float torch tensor of SAM mask logits at full image resolution.
        threshold: SAM's logit threshold (``mask_threshold``, 0 in both libraries).
    """
    import torch

    soft = torch.sigmoid(logits.float()).cpu().numpy().astype(np.float32, copy=False)
    # Thresholded on the float32 soft mask rather than the logits, so that the two always agree
    # (a logit of 1e-8 is "in" but its float32 sigmoid is exactly 0.5).
    mask = soft > np.float32(1.0 / (1.0 + np.exp(-threshold)))
    if not mask.any():
        # SAM found nothing in the box. An empty mask would make the instance vanish from every
        # later stage (features, ranking, layers) although the detector saw it, so keep the
        # detector's coarse mask and let selection judge it.
        return instance
    return instance.replace(mask=mask, soft_mask=soft)


class SamSegmenter:
    """Segment Anything (``segment_anything`` package) box-prompt refinement.

    Args:
        weights_path: the official ``sam_vit_*.pth`` state dict (or one of the same shapes).
        model: ``sam_vit_b``, ``sam_vit_l`` or ``sam_vit_h``.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        threads: torch CPU threads (0 = all cores), re-applied before each image.
    """

    def __init__(
        self, weights_path: Path, model: str = "sam_vit_b", device: str = "cpu", threads: int = 0
    ) -> None:
        if model not in SAM_MODELS:
            raise ValueError(
                f"unknown SAM model {model!r}; expected one of: {', '.join(SAM_MODELS)}"
            )
        self.threads = threads
        restore_threads(threads)
        self.device = resolve_torch_device(device)
        state = load_state_dict(weights_path, model)
        from segment_anything import SamPredictor, sam_model_registry

        # checkpoint=None: the registry builder's own torch.load would unpickle without
        # weights_only; the state dict was loaded safely above.
        sam = sam_model_registry[model.removeprefix("sam_")](checkpoint=None)
        _load_into(sam, state, Path(weights_path), model)
        sam.to(self.device).eval()
        self.model_name = model
        self.predictor = SamPredictor(sam)

    def segment(self, image: np.ndarray, instances: Sequence[Instance]) -> list[Instance]:
        """The same instances, in order, with SAM's ``mask`` (``H×W bool``) and ``soft_mask``.

        ``soft_mask`` is the sigmoid of SAM's low-resolution logits upsampled to ``H×W``
        (``float32`` in [0, 1]); ``mask`` is ``soft_mask > 0.5`` (logit > 0). An instance whose
        SAM mask is empty keeps its detector mask and ``soft_mask``.
        """
        import torch

        check_image(image)
        instances = _check_instances(instances, image.shape[:2])
        if not instances:
            return []  # no prompt, no reason to pay for the image embedding
        restore_threads(self.threads)
        predictor = self.predictor
        threshold = float(predictor.model.mask_threshold)
        try:
            predictor.set_image(image)  # RGB uint8; the one image embedding
            refined = []
            for instance in instances:
                box = torch.as_tensor(instance.xyxy[None], dtype=torch.float32)
                box = predictor.transform.apply_boxes_torch(box, predictor.original_size)
                logits, _, _ = predictor.predict_torch(
                    None,
                    None,
                    boxes=box.to(predictor.device),
                    multimask_output=False,
                    return_logits=True,  # full-resolution logits, for the soft mask
                )
                refined.append(_with_sam_mask(instance, logits[0, 0], threshold))
        finally:
            predictor.reset_image()  # frees the embedding between images
        return refined


class MobileSamSegmenter:
    """MobileSAM through Ultralytics: its ``Predictor`` encodes the image once per image.

    The model is built by Ultralytics' ``build_mobile_sam`` and its ``Predictor`` does the
    letterbox, normalisation and encoding (``set_image``); each box is then decoded with the
    model's prompt encoder and mask decoder on the cached embedding. ``ultralytics.SAM(path)`` is
    not used: it unpickles with ``weights_only=False``, requires the file name to end in
    ``mobile_sam.pt``, and its prompt path drops masks whose predicted IoU is below ``conf``,
    which would break the one-mask-per-instance contract.

    Args:
        weights_path: MobileSAM state dict (``mobile_sam.pt`` as Ultralytics distributes it).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        threads: torch CPU threads (0 = all cores), restored after Ultralytics changes them.
    """

    def __init__(self, weights_path: Path, device: str = "cpu", threads: int = 0) -> None:
        self.threads = threads
        restore_threads(threads)
        self.device = resolve_torch_device(device)
        state = load_state_dict(weights_path, "mobile_sam")
        import_ultralytics()
        from ultralytics.models.sam import Predictor
        from ultralytics.models.sam.build import build_mobile_sam

        model = build_mobile_sam()  # no checkpoint: random init, replaced just below
        _load_into(model, state, Path(weights_path), "mobile_sam")
        self.predictor = Predictor(
            overrides={"imgsz": SAM_INPUT_PX, "device": self.device, "verbose": False}
        )
        try:
            self.predictor.setup_model(model, verbose=False)
        finally:
            restore_threads(threads)
        self.model_name = "mobile_sam"

    def segment(self, image: np.ndarray, instances: Sequence[Instance]) -> list[Instance]:
        """The same instances, in order, with MobileSAM's ``mask`` and ``soft_mask``.

        Same contract as :meth:`SamSegmenter.segment`.
        """
        import torch
        from torch.nn import functional

        check_image(image)
        height, width = image.shape[:2]
        instances = _check_instances(instances, (height, width))
        if not instances:
            return []
        predictor = self.predictor
        model = predictor.model
        # Ultralytics letterboxes to side×side without centring: resize by `gain`, pad
        # bottom/right. Boxes scale by the same gain; logits are cropped to the resized part.
        side = SAM_INPUT_PX
        gain = min(side / height, side / width)
        resized_hw = (max(round(height * gain), 1), max(round(width * gain), 1))
        threshold = float(model.mask_threshold)
        try:
            with torch.inference_mode():
                predictor.set_image(np.ascontiguousarray(image[..., ::-1]))  # expects BGR
                features = predictor.features
                dense_pe = model.prompt_encoder.get_dense_pe()
                refined = []
                for instance in instances:
                    box = torch.as_tensor(instance.xyxy[None] * gain, dtype=torch.float32)
                    sparse, dense = model.prompt_encoder(
                        points=None, boxes=box.to(predictor.device), masks=None
                    )
                    low_res, _ = model.mask_decoder(
                        image_embeddings=features,
                        image_pe=dense_pe,
                        sparse_prompt_embeddings=sparse,
                        dense_prompt_embeddings=dense,
                        multimask_output=False,
                    )
                    # As segment_anything's postprocess_masks: 256² → input side², crop the
                    # unpadded part, then resize to the original image.
                    logits = functional.interpolate(
                        low_res.float(), (side, side), mode="bilinear", align_corners=False
                    )
                    logits = logits[..., : resized_hw[0], : resized_hw[1]]
                    logits = functional.interpolate(
                        logits, (height, width), mode="bilinear", align_corners=False
                    )
                    refined.append(_with_sam_mask(instance, logits[0, 0], threshold))
        finally:
            predictor.reset_image()
            restore_threads(self.threads)
        return refined


def build_segmenter(
    model: str, weights_path: Path | None, device: str = "cpu", threads: int = 0
) -> Segmenter | None:
    """The segmenter named by ``segment.model``: ``None`` for ``none``.

    Raises ``ValueError`` listing the valid names for an unknown model, or when a model other
    than ``none`` is given no weights.
    """
    if model not in SEGMENTER_NAMES:
        raise ValueError(
            f"unknown segment model {model!r}; expected one of: {', '.join(SEGMENTER_NAMES)}"
        )
    if model == "none":
        return None
    if weights_path is None:
        raise ValueError(f"segment model {model!r} needs a weights file")
    if model == "mobile_sam":
        return MobileSamSegmenter(Path(weights_path), device=device, threads=threads)
    return SamSegmenter(Path(weights_path), model=model, device=device, threads=threads)
