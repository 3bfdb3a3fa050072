"""tools.synth: scenes from a tiny source manifest made of synthetic arrays in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from pipeline.eval.dataset import load_dataset, load_ground_truth
from tools.synth import generate
from tools.synth_ops import Canvas, Sprite, defocus
from tools.synth_scenes import SUBCLASSES
from tools.synth_sources import assign_folds, load_sources


def _texture(rng: np.random.Generator, hw: tuple[int, int], colour) -> np.ndarray:
    """``H×W×3 uint8``: a colour with fine noise (detail that blur visibly removes)."""
    noise = rng.integers(-40, 40, size=(hw[0] // 2, hw[1] // 2, 1))
    noise = np.repeat(np.repeat(noise, 2, axis=0), 2, axis=1)
    return np.clip(np.asarray(colour)[None, None] + noise, 0, 255).astype(np.uint8)


def _save(path: Path, array: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return str(path.relative_to(path.parents[1]))  # relative to the manifest


def make_sources(root: Path) -> Path:
    """A source manifest: an alpha cut-out, a DAVIS-like masked frame (a person), a rider +
    bicycle instance map and two background photos; returns the manifest path."""
    rng = np.random.default_rng(0)
    items = []
    hw = (120, 160)
    # alpha cut-out: a soft-edged ellipse
    alpha = np.zeros(hw, np.float32)
    cv2.ellipse(alpha, (80, 60), (40, 50), 0, 0, 360, 1.0, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 1.0)
    files = {
        "image": _save(root / "src/ball/image.png", _texture(rng, hw, (200, 80, 60))),
        "alpha": _save(root / "src/ball/alpha.png", (alpha * 255).astype(np.uint8)),
    }
    items.append({"name": "ball", "set": "alpha_set", "files": files})
    # a frame with a binary main-object mask: becomes a cut-out and a native frame
    mask = np.zeros(hw, np.uint8)
    mask[20:110, 60:100] = 255
    frame = _texture(rng, hw, (90, 140, 90))
    frame[mask > 0] = _texture(rng, hw, (60, 60, 200))[mask > 0]
    files = {
        "image": _save(root / "src/walker_00001/image.png", frame),
        "mask": _save(root / "src/walker_00001/mask.png", mask),
    }
    items.append(
        {
            "name": "walker_00001",
            "set": "davis2016_val",
            "files": files,
            "instance_labels": {"1": "person"},
        }
    )
    # rider (2) on a bicycle (1)
    index_map = np.zeros(hw, np.uint8)
    index_map[70:115, 30:130] = 1
    index_map[10:75, 65:95] = 2
    files = {
        "image": _save(root / "src/ride_00000/image.png", _texture(rng, hw, (150, 150, 40))),
        "instances": _save(root / "src/ride_00000/instances.png", index_map),
    }
    labels = {"1": "bicycle", "2": "person"}
    items.append({"name": "ride_00000", "set": "inst", "files": files, "instance_labels": labels})
    for k in range(2):
        photo = _texture(rng, (200, 260), (120 + 40 * k, 110, 100))
        files = {"image": _save(root / f"src/photo{k}/image.png", photo)}
        items.append({"name": f"photo{k}", "set": "smoke", "files": files})
    path = root / "src" / "manifest.json"
    path.write_text(json.dumps({"items": items}), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    return make_sources(tmp_path_factory.mktemp("synth_sources"))


def _files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_deterministic_for_a_seed(sources, tmp_path):
    pool = load_sources(sources, "all")
    subclasses = ("portability", "interaction", "davis_native")
    generate(pool, tmp_path / "a", seed=3, count=3, subclasses=subclasses)
    generate(pool, tmp_path / "b", seed=3, count=3, subclasses=subclasses)
    generate(pool, tmp_path / "c", seed=4, count=3, subclasses=subclasses)
    a, b, c = (_files(tmp_path / k) for k in "abc")
    assert a == b
    assert a["portability_0000.jpg"] != c["portability_0000.jpg"]


def test_manifest_is_consistent_and_loads_through_eval(sources, tmp_path):
    pool = load_sources(sources, "all")
    manifest = generate(pool, tmp_path, seed=1, count=len(SUBCLASSES))
    assert sorted(manifest["subclass_counts"]) == sorted(SUBCLASSES)  # one of each
    raw = {it["name"]: it for it in manifest["items"]}
    for item in load_dataset(tmp_path / "manifest.json"):
        gt = load_ground_truth(item)
        entry = raw[item.name]
        ids = set(gt.instance_ids)
        assert ids == set(item.instance_labels) == set(item.roles) == set(item.ranks)
        assert len(ids) >= 2, item.name
        kept = {i for i, r in item.roles.items() if r in ("main", "interacting")}
        assert set(gt.main_ids) == kept == set(entry["main_instances"])
        assert any(r == "main" for r in item.roles.values())
        assert all(item.ranks[i] == 1 for i, r in item.roles.items() if r == "main")
        worst_kept = max(item.ranks[i] for i in kept)
        assert all(item.ranks[i] > worst_kept for i in ids - kept)
        assert item.subclass == entry["subclass"] and item.name.startswith(item.subclass)
        assert gt.main_mask is not None and gt.main_mask.any()


def test_native_main_object_is_not_pasted(sources, tmp_path):
    pool = load_sources(sources, "all")
    generate(pool, tmp_path, seed=5, count=1, subclasses=("davis_native",))
    (item,) = load_dataset(tmp_path / "manifest.json")
    gt = load_ground_truth(item)
    (main_id,) = [i for i, r in item.roles.items() if r == "main"]
    native = pool.natives[0]
    h, w = gt.hw
    mask = cv2.resize(native.mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
    main = gt.instance_map == main_id
    # the main instance is the frame's own object (minus anything pasted over it)
    assert main.sum() > 0.6 * mask.sum()
    assert not (main & ~mask).any()


def test_interaction_scene_keeps_person_and_touching_object(sources, tmp_path):
    pool = load_sources(sources, "all")
    generate(pool, tmp_path, seed=2, count=4, subclasses=("interaction",))
    for item in load_dataset(tmp_path / "manifest.json"):
        roles = item.roles
        assert sorted(roles.values()).count("distractor") == 1
        mains = [i for i, r in roles.items() if r == "main"]
        assert [item.instance_labels[i] for i in mains] == ["person"]
        assert "interacting" in roles.values()


def test_folds_have_disjoint_sources(sources, tmp_path):
    pool = load_sources(sources, "all")
    folds = assign_folds(pool, 2)
    assert folds[0].groups.isdisjoint(folds[1].groups)
    assert folds[0].groups | folds[1].groups == pool.groups
    manifest = generate(
        pool, tmp_path, seed=0, count=4, n_folds=2, subclasses=("plain", "truncated")
    )
    for entry in manifest["items"]:
        used = {entry["sources"]["background"], *entry["sources"]["cutouts"]}
        assert used <= folds[entry["fold"]].groups, entry["name"]


def test_defocus_blurs_colour_and_edge_and_paste_truncates():
    rng = np.random.default_rng(1)
    rgb = _texture(rng, (40, 40), (128, 128, 128)).astype(np.float32)
    alpha = np.zeros((40, 40), np.float32)
    alpha[10:30, 10:30] = 1.0
    sharp = Sprite(rgb, [alpha], ["object"], "g")
    soft = defocus(sharp, 3.0)
    pad = (soft.hw[0] - 40) // 2
    inner = (slice(pad + 14, pad + 26),) * 2
    assert soft.rgb[inner].std() < 0.5 * rgb[14:26, 14:26].std()
    assert 0.2 < soft.alpha[pad + 20, pad + 10] < 0.8  # the edge is soft now
    canvas = Canvas.from_image(np.zeros((50, 60, 3), np.uint8))
    (new_id,) = canvas.paste(sharp, -15, 5, 1)
    visible = canvas.index_map == new_id
    assert visible[:, 0].any() and visible.sum() == 15 * 20  # cut by the left edge


def test_unknown_split_and_empty_pool_raise(sources, tmp_path):
    with pytest.raises(ValueError, match="split"):
        load_sources(sources, "validation")
    with pytest.raises(ValueError, match="count"):
        generate(load_sources(sources, "all"), tmp_path, seed=0, count=0)
