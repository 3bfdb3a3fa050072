"""Fragments of a kept instance join it through the salient map
(pipeline.stages.select_fragments), on synthetic maps with known answers, and through
``Remover.run`` with injected stages."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.api import Remover
from pipeline.config import load_config
from pipeline.stages.select_fragments import absorb_fragments
from pipeline.types import Decision, Instance, Role, Selection, mask_to_xyxy

HW = (100, 160)


def box(rows: slice, cols: slice) -> np.ndarray:
    mask = np.zeros(HW, bool)
    mask[rows, cols] = True
    return mask


def instance(id_: int, mask: np.ndarray, score: float, label: str = "person") -> Instance:
    return Instance(
        id=id_, xyxy=mask_to_xyxy(mask), label=label, class_id=0, det_score=0.5, mask=mask,
        score=score,
    )  # fmt: skip


def dancer_scene():
    """A kept torso (bright in the map), its faint legs detected apart, a crowd member in a
    separate faint blob, and an object half inside the dancer's faint region."""
    saliency = np.zeros(HW, np.float32)
    saliency[50:90, 20:60] = 0.9  # torso: salient
    saliency[10:50, 20:45] = 0.3  # legs: faint (motion blur), touching the torso
    saliency[10:90, 110:140] = 0.3  # crowd member: as faint, but not connected
    torso = instance(0, box(slice(50, 90), slice(20, 60)), 0.9)
    legs = instance(1, box(slice(10, 50), slice(20, 45)), 0.4)
    crowd = instance(2, box(slice(10, 90), slice(110, 140)), 0.5)
    # 25 of its 60 columns (42 %) overlap the faint legs' rows → inside at min_share 0.3 only
    half = instance(3, box(slice(20, 30), slice(20, 80)), 0.2, "bag")
    return saliency, [torso, legs, crowd, half]


def selection_keeping(n: int, kept: dict[int, Role]) -> Selection:
    decisions = tuple(
        Decision(kept[k], "chosen") if k in kept else Decision(Role.DROPPED, "secondary")
        for k in range(n)
    )
    return Selection(decisions, 0.25, ((2,),))


def test_faint_fragment_connected_to_a_kept_instance_joins_it_and_the_crowd_does_not():
    saliency, instances = dancer_scene()
    selection = selection_keeping(4, {0: Role.MAIN})
    result = absorb_fragments(instances, selection, saliency, threshold=0.2, min_share=0.3)
    roles = [d.role for d in result.decisions]
    assert roles == [Role.MAIN, Role.MAIN, Role.DROPPED, Role.MAIN]
    assert "#0" in result.decisions[1].reason and "100%" in result.decisions[1].reason
    assert "secondary" in result.decisions[1].reason  # what the policy said alone is kept
    assert (result.ambiguity, result.alternatives) == (selection.ambiguity, selection.alternatives)
    # a stricter share leaves the half-inside bag out; a higher threshold cuts the faint legs off
    strict = absorb_fragments(instances, selection, saliency, threshold=0.2, min_share=0.5)
    assert [d.role for d in strict.decisions] == [Role.MAIN, Role.MAIN, Role.DROPPED, Role.DROPPED]
    high = absorb_fragments(instances, selection, saliency, threshold=0.5, min_share=0.3)
    assert high is selection


def test_fragment_takes_the_role_of_the_instance_it_belongs_to():
    saliency, instances = dancer_scene()
    selection = selection_keeping(4, {0: Role.KEPT})
    result = absorb_fragments(instances, selection, saliency, 0.2, 0.3)
    assert result.decisions[1].role is Role.KEPT


def test_nothing_kept_or_nothing_salient_leaves_the_selection_alone():
    saliency, instances = dancer_scene()
    nothing_kept = selection_keeping(4, {})
    assert absorb_fragments(instances, nothing_kept, saliency, 0.2, 0.3) is nothing_kept
    selection = selection_keeping(4, {0: Role.MAIN})
    blank = np.zeros(HW, np.float32)
    assert absorb_fragments(instances, selection, blank, 0.2, 0.3) is selection


def test_absorb_validates_its_arguments():
    saliency, instances = dancer_scene()
    selection = selection_keeping(4, {0: Role.MAIN})
    with pytest.raises(ValueError, match="threshold"):
        absorb_fragments(instances, selection, saliency, 0.7, 0.3)
    with pytest.raises(ValueError, match="min_share"):
        absorb_fragments(instances, selection, saliency, 0.2, 0.0)
    with pytest.raises(ValueError, match="decisions"):
        absorb_fragments(instances[:3], selection, saliency, 0.2, 0.3)
    with pytest.raises(ValueError, match="saliency"):
        absorb_fragments(instances, selection, saliency[:50], 0.2, 0.3)


class FixedDetector:
    def __init__(self, instances):
        self.instances = instances

    def detect(self, image):
        return [inst.replace(score=0.0) for inst in self.instances]


class FixedMap:
    def __init__(self, saliency):
        self.saliency = saliency

    def predict(self, image):
        return self.saliency


def test_remover_keeps_fragments_with_a_map_and_never_alters_given_proposals():
    saliency, instances = dancer_scene()
    torso, legs = instances[0], instances[1]
    config = load_config("cpu", ("saliency.model=isnet", "rank.model=prior", "select.method=rules"))
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (*HW, 3), dtype=np.uint8)  # texture: both pieces are sharp
    remover = Remover(
        config, detector=FixedDetector([torso, legs]), saliency=FixedMap(saliency),
        segmenter=None,
    )  # fmt: skip
    layers = remover.run(image)
    assert len(layers) == 2
    assert [layer.instance.id for layer in layers] == [0, 1]  # the torso ranks first
    assert "#1's salient region" in layers[1].reason  # the torso: id 0, rank 1
    assert [layer.instance.id for layer in layers.kept_layers()] == [0, 1]
    # Ground-truth proposals are never changed by the map, selection included.
    given = remover.run(image, proposals=[torso, legs])
    kept_ids = [layer.instance.id for layer in given.kept_layers()]
    assert len(kept_ids) == 1
