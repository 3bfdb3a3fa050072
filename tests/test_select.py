"""The keep policy on hand-built instance sets (features and scores set by hand) and end to end."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import SelectConfig
from pipeline.features import FEATURE_NAMES, compute_features
from pipeline.stages.rank import PRIOR
from pipeline.stages.select import select_by_rules as select
from pipeline.types import KeepMode, Role, Selection, instance_ref
from tests import scenes

CONFIG = SelectConfig()
PORTABLE = {"sharpness_rel_max": 1.0, "truncation": 0.0, "trunc_bottom": 0.0, "area_frac": 0.1}


def inst(inst_id, label, score, **features):
    values = dict.fromkeys(FEATURE_NAMES, 0.0)
    values.update(PORTABLE, partner_id=-1.0)
    values.update(features)
    return scenes.instance(inst_id, np.zeros((8, 8), bool), label, features=values, score=score)


def hand_scene():
    """Person #0 holding #1; blurred person #2 behind; #3 cut by the frame; #4 unrelated."""
    return [
        inst(0, "person", 0.90, interaction=0.8, contact=0.6, partner_id=1),
        inst(1, "guitar", 0.60, interaction=0.8, contact=0.6, partner_id=0),
        inst(2, "person", 0.50, sharpness_rel_max=0.2),
        inst(3, "potted plant", 0.40, truncation=0.42),
        inst(4, "chair", 0.45, interaction=0.1, contact=0.0, partner_id=0),
    ]


def roles(selection: Selection) -> list[Role]:
    return [d.role for d in selection.decisions]


def test_main_keeps_person_and_held_object_and_says_why_others_go():
    selection = select(hand_scene(), KeepMode.MAIN, CONFIG)
    assert roles(selection) == [Role.MAIN, Role.INTERACTING, *[Role.DROPPED] * 3]
    reasons = [d.reason for d in selection.decisions]
    assert reasons[0] == "main subject (score 0.90, rank 1)"
    # the holder is named by a placeholder that Layers shows as its rank
    assert f"held/ridden by person {instance_ref(0)}" in reasons[1] and "contact 0.6" in reasons[1]
    assert reasons[2] == "blurred (sharpness 0.20 of the sharpest < 0.35)"
    assert reasons[3] == "cut by the frame (42% of its border)"
    assert reasons[4].startswith("secondary (score 0.45")
    assert selection.ambiguity == 0.0  # 0.9 vs a runner-up at 0.45: one dominant subject


def test_interacting_keeps_only_people_and_their_objects():
    selection = select(hand_scene(), "interacting", CONFIG)
    assert roles(selection) == [Role.MAIN, Role.INTERACTING, *[Role.DROPPED] * 3]
    assert selection.decisions[4].reason.startswith("not a person nor held")
    # a second sharp person who holds nothing is still kept
    extra = [*hand_scene(), inst(5, "person", 0.3)]
    assert roles(select(extra, "interacting", CONFIG))[5] is Role.KEPT


def test_all_keeps_every_portable_instance():
    selection = select(hand_scene(), KeepMode.ALL, CONFIG)
    assert roles(selection) == [Role.MAIN, Role.INTERACTING, Role.DROPPED, Role.DROPPED, Role.KEPT]
    assert selection.decisions[4].reason == "portable (score 0.45, rank 4)"


def test_decisions_follow_input_order():
    shuffled = hand_scene()[::-1]
    selection = select(shuffled, KeepMode.MAIN, CONFIG)
    kept = {i.id: d.role for i, d in zip(shuffled, selection.decisions, strict=True)}
    assert kept[0] is Role.MAIN and kept[1] is Role.INTERACTING and kept[4] is Role.DROPPED


def test_ambiguity_high_for_twins_low_for_one_dominant():
    twins = [inst(0, "dog", 0.80), inst(1, "dog", 0.79)]
    selection = select(twins, KeepMode.MAIN, CONFIG)
    twins_ambiguity = selection.ambiguity
    assert twins_ambiguity > 0.9
    assert roles(selection) == [Role.MAIN, Role.MAIN]  # co-subjects: 0.79 ≥ 0.75 × 0.80
    assert selection.decisions[1].reason.startswith("co-subject")
    assert selection.alternatives == ((0,), (1,))
    dominant = [inst(0, "dog", 0.90), inst(1, "dog", 0.20)]
    selection = select(dominant, KeepMode.MAIN, CONFIG)
    assert selection.ambiguity == 0.0
    assert roles(selection) == [Role.MAIN, Role.DROPPED]
    assert selection.alternatives == ((1,),)
    middle = select([inst(0, "dog", 0.8), inst(1, "dog", 0.6)], KeepMode.MAIN, CONFIG)
    assert 0.0 < middle.ambiguity < twins_ambiguity  # a clear but not dominant runner-up


def test_alternatives_group_a_person_with_their_object():
    scene = [
        *hand_scene()[:2],
        inst(5, "person", 0.5, interaction=0.9, contact=0.8, partner_id=6),
        inst(6, "bicycle", 0.3, interaction=0.9, contact=0.8, partner_id=5),
    ]
    selection = select(scene, KeepMode.MAIN, CONFIG)
    assert selection.alternatives == ((5, 6),)


def test_interaction_overrides_truncation_and_size_but_not_blur():
    person = inst(0, "person", 0.9, interaction=0.8, contact=0.6, partner_id=1)
    cut = inst(1, "bicycle", 0.3, truncation=0.6, area_frac=0.0001, interaction=0.8, partner_id=0)
    assert roles(select([person, cut], KeepMode.MAIN, CONFIG))[1] is Role.INTERACTING
    soft = inst(1, "bicycle", 0.3, sharpness_rel_max=0.1, interaction=0.8, partner_id=0)
    decision = select([person, soft], KeepMode.MAIN, CONFIG).decisions[1]
    assert decision.role is Role.DROPPED and decision.reason.startswith("blurred")
    weak = inst(1, "bicycle", 0.3, interaction=0.4, partner_id=0)  # below min_interaction
    assert roles(select([person, weak], KeepMode.MAIN, CONFIG))[1] is Role.DROPPED


def test_bottom_cut_counts_half_for_portraits():
    portrait = inst(0, "person", 0.9, truncation=0.5, trunc_bottom=0.5)  # gate sees 0.25
    side_cut = inst(1, "person", 0.85, truncation=0.5, trunc_bottom=0.0)
    selection = select([portrait, side_cut], KeepMode.MAIN, CONFIG)
    assert roles(selection) == [Role.MAIN, Role.DROPPED]
    assert selection.decisions[1].reason == "cut by the frame (50% of its border)"


def test_small_instance_dropped_with_its_area():
    tiny = inst(1, "cup", 0.9, area_frac=0.0005)
    decision = select([inst(0, "dog", 0.5), tiny], KeepMode.MAIN, CONFIG).decisions[1]
    assert decision.role is Role.DROPPED and decision.reason.startswith("too small (0.05%")


def test_nothing_portable_keeps_nothing_and_offers_the_top_ones():
    scene = [inst(0, "tree", 0.7, truncation=0.9), inst(1, "tree", 0.8, truncation=0.8)]
    selection = select(scene, KeepMode.MAIN, CONFIG)
    assert roles(selection) == [Role.DROPPED, Role.DROPPED]
    assert selection.ambiguity == 1.0
    assert selection.alternatives == ((1,), (0,))


def test_empty_input():
    assert select([], KeepMode.MAIN, CONFIG) == Selection((), 1.0, ())


def test_unbounded_scores_keep_their_order():
    scene = [inst(0, "dog", -3.0), inst(1, "dog", 2.5)]  # e.g. a pairwise model's margins
    assert roles(select(scene, KeepMode.MAIN, CONFIG)) == [Role.DROPPED, Role.MAIN]


def test_missing_features_raise():
    bare = scenes.instance(0, np.zeros((4, 4), bool), "dog", score=0.5)
    with pytest.raises(ValueError, match="instance 0 lacks features"):
        select([bare], KeepMode.MAIN, CONFIG)


def test_end_to_end_on_the_synthetic_scene():
    scene = scenes.keep_scene()
    instances = compute_features(scene.image, scene.instances)
    scores = PRIOR.score(instances)
    instances = [i.replace(score=float(s)) for i, s in zip(instances, scores, strict=True)]
    main = select(instances, KeepMode.MAIN, CONFIG)
    assert roles(main) == [Role.MAIN, Role.INTERACTING, *[Role.DROPPED] * 3]
    assert main.decisions[2].reason.startswith("blurred")
    assert main.decisions[3].reason.startswith("cut by the frame")
    assert roles(select(instances, KeepMode.ALL, CONFIG))[4] is Role.KEPT
    assert roles(select(instances, KeepMode.INTERACTING, CONFIG))[4] is Role.DROPPED


def test_map_vetoes_a_dark_bystander_and_a_small_rescued_scrap_as_co_subjects():
    mapped = {"has_saliency": 1.0}
    dancer = inst(0, "person", 0.95, sal_mean_inside=0.8, area_frac=0.08, **mapped)
    bystander = inst(1, "person", 0.90, sal_mean_inside=0.3, area_frac=0.05, **mapped)
    friend = inst(2, "person", 0.90, sal_mean_inside=0.7, area_frac=0.05, **mapped)
    scrap = inst(3, "object", 0.90, sal_mean_inside=0.9, area_frac=0.01, **mapped)
    scrap = scrap.replace(source="saliency")
    big_find = inst(4, "object", 0.90, sal_mean_inside=0.9, area_frac=0.06, **mapped)
    big_find = big_find.replace(source="saliency")
    selection = select([dancer, bystander, friend, scrap, big_find], KeepMode.MAIN, CONFIG)
    assert roles(selection) == [Role.MAIN, Role.DROPPED, Role.MAIN, Role.DROPPED, Role.MAIN]
    assert selection.decisions[1].reason.startswith("bystander: the salient map sees it less")
    assert "0.30 < 0.50 × 0.80" in selection.decisions[1].reason
    assert selection.decisions[3].reason.startswith("salient scrap: too small to stand alone")
    # without a map the same scores keep everyone: the vetoes read only the map's cues
    unmapped = [
        i.replace(features={**i.features, "has_saliency": 0.0})
        for i in (dancer, bystander, friend, scrap, big_find)
    ]
    assert roles(select(unmapped, KeepMode.MAIN, CONFIG)) == [Role.MAIN] * 5
