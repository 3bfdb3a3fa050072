"""The keep policy's second step, with a salient-object map: fragments join the instance they
are part of (``pipeline.stages.select.KeepPolicy`` calls it).

A 320-px detector often splits one unusual subject into pieces: a breakdancer upside down is
found as a "person" for the legs, another for the torso and a "backpack" for the red shirt on
the floor. The ranker sees each piece alone and keeps one. The salient map sees the whole
dancer as one soft region, so after ``select_by_rules`` has chosen what to keep:

1. Seeds: the salient pixels (map ≥ ``SEED_AT``) of every kept instance.
2. Region: the 8-connected components of ``map ≥ threshold`` (a low value, 0.2) that hold a
   seed pixel: the kept subject's whole salient blob, faint parts (motion-blurred legs)
   included, but not a separate, merely in-focus crowd.
3. A dropped instance with at least ``min_share`` of its mask pixels in that region is a
   fragment of the kept instance whose region holds most of it: it takes that instance's role,
   and the reason names it. So does a rescued ``object`` (the soapbox cart under its riders).

The settings (``select.absorb_threshold``, ``select.absorb_min_share``) and what they were
measured to do are in the README ("Evaluation with the real detector").

Masks are ``H×W bool``; the map ``H×W float32`` in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import cv2
import numpy as np

from pipeline.types import Decision, Instance, Role, Selection, check_saliency, instance_ref

SEED_AT = 0.5  # a kept instance's pixels at or above this map value seed its region
KEPT_ROLES = (Role.MAIN, Role.INTERACTING, Role.KEPT)


def absorb_fragments(
    instances: Sequence[Instance],
    selection: Selection,
    saliency: np.ndarray,
    threshold: float,
    min_share: float,
) -> Selection:
    """``selection`` with dropped fragments of kept instances kept too (module docstring).

    Args:
        instances: the instances ``selection`` decided on, in the same order.
        selection: the rules' result (``pipeline.stages.select.select_by_rules``).
        saliency: ``H×W float32`` in [0, 1], the image's resolution.
        threshold: map value that bounds the grown region, in (0, SEED_AT].
        min_share: share of a dropped instance's mask that must lie in a kept instance's
            region, in (0, 1].

    Returns:
        A new Selection (same ambiguity and alternatives); ``selection`` when nothing joins.
    """
    if not 0.0 < threshold <= SEED_AT:
        raise ValueError(f"threshold must be in (0, {SEED_AT}], got {threshold}")
    if not 0.0 < min_share <= 1.0:
        raise ValueError(f"min_share must be in (0, 1], got {min_share}")
    if len(instances) != len(selection.decisions):
        raise ValueError(f"got {len(instances)} instances for {len(selection.decisions)} decisions")
    kept = [k for k, d in enumerate(selection.decisions) if d.role in KEPT_ROLES]
    dropped = [k for k, d in enumerate(selection.decisions) if d.role is Role.DROPPED]
    if not kept or not dropped:
        return selection
    hw = instances[0].mask.shape
    check_saliency(saliency, hw)
    count, labels = cv2.connectedComponents(
        (saliency >= threshold).astype(np.uint8), connectivity=8
    )
    seeds = saliency >= SEED_AT
    # owner[c] = the kept instance (index) whose salient pixels reach component c first, by
    # rank order of the kept list (the policy's order: best first)
    owner = np.full(count, -1, np.int64)
    for k in sorted(kept, key=lambda k: -float(instances[k].score)):
        components = np.unique(labels[instances[k].mask & seeds])
        components = components[(components > 0) & (owner[components] < 0)]
        owner[components] = k
    if (owner < 0).all():
        return selection
    decisions = list(selection.decisions)
    joined = 0
    for k in dropped:
        mask = instances[k].mask
        area_px = int(mask.sum())
        if area_px == 0:
            continue
        owners = owner[labels[mask]]
        owners = owners[owners >= 0]
        if owners.size < min_share * area_px:
            continue
        host = int(np.bincount(owners).argmax())
        share = owners.size / area_px
        reason = (
            f"part of {instance_ref(instances[host].id)}'s salient region ({share:.0%} inside); "
            f"alone: {decisions[k].reason}"
        )
        decisions[k] = Decision(decisions[host].role, reason)
        joined += 1
    return replace(selection, decisions=tuple(decisions)) if joined else selection
