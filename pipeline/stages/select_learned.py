"""The keep policy's steps around the learned keep decision (``pipeline.stages.select``
calls them): ``select_learned`` turns the fusion stage's decision into roles and reasons for
``--keep main``, ``learned_partners`` lets it keep a held object under ``--keep interacting``,
and ``never_empty`` keeps the best candidate, and says so, when a policy would keep nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from pipeline.config import SelectConfig
from pipeline.features.interaction import PERSON_LABEL
from pipeline.stages.fusion_model import KEEP_AT
from pipeline.types import Decision, Instance, KeepMode, Role, Selection, instance_ref


def select_learned(
    instances: Sequence[Instance], config: SelectConfig, rules: Selection
) -> Selection:
    """``--keep main`` as the fusion stage decided it (``pipeline.stages.fusion``: features
    ``keep``, ``keep_prob``, ``keep_at``, ``kept_area_rel``, ``keep_fallback``). A kept object
    whose partner is a kept person it interacts with (``min_interaction``) is ``INTERACTING``,
    every other kept instance ``MAIN``. Ambiguity and alternatives are taken from ``rules``
    (the rules' selection of the same instances)."""
    for inst in instances:
        if "keep" not in inst.features or "keep_prob" not in inst.features:
            raise ValueError(
                f"instance {inst.id} carries no keep decision; run the fusion stage "
                "(select.method = learned) before select, or set select.method = rules"
            )
    kept = {inst.id for inst in instances if inst.features["keep"] > 0}
    person_ids = {inst.id for inst in instances if inst.label == PERSON_LABEL}
    decisions = []
    fallback = ""
    for inst in instances:
        f = inst.features
        p = float(f["keep_prob"])
        at = float(f.get("keep_at", KEEP_AT))
        if inst.id not in kept:
            decisions.append(Decision(Role.DROPPED, f"keep decision {p:.2f} < {at:.2f}"))
            continue
        if f.get("keep_fallback", 0.0) > 0:
            fallback = (
                "no candidate reached its keep threshold; kept the most probable "
                f"one ({inst.label}, {p:.2f}) rather than nothing"
            )
            decisions.append(Decision(Role.MAIN, f"never empty: {fallback}"))
            continue
        share = float(f.get("kept_area_rel", 1.0))
        reason = f"keep decision {p:.2f} ≥ {at:.2f}"
        if abs(share - 1.0) > 0.005:
            reason += f", {share:.0%} of its detected area"
        partner = int(f["partner_id"])
        held = (
            inst.label != PERSON_LABEL
            and partner in kept & person_ids
            and f["interaction"] >= config.min_interaction
        )
        if held:
            reason = f"held/ridden by person {instance_ref(partner)} ({reason})"
        decisions.append(Decision(Role.INTERACTING if held else Role.MAIN, reason))
    return Selection(tuple(decisions), rules.ambiguity, rules.alternatives, fallback)


def learned_partners(instances: Sequence[Instance], selection: Selection) -> Selection:
    """``--keep interacting`` with the learned decision: an object the decision keeps whose
    partner (``partner_id``, any interaction) is a kept person is kept with that person too."""
    kept_people = {
        inst.id
        for inst, d in zip(instances, selection.decisions, strict=True)
        if d.role.kept and inst.label == PERSON_LABEL
    }
    decisions = list(selection.decisions)
    for k, inst in enumerate(instances):
        f = inst.features
        partner = int(f["partner_id"])
        if decisions[k].role.kept or f.get("keep", 0.0) <= 0 or partner not in kept_people:
            continue
        if f["interaction"] <= 0:
            continue
        decisions[k] = Decision(
            Role.INTERACTING,
            f"kept with person {instance_ref(partner)} by the keep decision ({f['keep_prob']:.2f}, "
            f"interaction {f['interaction']:.2f})",
        )
    return dataclasses.replace(selection, decisions=tuple(decisions))


def never_empty(instances: Sequence[Instance], mode: KeepMode, selection: Selection) -> Selection:
    """``selection``, or — when it keeps nothing although there are instances — the same with
    the best-scored instance kept as ``MAIN`` and ``Selection.fallback`` saying why (a photo
    without people under ``--keep interacting``, nothing portable, a decision that kept
    nothing)."""
    if not instances or any(d.role.kept for d in selection.decisions):
        return selection
    best = max(range(len(instances)), key=lambda k: (float(instances[k].score), -k))
    inst = instances[best]
    if mode is KeepMode.INTERACTING and not any(i.label == PERSON_LABEL for i in instances):
        why = "no person in the photo for --keep interacting"
    else:
        why = f"the {mode.value} policy kept nothing"
    fallback = (
        f"{why}; kept the best candidate ({inst.label}, score {float(inst.score):.2f}) "
        "rather than nothing"
    )
    decisions = list(selection.decisions)
    decisions[best] = Decision(Role.MAIN, f"never empty: {fallback}")
    return Selection(tuple(decisions), selection.ambiguity, selection.alternatives, fallback)


def note_rescued(instances: Sequence[Instance], selection: Selection, conf: float) -> Selection:
    """``selection``, with ``fallback`` saying so when it keeps a detection below ``conf``
    (``detect.conf``): the detector found nothing that sure and proposed its best guess above
    ``detect.rescue_conf`` instead (``pipeline.stages.detect``), so the user is told the
    cut-out rests on an unsure detection, as for any other fallback."""
    rescued = [
        inst
        for inst, decision in zip(instances, selection.decisions, strict=True)
        if decision.role.kept and inst.source == "detector" and inst.det_score < conf
    ]
    if not rescued:
        return selection
    best = max(rescued, key=lambda inst: inst.det_score)
    note = (
        f"no detection reached detect.conf {conf:g}; kept the detector's best guess "
        f"({best.label}, confidence {best.det_score:.2f})"
    )
    fallback = "; ".join(text for text in (selection.fallback, note) if text)
    return dataclasses.replace(selection, fallback=fallback)
