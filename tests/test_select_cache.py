"""The stage cache of the selection tools: what is saved comes back bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.types import Instance, mask_to_xyxy
from tools.select_cache import load_entry, save_entry


def test_instances_and_map_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    masks = [rng.random((37, 53)) > 0.7, np.zeros((37, 53), bool)]
    masks[1][5:9, 40:53] = True
    instances = [
        Instance(k, mask_to_xyxy(m), label, cls, score, m)
        for k, (m, label, cls, score) in enumerate(
            zip(masks, ("person", "sports ball"), (0, 32), (0.91, 0.27), strict=True)
        )
    ]
    saliency = rng.random((37, 53)).astype(np.float32)
    key = {"image_sha256": "ab", "detect_weights": "d.onnx", "imgsz": 320}
    save_entry(tmp_path / "x.npz", instances, saliency, key)
    entry = load_entry(tmp_path / "x.npz")
    assert entry.key == key and np.array_equal(entry.saliency, saliency)
    for a, b in zip(entry.instances, instances, strict=True):
        assert np.array_equal(a.mask, b.mask) and np.array_equal(a.xyxy, b.xyxy)
        assert (a.label, a.class_id, a.det_score, a.id) == (b.label, b.class_id, b.det_score, b.id)
    save_entry(tmp_path / "empty.npz", [], None, key)
    empty = load_entry(tmp_path / "empty.npz")
    assert empty.instances == [] and empty.saliency is None
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz"):
        load_entry(tmp_path / "bad.npz")
