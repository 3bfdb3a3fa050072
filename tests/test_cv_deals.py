"""tools.cv_deals: the summary over several deals of the same cross-validation."""

from __future__ import annotations

import json

import pytest

from tools.cv_deals import deal_deltas, join_docs, main, summarise


def _doc(seed: int, ours_map: dict[str, float], ours_nomap: float = 0.6) -> dict:
    """A cv.json with two sets of two photos: map alone 0.8 everywhere, rules fixed."""
    items, sets = {}, {}
    for k, (name, set_name) in enumerate(
        (("a1", "grabcut"), ("a2", "grabcut"), ("b1", "ecssd_multi"), ("b2", "ecssd_multi"))
    ):
        items[name] = {
            "ours_map_iou": ours_map[name],
            "map_alone": 0.8,
            "ours_nomap_iou": ours_nomap,
            # "all" is the best rule overall (0.55 on average against largest's 0.5)
            "rule_all": 0.5 + 0.1 * (k % 2),
            "rule_largest": 0.5,
            "rule_top_score": 0.4,
            "rule_central": 0.3,
        }
        sets[name] = set_name
    return {"args": {"seed": seed}, "items": items, "sets": sets}


def test_deal_deltas_per_set_and_overall():
    doc = _doc(0, {"a1": 0.9, "a2": 0.8, "b1": 0.7, "b2": 0.8})
    d = deal_deltas(doc)
    assert d["map"]["grabcut"] == pytest.approx(0.05)
    assert d["map"]["ecssd_multi"] == pytest.approx(-0.05)
    assert d["map"]["overall"] == pytest.approx(0.0)
    # without the map: against the best rule overall ("all", 0.55 mean), per set too
    assert d["nomap"]["overall"] == pytest.approx(0.6 - 0.55)
    assert list(d["map"]) == ["grabcut", "ecssd_multi", "overall"]


def test_summary_counts_deals_meeting_each_target():
    good = deal_deltas(_doc(0, {"a1": 0.84, "a2": 0.84, "b1": 0.84, "b2": 0.84}))
    lopsided = deal_deltas(_doc(1, {"a1": 1.0, "a2": 1.0, "b1": 0.78, "b2": 0.76}))
    s = summarise([good, lopsided])
    assert s["map"]["per_deal"]["overall"] == pytest.approx([0.04, 0.085])
    assert s["map"]["mean"]["overall"] == pytest.approx(0.0625)
    assert s["map"]["lowest"]["ecssd_multi"] == pytest.approx(-0.03)
    assert s["map"]["lowest_set_per_deal"] == pytest.approx([0.04, -0.03])
    assert s["map"]["deals_meeting_gain"] == 2
    assert s["map"]["deals_meeting_floor"] == 1  # the lopsided deal loses a set by 0.03
    with pytest.raises(ValueError, match="no deal"):
        summarise([])


def test_cli_writes_tables_and_refuses_different_photo_sets(tmp_path, capsys):
    paths = []
    for seed, value in ((0, 0.9), (1, 0.85)):
        doc = _doc(seed, dict.fromkeys(("a1", "a2", "b1", "b2"), value))
        path = tmp_path / f"s{seed}" / "cv.json"
        path.parent.mkdir()
        path.write_text(json.dumps(doc))
        paths.append(str(path))
    assert main([*paths, "-o", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "| seed 0 | seed 1 | mean | lowest |" in printed
    assert "| **overall** | +0.100 | +0.050 | +0.075 | +0.050 |" in printed
    saved = json.loads((tmp_path / "out" / "deals.json").read_text())
    assert saved["labels"] == ["seed 0", "seed 1"]
    assert (tmp_path / "out" / "deals.md").read_text() == printed
    other = _doc(2, dict.fromkeys(("a1", "a2", "b1", "b2"), 0.9))
    del other["items"]["b2"], other["sets"]["b2"]
    (tmp_path / "odd.json").write_text(json.dumps(other))
    assert main([paths[0], str(tmp_path / "odd.json")]) == 2
    assert "not hold the same photos" in capsys.readouterr().err


def _split(doc: dict, names: tuple[str, ...]) -> dict:
    """The part of ``doc`` holding only ``names`` (a run with ``cv_select --sets``)."""
    keep = {n: doc["items"][n] for n in names}
    return {"args": doc["args"], "items": keep, "sets": {n: doc["sets"][n] for n in names}}


def test_joined_runs_over_disjoint_photos_are_one_deal(tmp_path, capsys):
    whole = _doc(0, {"a1": 0.9, "a2": 0.8, "b1": 0.7, "b2": 0.8})
    parts = [_split(whole, ("a1", "a2")), _split(whole, ("b1", "b2"))]
    assert deal_deltas(join_docs(parts)) == deal_deltas(whole)
    with pytest.raises(ValueError, match="share photos"):
        join_docs([parts[0], parts[0]])
    other_seed = _split(_doc(1, dict.fromkeys(("a1", "a2", "b1", "b2"), 0.9)), ("b1", "b2"))
    with pytest.raises(ValueError, match="one seed"):
        join_docs([parts[0], other_seed])
    paths = []
    for seed in (0, 1):
        doc = _doc(seed, dict.fromkeys(("a1", "a2", "b1", "b2"), 0.9 - 0.05 * seed))
        for k, names in enumerate((("a1", "a2"), ("b1", "b2"))):
            path = tmp_path / f"p{k}_s{seed}.json"
            path.write_text(json.dumps(_split(doc, names)))
            paths.append(str(path))
    assert main(["--join", "2", *paths]) == 0
    assert "| **overall** | +0.100 | +0.050 | +0.075 | +0.050 |" in capsys.readouterr().out
    # seeds paired wrongly: the first two runs are seed 0's halves, the next pair mixes seeds
    assert main(["--join", "2", paths[0], paths[1], paths[2], paths[0]]) == 2
    assert "one seed" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--join", "3", *paths])
    assert "do not split into groups of 3" in capsys.readouterr().err
