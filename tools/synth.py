"""Synthetic main-subject scenes from real pixels, with known instances, roles and ranks.

    python -m tools.synth --sources ../shared/data/eval/manifest.json --split train \
        --folds 3 --seed 1 --count 270 -o reports/synth/train

composes ``count`` scenes from real cut-outs (items with GT alpha, a GT mask or an instance
map) on real photographs (``tools.synth_sources``), one recipe per principle
(``tools.synth_scenes``: portability, motion_blur, truncated, candidates, interaction, plain,
illustration, no_subject, davis_native), and writes::

    DIR/manifest.json          the pipeline.eval.dataset format (``layercut eval`` reads it)
    DIR/images/<name>.jpg      the scene (noise + JPEG re-compression applied)
    DIR/instances/<name>.png   8-bit instance indices, 0 = background

Each manifest item has ``instance_labels``, ``roles`` (main | interacting | distractor),
``main_instances``, ``ranks`` (1 = most salient) and ``subclass``, plus the provenance fields
``sources`` (background group and cut-out groups), ``fold`` and ``params`` that the evaluation
ignores and ``tools.train_ranker`` uses for grouped cross-validation.

Balance: scene k uses subclass ``k mod n`` over the subclasses the pool can build
(``davis_native`` needs a frame with a GT mask, ``interaction`` a person cut-out), so counts
differ by at most one. With ``--folds K`` the split's groups are dealt into K disjoint pools and
scene k draws every pixel from pool ``(k // n) mod K``. Deterministic for a seed: scene k's
generator is seeded with (seed, k, attempt), independent of the other scenes.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tools.synth_recipes import Scene
from tools.synth_scenes import RECIPES, SUBCLASSES
from tools.synth_sources import SPLITS, SourcePool, assign_folds, load_sources

MAX_ATTEMPTS = 25  # layouts redrawn when a main instance ends up hidden


def buildable(pool: SourcePool, subclasses: Sequence[str] = SUBCLASSES) -> tuple[str, ...]:
    """The subclasses this pool has the sources for."""
    out = []
    for name in subclasses:
        if name == "davis_native" and not pool.natives:
            continue
        if name == "interaction" and not pool.people():
            continue
        if name in ("candidates", "illustration", "no_subject") and len(pool.cutouts) < 2:
            continue
        out.append(name)
    return tuple(out)


def make_scene(pool: SourcePool, subclass: str, seed: int, index: int) -> Scene:
    """Scene ``index`` of ``subclass``; ``RuntimeError`` when no layout works."""
    recipe = RECIPES[subclass]
    for attempt in range(MAX_ATTEMPTS):
        rng = np.random.default_rng([int(seed), int(index), attempt])
        scene = recipe(rng, pool)
        if scene is not None:
            scene.params["attempt"] = attempt
            return scene
    raise RuntimeError(f"no valid {subclass} layout for scene {index} in {MAX_ATTEMPTS} tries")


def scene_entry(scene: Scene, name: str, fold: int) -> dict[str, Any]:
    """The manifest item of a scene (paths relative to the manifest's folder)."""
    ids = sorted(scene.labels)
    return {
        "name": name,
        "set": "synth",
        "subclass": scene.subclass,
        "gt_kind": "instance_mask",
        "files": {"image": f"images/{name}.jpg", "instances": f"instances/{name}.png"},
        "instance_labels": {str(i): scene.labels[i] for i in ids},
        "main_instances": [i for i in ids if scene.roles[i] in ("main", "interacting")],
        "roles": {str(i): scene.roles[i] for i in ids},
        "ranks": {str(i): scene.ranks[i] for i in ids},
        "sources": {"background": scene.background, "cutouts": sorted(set(scene.cutouts))},
        "fold": fold,
        "params": {k: round(float(v), 4) for k, v in scene.params.items()},
    }


def generate(
    pool: SourcePool,
    out_dir: str | Path,
    seed: int,
    count: int,
    n_folds: int = 1,
    subclasses: Sequence[str] = SUBCLASSES,
) -> dict[str, Any]:
    """Write ``count`` scenes and ``manifest.json`` into ``out_dir``; returns the manifest."""
    if count < 1:
        raise ValueError(f"count must be ≥ 1, got {count}")
    unknown = sorted(set(subclasses) - set(SUBCLASSES))
    if unknown:
        raise ValueError(f"unknown subclasses {unknown}; known: {', '.join(SUBCLASSES)}")
    folds = assign_folds(pool, n_folds)
    cycles = [buildable(f, subclasses) for f in folds]
    if not all(cycles):
        raise ValueError("a fold of the sources can build no scene: use fewer --folds")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "instances").mkdir(parents=True, exist_ok=True)
    items = []
    for k in range(count):
        fold = (k // len(subclasses)) % n_folds
        wanted = subclasses[k % len(subclasses)]
        # a fold that lacks a recipe's sources builds the next one it can
        subclass = wanted if wanted in cycles[fold] else cycles[fold][k % len(cycles[fold])]
        scene = make_scene(folds[fold], subclass, seed, k)
        name = f"{subclass}_{k:04d}"
        (out / "images" / f"{name}.jpg").write_bytes(scene.jpeg)
        if scene.index_map.max() > 255:
            raise RuntimeError(f"{name}: more than 255 instances")
        Image.fromarray(scene.index_map.astype(np.uint8), mode="L").save(
            out / "instances" / f"{name}.png"
        )
        items.append(scene_entry(scene, name, fold))
    manifest = {
        "generator": "tools.synth",
        "seed": int(seed),
        "count": int(count),
        "folds": int(n_folds),
        "subclass_counts": dict(Counter(it["subclass"] for it in items)),
        "items": items,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.synth", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--sources", required=True, help="manifest.json of source items")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--count", type=int, default=90)
    parser.add_argument("-o", "--out", required=True, help="output folder (outside the repo)")
    parser.add_argument("--split", choices=SPLITS, default="all", help="source groups to use")
    parser.add_argument("--folds", type=int, default=1, help="disjoint source pools (grouped CV)")
    parser.add_argument(
        "--subclasses", default=",".join(SUBCLASSES), help="comma-separated recipe names"
    )
    args = parser.parse_args(argv)
    try:
        pool = load_sources(args.sources, args.split)
        subclasses = tuple(s.strip() for s in args.subclasses.split(",") if s.strip())
        manifest = generate(pool, args.out, args.seed, args.count, args.folds, subclasses)
    except (ValueError, RuntimeError) as exc:
        print(f"synth: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {manifest['count']} scenes to {args.out}: {manifest['subclass_counts']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
