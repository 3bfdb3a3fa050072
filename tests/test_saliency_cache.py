"""The map's model rewritten for the CPU is kept in the weights cache (``<cache>/cpu/``) and
loaded from there by later processes: the same map, a new file when the source changes, and a
cache that cannot be written costs only the time (the rewrite stays in memory)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from pipeline.stages.saliency import REWRITE_FOLDER, IsnetSaliency, _model_for_cpu
from tests.test_isnet_int8 import SIDE_PX, tiny_isnet

IMAGE = np.random.default_rng(3).integers(0, 256, (37, 52, 3), dtype=np.uint8)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "layercut" / REWRITE_FOLDER


def test_rewrite_is_cached_once_and_gives_the_same_map(tmp_path, cache):
    source = tiny_isnet(tmp_path / "tiny.onnx")  # has a side output: the rewrite drops it
    first = IsnetSaliency(source, input_px=SIDE_PX, threads=1)
    (cached,) = cache.iterdir()
    assert [o.name for o in first.session.get_outputs()] == ["output"]
    mtime_ns = cached.stat().st_mtime_ns
    model, output = _model_for_cpu(source)
    assert model == str(cached) and output is None  # later loads read the cached file
    second = IsnetSaliency(source, input_px=SIDE_PX, threads=1)
    assert cached.stat().st_mtime_ns == mtime_ns  # not written again
    assert np.array_equal(first.predict(IMAGE), second.predict(IMAGE))
    assert list(cache.iterdir()) == [cached]  # no temp file left beside it


def test_changed_source_gets_a_new_cached_rewrite(tmp_path, cache):
    source = tiny_isnet(tmp_path / "tiny.onnx", seed=0)
    before = IsnetSaliency(source, input_px=SIDE_PX, threads=1).predict(IMAGE)
    tiny_isnet(source, seed=1)
    os.utime(source, ns=(1, 1))
    after = IsnetSaliency(source, input_px=SIDE_PX, threads=1).predict(IMAGE)
    assert len(list(cache.iterdir())) == 2
    assert not np.array_equal(before, after)


def test_unwritable_cache_still_gives_the_map(tmp_path, monkeypatch):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder would be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    source = tiny_isnet(tmp_path / "tiny.onnx")
    result = IsnetSaliency(source, input_px=SIDE_PX, threads=1).predict(IMAGE)
    assert result.shape == IMAGE.shape[:2] and 0.0 <= result.min() <= result.max() <= 1.0
