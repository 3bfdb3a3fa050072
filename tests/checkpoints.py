"""Test helpers: random-weight checkpoints built on demand, and the shared real data folder.

The ``checkpoints`` fixture (``tests/conftest.py``) is a session-wide ``RandomCheckpoints``::

    def test_x(checkpoints):
        weights = checkpoints.path("yolo11n-seg")          # built once, then reused
        manifest = checkpoints.manifest(["yolo11n-seg"])   # for LAYERCUT_MANIFEST
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from pipeline.testing import MANIFEST_NAME, build_random, write_manifest


def shared_root() -> Path:
    """``$LAYERCUT_SHARED``, else ``../shared`` next to the repository (may not exist)."""
    env = os.environ.get("LAYERCUT_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared"


def shared_weights_dir() -> Path:
    """The real pretrained weights: ``<shared>/weights`` (may not exist)."""
    return shared_root() / "weights"


def real_isnet() -> Path:
    """The real ISNet salient map of ``../shared`` (may not exist)."""
    return shared_weights_dir() / "isnet_medium.onnx"


# The presets turn the salient map (ISNet) on. No random-weight ISNet can be built here (its
# architecture is not in our dependencies), so plumbing tests with random weights run the
# presets with the map off; the map's own path is tested with the real ISNet where ../shared
# has it (test_real_saliency, test_real_detector) and with a fixed map (test_remover).
MAP_OFF = ("--set", "saliency.model=none")


class RandomCheckpoints:
    """Random-weight checkpoints of the real architectures, each built once into ``root``.

    Names are those of :data:`pipeline.testing.RANDOM_MODELS` (``yolo11n-seg``, ``yolo11n``,
    ``mobile_sam``, ``sam_vit_b`` …). Building takes well under a second (YOLO, MobileSAM) to
    about 3 s (SAM ViT-B).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._paths: dict[str, Path] = {}

    def path(self, name: str) -> Path:
        """The checkpoint file for ``name``, building it on first use."""
        if name not in self._paths:
            self._paths[name] = build_random(name, self.root)
        return self._paths[name]

    def manifest(self, names: Iterable[str]) -> Path:
        """A ``pipeline/models/weights.json``-style manifest for ``names`` (``file://`` URLs,
        sha256)."""
        return write_manifest({name: self.path(name) for name in names}, self.root / MANIFEST_NAME)

    def cleanup(self) -> None:
        """Delete every file built here (pytest keeps old tmp folders around)."""
        shutil.rmtree(self.root, ignore_errors=True)
        self._paths.clear()
