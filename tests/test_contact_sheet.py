"""tools/contact_sheet.py: picks items by a metric (or a difference) and lays out their thumbs."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from tools.contact_sheet import CELL_PX, choose, main, metric_value


def make_run(tmp_path):
    (tmp_path / "thumbs").mkdir()
    items = []
    for k, (ours, alone) in enumerate([(0.9, 0.5), (0.6, 0.62), (0.2, 0.9), (0.8, 0.8)]):
        rel = f"thumbs/item{k}_photo.jpg"
        Image.new("RGB", (120, 80), (40 * k, 0, 0)).save(tmp_path / rel)
        items.append(
            {
                "name": f"item{k}",
                "status": "ok",
                "metrics": {"iou": ours, "iou_rule_salient": alone},
                "thumbs": {"photo": rel},
            }
        )
    items.append({"name": "broken", "status": "error", "metrics": {}, "thumbs": {}})
    (tmp_path / "report.json").write_text(json.dumps({"items": items}))
    return items


def test_items_are_chosen_by_a_difference_of_metrics(tmp_path):
    items = make_run(tmp_path)
    assert metric_value(items[0]["metrics"], "iou-iou_rule_salient") == 0.9 - 0.5
    assert np.isnan(metric_value(items[0]["metrics"], "sad"))
    names = [i["name"] for i in choose(items, "iou-iou_rule_salient", 2, False, True)]
    assert names == ["item2", "item0"]  # |−0.7| then |+0.4|
    names = [i["name"] for i in choose(items, "iou", 2, True, False)]
    assert names == ["item2", "item1"]  # smallest first; the failed item is never chosen


def test_sheet_has_one_row_per_item_and_fails_cleanly(tmp_path, capsys):
    make_run(tmp_path)
    out = tmp_path / "sheet.png"
    status = main([str(tmp_path), "-o", str(out), "--by", "iou", "--top", "3",
                   "--kinds", "photo", "gt"])  # fmt: skip
    assert status == 0
    with Image.open(out) as sheet:
        # three rows of 80 px thumbs (landscape thumbs do not take a square cell)
        assert sheet.width > 2 * CELL_PX and 3 * 80 < sheet.height < 3 * CELL_PX
    assert "item0" in capsys.readouterr().out
    assert main([str(tmp_path), "-o", str(out), "--by", "nope"]) == 1
    assert main([str(tmp_path / "missing"), "-o", str(out)]) == 2
    assert "cannot read" in capsys.readouterr().err
