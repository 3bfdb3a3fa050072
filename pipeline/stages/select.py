"""The keep policy stage: which ranked instances a cut-out keeps, and why.

``build_selector(config.select)`` gives the stage (``KeepPolicy``, a ``pipeline.protocols.
Selector``); ``KeepPolicy.select(ranked, mode, saliency=None)`` returns a ``Selection``
(``pipeline.types``): one ``Decision`` (role + short reason) per instance, an ambiguity value
and alternative main selections. ``select.method``:

- ``learned`` (default): ``--keep main`` follows the learned keep decision the fusion stage
  wrote into the instances (``select_learned``); ``all`` and ``interacting`` follow the rules;
- ``rules``: ``select_by_rules(instances, mode, config)`` reads ``Instance.features``
  (``pipeline.features``) and ``Instance.score`` (the ranker's) and applies the rules below;
  with the image's salient-object map, ``absorb_fragments`` (``pipeline.stages.
  select_fragments``) then keeps the pieces of a kept subject with it.

Either way ``never_empty`` keeps the best candidate, and says so, when nothing would be kept.

Rules (thresholds from ``SelectConfig``):

1. **Portability gate.** An instance is portable when ``sharpness_rel_max ≥ min_sharpness_rel``,
   its frame truncation ≤ ``max_truncation_frac`` and ``area_frac ≥ min_area_frac``. Truncation
   here counts the bottom side at ``BOTTOM_TRUNCATION_WEIGHT``: half-body portraits and people
   standing on the lower edge are framed that way and still make whole-looking cut-outs.
2. **Main subjects.** The top-scoring candidate and every candidate scoring at least
   ``main_rel_score ×`` its score (co-subjects) → ``Role.MAIN``, except objects held by a main
   person, which take ``Role.INTERACTING`` (rule 3) so the reason names the relation.
   Candidates are the portable instances (``main``, ``all``) or the portable people
   (``interacting``). With a salient map two vetoes apply to co-subjects
   (``_co_subject_veto``): a bystander the map leaves dark, and a small rescued region. Scores
   outside [0, 1] are first squashed with the logistic function (monotone, so the order stays)
   so the ratio test works whatever the ranker's scale.
3. **Interaction.** A non-person whose strongest partner (``partner_id``) is a kept person and
   whose ``interaction ≥ min_interaction`` → ``Role.INTERACTING``. It is kept even when it fails
   the truncation or area gate (a held phone is small, a ridden bike may be cut by the frame:
   they belong to the subject's cut-out) but not when it fails the sharpness gate (a defocused
   thing touching the person in the image plane is usually behind them, not in their hands).
   Kept people are the main ones in ``main`` mode and every kept person otherwise.
4. **Modes.** ``main``: main subjects + their interacting objects. ``all``: also every other
   portable instance (``Role.KEPT``). ``interacting``: every portable person (the top ones
   ``MAIN``, the rest ``KEPT``, whether or not they hold anything) + their interacting objects;
   no other object.
5. **Nothing portable** (or no instance): the rules keep nothing, ambiguity is 1.0 and the
   alternatives are the top-scoring instances one by one (``never_empty`` then keeps the best).

Reasons name another instance with ``pipeline.types.instance_ref(id)``; ``Layers`` shows it as
the rank of that instance's layer (what files, the page and the debug view number).

Ambiguity: candidates are grouped (a person with the objects they interact with is one group),
and ``ambiguity = 1 - min(1, margin / CLEAR_MARGIN_REL)`` with ``margin = (s1 - s2) / s1`` the
relative score margin between the best and second-best group leads: 0 with a single group or a
runner-up under half the top score, → 1 for two near-identical candidates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from pipeline.config import SelectConfig
from pipeline.stages.select_fragments import absorb_fragments
from pipeline.stages.select_learned import learned_partners, never_empty, select_learned
from pipeline.types import Decision, Instance, KeepMode, Role, Selection, instance_ref

PERSON_LABEL = "person"
# weight of the bottom side in the truncation gate (see rule 1)
BOTTOM_TRUNCATION_WEIGHT = 0.5
# a runner-up whose score is below (1 - this) × the top's is clearly secondary: ambiguity 0
CLEAR_MARGIN_REL = 0.5
# at most this many alternative main selections are offered
MAX_ALTERNATIVES = 3
REQUIRED_FEATURES = (
    "sharpness_rel_max",
    "truncation",
    "trunc_bottom",
    "area_frac",
    "interaction",
    "contact",
    "partner_id",
)


def gate_truncation(features) -> float:
    """Truncation share used by the gate: the bottom side counts ``BOTTOM_TRUNCATION_WEIGHT``."""
    bottom = features["trunc_bottom"]
    return max(0.0, features["truncation"] - (1.0 - BOTTOM_TRUNCATION_WEIGHT) * bottom)


def portability_failures(inst: Instance, config: SelectConfig) -> dict[str, str]:
    """Why ``inst`` is not portable: ``{"sharpness" | "truncation" | "area": reason}``, empty if
    it passes every gate."""
    f = inst.features
    failures = {}
    if f["sharpness_rel_max"] < config.min_sharpness_rel:
        failures["sharpness"] = (
            f"blurred (sharpness {f['sharpness_rel_max']:.2f} of the sharpest "
            f"< {config.min_sharpness_rel:.2f})"
        )
    truncation = gate_truncation(f)
    if truncation > config.max_truncation_frac:
        failures["truncation"] = f"cut by the frame ({truncation:.0%} of its border)"
    if f["area_frac"] < config.min_area_frac:
        failures["area"] = (
            f"too small ({f['area_frac']:.2%} of the image < {config.min_area_frac:.2%})"
        )
    return failures


def _probabilities(scores: np.ndarray) -> np.ndarray:
    """Scores as they are when all lie in [0, 1], else through the logistic function."""
    if scores.size and (scores.min() < 0.0 or scores.max() > 1.0):
        return 1.0 / (1.0 + np.exp(-scores))
    return scores


def _check(instances: Sequence[Instance]) -> None:
    for inst in instances:
        missing = [name for name in REQUIRED_FEATURES if name not in inst.features]
        if missing:
            raise ValueError(
                f"instance {inst.id} lacks features {missing}; "
                "run pipeline.features.compute_features before select"
            )
        if not math.isfinite(float(inst.score)):
            raise ValueError(f"instance {inst.id} has a non-finite score {inst.score!r}")


class KeepPolicy:
    """The keep policy stage (``pipeline.protocols.Selector``), built by ``build_selector``."""

    def __init__(self, config: SelectConfig):
        self.config = config

    def select(
        self,
        ranked: Sequence[Instance],
        mode: KeepMode | str,
        saliency: np.ndarray | None = None,
    ) -> Selection:
        """Decide on ``ranked`` (instances with features and scores) for ``mode``.

        Args:
            ranked: the instances, best first (any order works; decisions follow it).
            mode: ``main``, ``all`` or ``interacting``.
            saliency: the image's ``H×W float32`` salient map in [0, 1], or None; with it and
                ``method = "rules"``, dropped fragments of a kept instance join it
                (``absorb_fragments``).

        With ``method = "learned"`` the ``main`` mode follows the fusion stage's decision
        (``select_learned``); the other modes and ``method = "rules"`` follow the rules. Either
        way a photo where something was found never comes out empty (``never_empty``).
        """
        mode = KeepMode.parse(mode)
        cfg = self.config
        if cfg.method == "learned" and mode is KeepMode.MAIN:
            _check(ranked)
            rules = select_by_rules(ranked, KeepMode.MAIN, cfg)
            selection = select_learned(ranked, cfg, rules)
        else:
            selection = select_by_rules(ranked, mode, cfg)
            if cfg.method == "learned" and mode is KeepMode.INTERACTING:
                selection = learned_partners(ranked, selection)
            if saliency is not None and cfg.method == "rules":
                selection = absorb_fragments(
                    ranked, selection, saliency, cfg.absorb_threshold, cfg.absorb_min_share
                )
        return never_empty(ranked, mode, selection)


def build_selector(config: SelectConfig) -> KeepPolicy:
    """The keep policy configured by ``[select]``."""
    return KeepPolicy(config)


def select_by_rules(
    instances: Sequence[Instance], mode: KeepMode | str, config: SelectConfig
) -> Selection:
    """The rules (module docstring), without a map, on instances carrying features and scores."""
    mode = KeepMode.parse(mode)
    _check(instances)
    n = len(instances)
    if n == 0:
        return Selection((), 1.0, ())
    scores = _probabilities(np.array([float(inst.score) for inst in instances]))
    order = sorted(range(n), key=lambda k: (-scores[k], k))
    rank = {k: r + 1 for r, k in enumerate(order)}
    index_of = {inst.id: k for k, inst in enumerate(instances)}
    failures = [portability_failures(inst, config) for inst in instances]
    is_person = [inst.label == PERSON_LABEL for inst in instances]

    def partner_of(k: int) -> int | None:
        """Index of the person object ``k`` interacts with enough to be kept with, or None."""
        f = instances[k].features
        if is_person[k] or "sharpness" in failures[k]:
            return None
        partner = index_of.get(int(f["partner_id"]))
        if partner is None or not is_person[partner]:
            return None
        return partner if f["interaction"] >= config.min_interaction else None

    candidates = [k for k in order if not failures[k]]
    if mode is KeepMode.INTERACTING:
        candidates = [k for k in candidates if is_person[k]]
    roles: dict[int, Role] = {}
    reasons: dict[int, str] = {}
    vetoed: dict[int, str] = {}  # scored as co-subjects, vetoed by the map: index → why
    if candidates:
        top = candidates[0]
        threshold = config.main_rel_score * scores[top]
        for k in candidates:
            if k != top and scores[k] >= threshold:
                veto = _co_subject_veto(instances, k, top, config)
                if veto:
                    vetoed[k] = veto
            if k == top or (scores[k] >= threshold and k not in vetoed):
                roles[k] = Role.MAIN
                what = "main subject" if k == top else "co-subject"
                reasons[k] = f"{what} (score {scores[k]:.2f}, rank {rank[k]})"
        # an object held by a main person is described by that relation, not as a co-subject
        for k in list(roles):
            if k != top and partner_of(k) in roles:
                del roles[k], reasons[k]
    if mode is KeepMode.INTERACTING:
        for k in candidates:
            if k not in roles:
                roles[k] = Role.KEPT
                reasons[k] = f"person (score {scores[k]:.2f}, rank {rank[k]})"
    holders = {k for k, role in roles.items() if is_person[k]}
    if mode is KeepMode.ALL:
        holders |= {k for k in candidates if is_person[k]}
    for k in order:
        partner = partner_of(k)
        if k in roles or partner is None or partner not in holders:
            continue
        f = instances[k].features
        roles[k] = Role.INTERACTING
        reasons[k] = (
            f"held/ridden by person {instance_ref(instances[partner].id)} "
            f"(interaction {f['interaction']:.2f}, contact {f['contact']:.1f})"
        )
    if mode is KeepMode.ALL:
        for k in candidates:
            if k not in roles:
                roles[k] = Role.KEPT
                reasons[k] = f"portable (score {scores[k]:.2f}, rank {rank[k]})"

    decisions = []
    for k in range(n):
        if k in roles:
            decisions.append(Decision(roles[k], reasons[k]))
        elif failures[k]:
            decisions.append(Decision(Role.DROPPED, "; ".join(failures[k].values())))
        elif mode is KeepMode.INTERACTING:
            f = instances[k].features
            why = f"not a person nor held by a kept one (interaction {f['interaction']:.2f})"
            decisions.append(Decision(Role.DROPPED, why))
        elif k in vetoed:
            decisions.append(Decision(Role.DROPPED, f"{vetoed[k]} (rank {rank[k]})"))
        else:
            top_score = scores[candidates[0]]
            why = (
                f"secondary (score {scores[k]:.2f} < {config.main_rel_score:.2f} × "
                f"{top_score:.2f}, rank {rank[k]})"
            )
            decisions.append(Decision(Role.DROPPED, why))

    chosen = tuple(k for k in order if roles.get(k) in (Role.MAIN, Role.INTERACTING))
    ambiguity, alternatives = _alternatives(
        instances, scores, order, candidates, chosen, partner_of
    )
    return Selection(tuple(decisions), ambiguity, alternatives)


def _co_subject_veto(instances: Sequence[Instance], k: int, top: int, config: SelectConfig) -> str:
    """Why ``k``, though it scores as a co-subject of ``top``, is not one; "" when it is.

    Two vetoes, both from the salient map (nothing changes without one):

    - a bystander: with a map (feature ``has_saliency``) a co-subject must be at least
      ``co_subject_min_saliency_rel ×`` as salient inside (``sal_mean_inside``) as the top
      instance. A sharp bystander the ranker scores near the subject but the map leaves dark is
      the crowd behind the subject, not a second subject.
    - a scrap: a region rescued from the map (``source == "saliency"``, no class evidence)
      stands as a second subject only when it is at least ``co_subject_min_rescued_area_rel ×``
      the top instance's area. Smaller ones (a bright face in the crowd) are kept only as a
      part of, or a thing held by, a kept subject (``absorb_fragments``, rule 3).
    """
    inst, lead = instances[k], instances[top]
    f, t = inst.features, lead.features
    if not (f.get("has_saliency", 0.0) and t.get("has_saliency", 0.0)):
        return ""
    rel = config.co_subject_min_saliency_rel
    if f.get("sal_mean_inside", 0.0) < rel * t.get("sal_mean_inside", 0.0):
        return (
            f"bystander: the salient map sees it less (mean {f.get('sal_mean_inside', 0.0):.2f} "
            f"< {rel:.2f} × {t.get('sal_mean_inside', 0.0):.2f} of the main subject)"
        )
    area_rel = config.co_subject_min_rescued_area_rel
    if inst.source == "saliency" and f["area_frac"] < area_rel * t["area_frac"]:
        return (
            f"salient scrap: too small to stand alone ({f['area_frac']:.2%} of the image "
            f"< {area_rel:.2f} × {t['area_frac']:.2%})"
        )
    return ""


def _alternatives(instances, scores, order, candidates, chosen, partner_of):
    """Ambiguity and alternative main selections from candidate groups (module docstring)."""
    ids = [inst.id for inst in instances]
    if not candidates:
        return 1.0, tuple((ids[k],) for k in order[:MAX_ALTERNATIVES])
    groups: list[tuple[int, ...]] = []
    assigned: set[int] = set()
    for lead in candidates:
        if lead in assigned:
            continue
        holder = partner_of(lead)
        holder = holder if holder in candidates else None
        people = {lead} if holder is None else {lead, holder}
        members = people | {k for k in order if partner_of(k) in people}
        group = tuple(k for k in order if k in members and (k == lead or k not in assigned))
        group = (lead, *[k for k in group if k != lead])
        assigned.update(group)
        groups.append(group)
    ambiguity = 0.0
    if len(groups) > 1:
        s1, s2 = scores[groups[0][0]], scores[groups[1][0]]
        margin = (s1 - s2) / s1 if s1 > 0 else 0.0
        ambiguity = 1.0 - min(1.0, margin / CLEAR_MARGIN_REL)
    chosen_set = set(chosen)
    alternatives = [g for g in groups if set(g) != chosen_set][:MAX_ALTERNATIVES]
    return float(ambiguity), tuple(tuple(ids[k] for k in g) for g in alternatives)
