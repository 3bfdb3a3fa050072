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


def test_the_cache_holds_the_products_detector_with_its_rescue_or_without(tmp_path):
    import json

    from pipeline.eval.dataset import load_dataset
    from tests.checkpoints import shared_root, shared_weights_dir
    from tools.select_cache import build, cache_file

    seg, data = shared_weights_dir() / "yolov8n-seg_int8.onnx", shared_root() / "data" / "eval"
    if not (seg.is_file() and (data / "grabcut" / "stone1").is_dir()):
        pytest.skip(f"{seg} or {data} absent (../shared weights and data)")
    doc = json.loads((data / "manifest.json").read_text())
    doc["items"] = [it for it in doc["items"] if it["name"] == "grabcut-stone1"]
    for item in doc["items"]:
        item["files"] = {key: str(data / rel) for key, rel in item["files"].items()}
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps(doc))
    found = {}
    for rescue in (None, 0.25):  # the product's rescue, then none (nothing reaches 0.25 here)
        out = tmp_path / str(rescue)
        assert build(manifest, out, str(seg), 320, "none", log=None, rescue_conf=rescue) == 1
        (item,) = load_dataset(manifest)
        found[rescue] = load_entry(cache_file(out, item))
    assert len(found[None].instances) == 1 and found[None].key["rescue_conf"] == 0.01
    assert found[0.25].instances == [] and found[0.25].key["rescue_conf"] == 0.25
