"""layercut: a background remover that knows what to keep.

Public API (imported lazily so ``import pipeline`` stays cheap)::

    from pipeline import Remover, Layers, KeepMode
    remover = Remover.from_config()          # cpu or quality preset by device
    layers = remover("photo.jpg")            # ranked layers
    rgba = layers.composite(keep="main")     # H×W×4 uint8
"""

from __future__ import annotations

from pipeline.types import Instance, KeepMode, Role

__all__ = ["Instance", "KeepMode", "Layers", "Remover", "Role"]


def __getattr__(name: str):
    if name == "Remover":
        from pipeline.api import Remover

        return Remover
    if name == "Layers":
        from pipeline.layers import Layers

        return Layers
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
