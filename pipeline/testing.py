"""Random-weight checkpoints of the real architectures, for tests and benchmarks.

Random weights give meaningless masks: use them to test plumbing (shapes, types, files, errors)
and to time forward passes (their cost does not depend on the weight values), never quality.

Each builder writes one file in the format the product's loaders read:

- ``yolo11n-seg`` → ``yolo11n-seg.pt``: an Ultralytics checkpoint (``YOLO.save``), loads with
  ``YOLO(path)``. ``yolo11n`` (detect-only) exists to test the "not a -seg model" error.
- ``mobile_sam`` → ``mobile_sam.pt``: a MobileSAM state dict, as Ultralytics distributes it.
- ``sam_vit_b`` / ``sam_vit_l`` / ``sam_vit_h`` → ``<name>.pth``: ``segment_anything`` state
  dicts, as Meta distributes them (ViT-B ≈ 375 MB on disk, built in ≈ 3 s).

``write_random_weights(out_dir, names)`` builds several and writes a manifest in the format of
``pipeline/models/weights.json`` (read by ``pipeline.weights`` through ``LAYERCUT_MANIFEST``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path

from pipeline.stages.ultra import import_ultralytics

MANIFEST_NAME = "manifest.json"
DEFAULT_MODELS = ("yolo11n-seg", "mobile_sam", "sam_vit_b")
# Ultralytics drops every prediction whose mask is empty, and for about half of the random inits
# (seeds 0, 3, 4, 5 here) every mask of yolo11n-seg is empty on any photo, so it "finds" nothing
# even at conf=1e-4. Seed 1 gives 20 instances with masks at conf=1e-4, max_det=20.
YOLO_SEED = 1


def _seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)  # same weights, same outputs: failures reproduce


def build_yolo(out_dir: Path, name: str, seed: int = YOLO_SEED) -> Path:
    """Random-weight Ultralytics model from its YAML (``yolo11n-seg``, ``yolo11n`` …) as ``.pt``."""
    _seed(seed)
    model = import_ultralytics().YOLO(f"{name}.yaml")
    path = Path(out_dir) / f"{name}.pt"
    model.save(str(path))
    return path


def build_mobile_sam(out_dir: Path, seed: int = 0) -> Path:
    """Random-weight MobileSAM (Ultralytics' builder) saved as a state dict ``mobile_sam.pt``."""
    import torch

    import_ultralytics()
    from ultralytics.models.sam.build import build_mobile_sam as ultralytics_mobile_sam

    _seed(seed)
    path = Path(out_dir) / "mobile_sam.pt"
    torch.save(ultralytics_mobile_sam().state_dict(), path)
    return path


def build_sam(out_dir: Path, name: str = "sam_vit_b", seed: int = 0) -> Path:
    """Random-weight ``segment_anything`` model (``sam_vit_b|l|h``) saved as ``<name>.pth``."""
    import torch
    from segment_anything import sam_model_registry

    _seed(seed)
    model = sam_model_registry[name.removeprefix("sam_")](checkpoint=None)
    path = Path(out_dir) / f"{name}.pth"
    torch.save(model.state_dict(), path)
    return path


def _builders() -> dict[str, tuple[str, Callable[[Path], Path]]]:
    """name → (pipeline stage, builder writing into a folder)."""
    return {
        "yolo11n-seg": ("detect", lambda out: build_yolo(out, "yolo11n-seg")),
        "yolo11n": ("detect", lambda out: build_yolo(out, "yolo11n")),
        "mobile_sam": ("segment", build_mobile_sam),
        "sam_vit_b": ("segment", lambda out: build_sam(out, "sam_vit_b")),
        "sam_vit_l": ("segment", lambda out: build_sam(out, "sam_vit_l")),
        "sam_vit_h": ("segment", lambda out: build_sam(out, "sam_vit_h")),
    }


RANDOM_MODELS = tuple(_builders())


def build_random(name: str, out_dir: Path) -> Path:
    """Write the random-weight checkpoint ``name`` into ``out_dir`` and return its path."""
    builders = _builders()
    if name not in builders:
        raise ValueError(f"unknown random model {name!r}; expected one of: {', '.join(builders)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return builders[name][1](out_dir)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_entry(name: str, path: Path) -> dict:
    """One ``weights`` entry of a ``pipeline/models/weights.json``-style manifest for a built
    file."""
    stage = _builders()[name][0] if name in _builders() else "test"
    path = Path(path).resolve()
    return {
        "name": name,
        "filename": path.name,
        "url": path.as_uri(),
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        "licence": "test",
        "stage": stage,
        "source": "random weights",
    }


def write_manifest(paths: dict[str, Path], manifest_path: Path) -> Path:
    """Write ``{"version": 1, "weights": [...]}`` for ``name → file`` and return its path."""
    manifest = {
        "version": 1,
        "weights": [manifest_entry(name, path) for name, path in paths.items()],
    }
    manifest_path = Path(manifest_path)
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest_path


def write_random_weights(out_dir: Path, names: Iterable[str] = DEFAULT_MODELS) -> Path:
    """Build ``names`` into ``out_dir`` plus ``out_dir/manifest.json``; return the manifest path."""
    out_dir = Path(out_dir)
    paths = {name: build_random(name, out_dir) for name in names}
    return write_manifest(paths, out_dir / MANIFEST_NAME)
