"""Per-instance cues for ranking and the keep policy: plain functions, one per cue.

``compute_features(image, instances, saliency)`` returns copies of the instances with
``features`` holding every name in ``FEATURE_NAMES`` (always all of them, as floats):

===================  =========================================================  ==========
name                 meaning                                                    range
===================  =========================================================  ==========
sharpness_rel_image  RMS Laplacian vs the whole image, ``r / (1 + r)``          [0, 1)
sharpness_rel_max    RMS Laplacian / the sharpest instance's                    [0, 1]
blur                 defocus: coarseness of the finest detail                   [0, 1]
defocus_log          the same on a log scale (tells strong defocus apart)       [0, 1]
motion_blur          gradient-direction coherence                               [0, 1]
truncation           share of the mask outline on the image frame               [0, 1]
trunc_<side>         the same for left / top / right / bottom                   [0, 1]
area_frac            mask area / image area                                     [0, 1]
centrality           1 at the image centre, 0 at a corner (mask centroid)       [0, 1]
bottom_frac          lowest mask row / image height                             [0, 1]
box_fill             mask area / its box area                                   [0, 1]
in_front             share of overlapping neighbours it occludes (0.5: none)    [0, 1]
is_person            1 for ``label == "person"``                                {0, 1}
class_prior          hand-set subject prior of the class                        [0, 1]
det_score            detector confidence, copied                                [0, 1]
interaction          strongest person–object interaction                        [0, 1]
contact              outline share touching that partner                        [0, 1]
partner_id           ``Instance.id`` of that partner, -1 when none              id or -1
sal_mean_inside      mean saliency inside the mask (0 without a map)            [0, 1]
sal_share            share of the image's salient mass in the mask              [0, 1]
sal_cover            share of the mask with saliency > 0.5                      [0, 1]
has_saliency         1 when a saliency map was given                            {0, 1}
===================  =========================================================  ==========

Details and units are in each function's docstring (``focus``, ``geometry``, ``interaction``,
``salient``). Cues are computed on a working grid of at most ~1.2 MP (``grid``), so a 12 MP
photo costs about what a 1 MP one does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.features.focus import focus_features, focus_maps, focus_raw
from pipeline.features.geometry import in_front_features, layout_features, truncation_features
from pipeline.features.grid import make_grid, mask_view, work_grey
from pipeline.features.interaction import class_features, interaction_features
from pipeline.features.salient import saliency_features
from pipeline.types import Instance, check_image, check_mask, check_saliency

FEATURE_NAMES: tuple[str, ...] = (
    "sharpness_rel_image",
    "sharpness_rel_max",
    "blur",
    "defocus_log",
    "motion_blur",
    "truncation",
    "trunc_left",
    "trunc_top",
    "trunc_right",
    "trunc_bottom",
    "area_frac",
    "centrality",
    "bottom_frac",
    "box_fill",
    "in_front",
    "is_person",
    "class_prior",
    "det_score",
    "interaction",
    "contact",
    "partner_id",
    "sal_mean_inside",
    "sal_share",
    "sal_cover",
    "has_saliency",
)

__all__ = ["FEATURE_NAMES", "compute_features"]


def compute_features(
    image: np.ndarray,
    instances: Sequence[Instance],
    saliency: np.ndarray | None = None,
) -> list[Instance]:
    """Copies of ``instances`` (same order) with ``features`` holding every ``FEATURE_NAMES`` cue.

    Args:
        image: ``H×W×3 uint8`` RGB.
        instances: instances whose ``mask`` is ``H×W bool``; existing features are replaced.
        saliency: optional ``H×W float32`` salient-object map in [0, 1].

    Raises:
        ValueError: a bad image, mask or map shape/dtype (naming it).
    """
    check_image(image)
    hw = image.shape[:2]
    for inst in instances:
        check_mask(inst.mask, hw, f"instance {inst.id} mask")
    if saliency is not None:
        check_saliency(saliency, hw)
    if not instances:
        return []
    grid = make_grid(hw)
    maps = focus_maps(work_grey(image, grid))
    views = [mask_view(grid.sample(inst.mask)) for inst in instances]
    saliency_work = None if saliency is None else grid.sample(saliency)

    focus = focus_features([focus_raw(maps, view) for view in views], maps.image_lap_rms)
    in_front = in_front_features(views)
    labels = [inst.label for inst in instances]
    ids = [inst.id for inst in instances]
    one_way = [inst.source == "saliency" for inst in instances]
    interaction = interaction_features(views, labels, ids, grid, one_way)
    out = []
    for k, (inst, view) in enumerate(zip(instances, views, strict=True)):
        values: dict[str, float] = {
            **focus[k],
            **truncation_features(view, grid.work_hw),
            **layout_features(view, grid.work_hw),
            **in_front[k],
            **class_features(inst.label),
            "det_score": float(inst.det_score),
            **interaction[k],
            **saliency_features(view, saliency_work),
        }
        if set(values) != set(FEATURE_NAMES):
            # a cue function and FEATURE_NAMES disagree: a bug here, never the caller's input
            diff = sorted(set(values) ^ set(FEATURE_NAMES))
            raise RuntimeError(f"feature names mismatch: {diff}")
        out.append(inst.replace(features={name: float(values[name]) for name in FEATURE_NAMES}))
    return out
