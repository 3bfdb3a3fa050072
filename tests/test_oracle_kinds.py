"""tools.oracle_kinds: the headroom over the map alone, one segment kind decided at a time."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.stages.segments import split_segments
from pipeline.types import Instance, mask_to_xyxy
from tools.oracle_kinds import COLUMNS, kind_oracles, markdown, summary
from tools.select_data import Prepared, _measure


def _scene(set_name: str = "s", name: str = "p") -> Prepared:
    """20×20: the subject (GT, 64 px) detected whole but salient only in its top half; a
    salient detected distractor (36 px); a salient component no instance touches (12 px)."""
    gt = np.zeros((20, 20), bool)
    gt[2:10, 2:10] = True
    distractor = np.zeros_like(gt)
    distractor[12:18, 12:18] = True
    saliency = np.zeros(gt.shape, np.float32)
    saliency[2:6, 2:10] = 0.9  # the subject's top half
    saliency[12:18, 12:18] = 0.9  # the distractor
    saliency[0:2, 14:20] = 0.9  # a free component
    instances = [
        Instance(k, mask_to_xyxy(m), "person", 0, 0.9, m) for k, m in enumerate((gt, distractor))
    ]
    segments = split_segments(instances, saliency)
    seg_in, seg_out = _measure([(s.rows, s.cols, s.mask) for s in segments], gt, None)
    return Prepared(
        name=name,
        set_name=set_name,
        group=name,
        map_on=True,
        instances=instances,
        raw=instances,
        saliency=saliency,
        segments=segments,
        seg_in=seg_in,
        seg_out=seg_out,
        inst_in_frac=np.array([1.0, 0.0]),
        gt=gt,
        ignore=None,
    )


def test_each_kind_decided_alone_against_the_map_alone():
    found = kind_oracles(_scene())
    assert set(found) == set(COLUMNS)
    assert found["map_alone"] == pytest.approx(32 / (64 + 36 + 12))
    assert found["oracle_both"] == pytest.approx(32 / (64 + 12))  # the distractor dropped
    assert found["oracle_detector"] == pytest.approx(64 / (64 + 36 + 12))  # the bottom added
    assert found["oracle_free"] == pytest.approx(32 / (64 + 36))  # the free component dropped
    assert found["oracle_map"] == pytest.approx(found["map_alone"])  # no such segment here
    assert found["oracle_all"] == pytest.approx(1.0)


def test_the_oracle_by_kind_needs_the_map():
    rec = _scene()
    rec.saliency = None
    with pytest.raises(ValueError, match="needs the map"):
        kind_oracles(rec)


def test_summary_per_set_and_overall():
    recs = [_scene("a", "p1"), _scene("a", "p2"), _scene("b", "p3")]
    rows = {r.name: kind_oracles(r) for r in recs}
    rows["p3"] = {c: 0.0 for c in COLUMNS}
    numbers = summary(rows, {r.name: r.set_name for r in recs})
    assert list(numbers) == ["a", "b", "overall"]
    assert numbers["a"]["n"] == 2 and numbers["overall"]["n"] == 3
    assert numbers["b"]["oracle_all"] == 0.0
    assert numbers["overall"]["oracle_all"] == pytest.approx(2 / 3)
    assert "| overall | 3 |" in markdown(numbers)
