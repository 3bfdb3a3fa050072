"""Class prior and person–object interaction cues.

A person is an instance labelled ``"person"`` (the COCO class name every detector here uses).
Interaction is measured between each non-person instance (an object) and each person on the
working grid (``pipeline.features.grid``); a held, ridden, worn or touched object touches the
person's mask, overlaps their box and sits where hands and feet reach.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from pipeline.features.grid import Grid, MaskView

PERSON_LABEL = "person"

# How often a class is what a photographer means as the subject (hand-set, 0–1). COCO names;
# anything unlisted gets CLASS_PRIOR_DEFAULT.
_LIVING = ("dog", "cat", "horse", "bird", "sheep", "cow", "elephant", "bear", "zebra", "giraffe")
_VEHICLES = ("bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat")
_CARRIED = (
    "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard",
    "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "cell phone", "book", "teddy bear",
    "laptop", "remote", "hair drier", "toothbrush", "scissors",
)  # fmt: skip
# furniture, fixtures and street furniture: usually the setting, not the subject
_SETTING = (
    "bench", "chair", "couch", "bed", "dining table", "toilet", "tv", "potted plant",
    "refrigerator", "oven", "sink", "microwave", "traffic light", "fire hydrant", "stop sign",
    "parking meter", "clock", "vase",
)  # fmt: skip
CLASS_PRIOR: dict[str, float] = {
    PERSON_LABEL: 1.0,  # people are the subject of most photos with people in them
    **dict.fromkeys(_LIVING, 0.8),  # animals are portrait subjects too
    **dict.fromkeys(_VEHICLES, 0.6),  # often the subject (car shots), often the background
    **dict.fromkeys(_CARRIED, 0.5),  # product shots, or props of a person
    **dict.fromkeys(_SETTING, 0.2),
    "object": 0.5,  # class-agnostic proposals (ground truth, saliency rescue): no evidence
}
CLASS_PRIOR_DEFAULT = 0.4  # food and other COCO classes

# share of the object's outline near the person at which contact counts as full (a ridden bike
# touches its rider along ~20–30 % of its outline, a held guitar along far more)
CONTACT_FULL_FRAC = 0.3
# contact distance as a share of the working-grid diagonal (≈ 8 px on a 1 MP image): masks of a
# held object and its holder rarely touch exactly
CONTACT_DIAG_FRAC = 0.006
# weights of the combined score; contact dominates because touching is the one cue that
# distinguishes a held object from one merely standing in front of or beside the person
WEIGHTS = {"contact": 0.45, "containment": 0.2, "box_iou": 0.15, "limbs": 0.2}


def class_features(label: str) -> dict[str, float]:
    """``is_person`` (1.0 or 0.0) and ``class_prior`` in [0, 1] from the table ``CLASS_PRIOR``."""
    return {
        "is_person": 1.0 if label == PERSON_LABEL else 0.0,
        "class_prior": CLASS_PRIOR.get(label, CLASS_PRIOR_DEFAULT),
    }


def _area(box: tuple[float, float, float, float]) -> float:
    x0, y0, x1, y1 = box
    return max(0.0, x1 - x0) * max(0.0, y1 - y0)


def _intersect(a, b) -> tuple[float, float, float, float]:
    return max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])


def limb_regions(person_box) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Where a person's arms and legs reach, as two ``(x0, y0, x1, y1)`` boxes (no keypoints).

    Upper limbs: from 0.3 box heights above the head (raised arms, umbrellas) to 0.7 down,
    0.3 box widths beyond each side. Lower limbs: the lower half and 0.1 heights below the
    feet (skateboards, bike wheels), 0.2 widths beyond each side.
    """
    x0, y0, x1, y1 = person_box
    w, h = x1 - x0, y1 - y0
    upper = (x0 - 0.3 * w, y0 - 0.3 * h, x1 + 0.3 * w, y0 + 0.7 * h)
    lower = (x0 - 0.2 * w, y0 + 0.5 * h, x1 + 0.2 * w, y1 + 0.1 * h)
    return upper, lower


def pair_cues(obj: MaskView, person: MaskView, contact_px: int) -> dict[str, float]:
    """Interaction cues of one object with one person, each in [0, 1].

    Returns:
        contact: share of the object's outline (frame pixels excluded) within ``contact_px``
            working pixels of the person's mask.
        containment: share of the object's box inside the person's box.
        box_iou: IoU of the two boxes.
        limbs: share of the object's box inside the person's limb regions (``limb_regions``).
        interaction: ``WEIGHTS``-weighted sum, contact first scaled by ``1 / CONTACT_FULL_FRAC``
            and capped at 1.
    """
    zero = dict.fromkeys(("contact", "containment", "box_iou", "limbs", "interaction"), 0.0)
    if obj.empty or person.empty:
        return zero
    outline = obj.boundary & ~obj.on_frame
    outline_px = int(outline.sum())
    contact = 0.0
    height, width = obj.mask.shape
    y0, y1 = max(0, obj.y0 - contact_px), min(height, obj.y1 + contact_px)
    x0, x1 = max(0, obj.x0 - contact_px), min(width, obj.x1 + contact_px)
    near = person.mask[y0:y1, x0:x1]
    if outline_px and near.any():
        size = 2 * contact_px + 1
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
        reach = cv2.dilate(np.ascontiguousarray(near).view(np.uint8), kernel).view(bool)
        reach = reach[obj.y0 - y0 : obj.y1 - y0, obj.x0 - x0 : obj.x1 - x0]
        contact = np.count_nonzero(outline & reach) / outline_px
    obj_box, person_box = obj.box, person.box
    inter = _area(_intersect(obj_box, person_box))
    obj_area = _area(obj_box)
    union = obj_area + _area(person_box) - inter
    upper, lower = limb_regions(person_box)
    in_limbs = (
        _area(_intersect(obj_box, upper))
        + _area(_intersect(obj_box, lower))
        - _area(_intersect(_intersect(obj_box, upper), lower))
    )
    cues = {
        "contact": float(contact),
        "containment": inter / obj_area,
        "box_iou": inter / union,
        "limbs": in_limbs / obj_area,
    }
    scaled = dict(cues, contact=min(1.0, cues["contact"] / CONTACT_FULL_FRAC))
    cues["interaction"] = float(sum(WEIGHTS[name] * scaled[name] for name in WEIGHTS))
    return cues


def interaction_features(
    views: Sequence[MaskView],
    labels: Sequence[str],
    ids: Sequence[int],
    grid: Grid,
    one_way: Sequence[bool] | None = None,
) -> list[dict[str, float]]:
    """Strongest person–object interaction of every instance.

    ``one_way[k]`` marks an object whose interaction counts for itself only (its person's cues
    are left as if it did not exist): a region rescued from the salient map (source
    ``"saliency"``) may be a held thing the detector missed, so it can be kept with its person,
    but it may as well be a salient scrap of a bystander, which must not make that bystander
    look like a subject holding something.

    Returns per instance:
        interaction: in [0, 1]; for an object the largest ``pair_cues`` interaction over the
            persons, for a person the largest over the (two-way) objects; 0 when there is no
            counterpart.
        contact: the ``contact`` share of that strongest pair, in [0, 1].
        partner_id: the ``Instance.id`` of that counterpart as a float, -1.0 when none (or
            when every pair scores 0).
    """
    if one_way is None:
        one_way = [False] * len(views)
    contact_px = max(2, round(CONTACT_DIAG_FRAC * grid.diag_px))
    persons = [k for k, label in enumerate(labels) if label == PERSON_LABEL]
    objects = [k for k, label in enumerate(labels) if label != PERSON_LABEL]
    best = [{"interaction": 0.0, "contact": 0.0, "partner_id": -1.0} for _ in views]
    for o in objects:
        for p in persons:
            cues = pair_cues(views[o], views[p], contact_px)
            value = cues["interaction"]
            if value <= 0.0:
                continue
            for me, other in ((o, p), (p, o)) if not one_way[o] else ((o, p),):
                if value > best[me]["interaction"]:
                    best[me] = {
                        "interaction": value,
                        "contact": cues["contact"],
                        "partner_id": float(ids[other]),
                    }
    return best
