"""The pipeline's result: a stack of ranked layers that can be switched on and off.

``Layers`` keeps the photo, every instance ranked by score, the keep policy's decisions and a
lazily filled cache of mattes, so a caller can toggle layers, switch the keep mode and
re-composite without running any network again (only pymatting runs, once per instance, on the
first composite that needs it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.outputs import encode, get_format, write_folder
from pipeline.types import (
    Instance,
    KeepMode,
    Matte,
    Role,
    Selection,
    check_image,
    check_saliency,
    ids_to_ranks,
    resolve_refs,
)

SelectFn = Callable[[Sequence[Instance], KeepMode], Selection]  # decisions follow the instances
RefineFn = Callable[[np.ndarray, Instance], Matte]


def rank_instances(instances: Sequence[Instance]) -> list[Instance]:
    """The instances best first: by ``score`` descending, ties in the given order. Layer ``k``
    of ``Layers`` holds the ``k``-th of this list."""
    return sorted(instances, key=lambda inst: -float(inst.score))


class Layer:
    """One ranked instance: its rank (1 = best), role, reason and on/off switch.

    ``rank`` is how a user names the layer (file ``01-person.png``, the page, the debug view,
    the reasons); ``instance.id`` is the detector's proposal index, kept for tracing only.
    ``reason`` names other layers by rank (``pipeline.types.instance_ref``). ``matte`` (alpha
    + decontaminated colour on a crop) is computed on first access.
    """

    def __init__(self, owner: Layers, rank: int, instance: Instance, role: Role, reason: str):
        self._owner = owner
        self.rank = rank
        self.instance = instance
        self.role = role
        self.reason = reason
        # the caller's switch (``Layers.set_enabled``, or ``enabled = …``); None: follow the role
        self.switched: bool | None = None

    @property
    def enabled(self) -> bool:
        """Whether the layer is on: the caller's switch when there is one, else whether the keep
        policy keeps it (``role.kept``). Setting it is a switch (``Layers.set_enabled``)."""
        return self.role.kept if self.switched is None else self.switched

    @enabled.setter
    def enabled(self, on: bool) -> None:
        self.switched = bool(on)

    @property
    def label(self) -> str:
        return self.instance.label

    @property
    def score(self) -> float:
        return float(self.instance.score)

    @property
    def matte(self) -> Matte:
        return self._owner._matte(self.instance)

    @property
    def filename_stem(self) -> str:
        """``01-person``: the rank with two digits and a file-safe label."""
        safe = "".join(c if c.isalnum() else "_" for c in self.label) or "object"
        return f"{self.rank:02d}-{safe}"

    def rgba(self) -> np.ndarray:
        """This layer alone as an ``H×W×4 uint8`` RGBA image at full resolution."""
        return self._owner._compose([self])

    def crop_rgba(self) -> tuple[np.ndarray, int, int]:
        """This layer alone, cropped to its matte: ``(h×w×4 uint8 RGBA, x0, y0)``, with ``x0``,
        ``y0`` the crop's top-left corner in the photo. The input file's own transparency is
        multiplied in, as in ``rgba()``; an empty matte gives one transparent pixel. The matte
        as refined: a client composing several crops keeps each soft edge off the masks of the
        layers it leaves out, as ``Layers.composite`` does."""
        matte = self.matte
        h, w = matte.alpha.shape
        if h == 0 or w == 0:  # an empty mask: one transparent pixel keeps every decoder happy
            return np.zeros((1, 1, 4), np.uint8), int(matte.x0), int(matte.y0)
        alpha = matte.alpha
        if self._owner.input_alpha is not None:
            sl = (slice(matte.y0, matte.y0 + h), slice(matte.x0, matte.x0 + w))
            alpha = alpha * self._owner.input_alpha[sl]
        return to_rgba(matte.foreground, alpha), int(matte.x0), int(matte.y0)

    def __repr__(self) -> str:
        state = "on" if self.enabled else "off"
        return f"Layer(rank={self.rank}, label={self.label!r}, role={self.role.value}, {state})"


class Layers:
    """Ranked layers of one photo, complete when built: nothing outside this class writes into
    it, except the switches a caller flips (``set_keep``, ``set_enabled``).

    Args:
        image: ``H×W×3 uint8`` RGB photo.
        instances: instances with ``score`` set, in any order (they are ranked here with
            ``rank_instances``).
        keep: the keep mode the decisions are made for.
        select_fn: the keep policy, ``fn(ranked, mode) -> Selection``; re-run for another mode
            (no networks involved).
        refine_fn: turns one instance into a ``Matte``.
        input_alpha: ``H×W float32`` transparency of the input file, multiplied into every output.
        timings_s: seconds per stage (``pipeline.api.Remover.run`` gives every stage and
            ``total``); mattes computed later add their time to ``refine``.
        source: the input's path, for the manifest ("" when not from a file).
        saliency: the image's ``H×W float32`` salient-object map in [0, 1], when one was
            computed (the evaluation's rules read it).
        selection: ``select_fn(rank_instances(instances), keep)`` when the caller already has
            it; otherwise it is computed here.
        mattes: instance id → ``Matte`` already computed for some instances (the kept ones).
        contributions: instance id → {cue: its additive share of the score}, from a ranker
            that gives them (``pipeline.explain.ranker_contributions``); the debug view
            prints the largest.
        candidates: the instances before fusion cut the kept ones (default: the layers').
    """

    def __init__(
        self,
        image: np.ndarray,
        instances: Sequence[Instance],
        keep: KeepMode,
        select_fn: SelectFn,
        refine_fn: RefineFn,
        input_alpha: np.ndarray | None = None,
        timings_s: Mapping[str, float] | None = None,
        source: str = "",
        *,
        saliency: np.ndarray | None = None,
        selection: Selection | None = None,
        mattes: Mapping[int, Matte] | None = None,
        contributions: Mapping[int, Mapping[str, float]] | None = None,
        candidates: Sequence[Instance] | None = None,
    ):
        self.image = check_image(image)
        if input_alpha is not None and input_alpha.shape != image.shape[:2]:
            raise ValueError(f"input_alpha must be {image.shape[:2]}, got {input_alpha.shape}")
        self.input_alpha = input_alpha
        self.source = source
        self._saliency = None if saliency is None else check_saliency(saliency, image.shape[:2])
        self.timings_s: dict[str, float] = dict(timings_s or {})
        self._select_fn = select_fn
        self._refine_fn = refine_fn
        self._mattes: dict[int, Matte] = dict(mattes or {})
        self.contributions = dict(contributions or {})
        ranked = rank_instances(instances)
        self.candidates = list(ranked if candidates is None else candidates)
        self.layers = [Layer(self, i + 1, inst, Role.DROPPED, "") for i, inst in enumerate(ranked)]
        # in [0, 1], the keep policy's doubt about the main subject (``pipeline.stages.select``)
        self.ambiguity = 1.0
        # other main selections the policy offers, best first, each a tuple of ranks
        self.alternatives: tuple[tuple[int, ...], ...] = ()
        self.keep = KeepMode.parse(keep)
        if selection is None:
            self.set_keep(self.keep)
        else:
            self._apply(self.keep, self._checked(selection))

    @property
    def saliency(self) -> np.ndarray | None:
        """The ``H×W float32`` salient-object map in [0, 1], or None when none was computed."""
        return self._saliency

    # -- sequence protocol -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, index: int) -> Layer:
        return self.layers[index]

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    @property
    def instances(self) -> list[Instance]:
        return [layer.instance for layer in self.layers]

    @property
    def hw(self) -> tuple[int, int]:
        return self.image.shape[0], self.image.shape[1]

    # -- selection and toggles ---------------------------------------------------------------
    def _selection(self, keep: KeepMode) -> Selection:
        return self._checked(self._select_fn(self.instances, keep))

    def _checked(self, selection: Selection) -> Selection:
        if len(selection.decisions) != len(self.layers):
            raise ValueError(
                f"keep policy returned {len(selection.decisions)} decisions "
                f"for {len(self.layers)} instances"
            )
        return selection

    def set_keep(self, keep: KeepMode | str) -> None:
        """Re-run the keep policy for ``keep`` and start over from it: roles, reasons, ambiguity
        and alternatives change, and every switch made with ``set_enabled`` is forgotten."""
        mode = KeepMode.parse(keep)
        self._apply(mode, self._selection(mode))

    def _apply(self, mode: KeepMode, selection: Selection) -> None:
        """Take ``selection``; reasons and alternatives name layers by rank (resolve_refs)."""
        rank_of = {layer.instance.id: layer.rank for layer in self.layers}
        reasons = [resolve_refs(d.reason, rank_of) for d in selection.decisions]
        alternatives = tuple(ids_to_ranks(alt, rank_of) for alt in selection.alternatives)
        for layer, decision, reason in zip(self.layers, selection.decisions, reasons, strict=True):
            layer.role = decision.role
            layer.reason = reason
            layer.switched = None
        self.keep = mode
        self.ambiguity = float(selection.ambiguity)
        self.alternatives = alternatives
        self.fallback = getattr(selection, "fallback", "")  # or why the best candidate was kept

    def set_enabled(self, rank: int, on: bool = True) -> None:
        """Switch the layer with this 1-based rank on or off. The switch holds for every later
        composite, with or without ``keep=``, until ``set_keep`` starts over."""
        if not 1 <= rank <= len(self.layers):
            raise IndexError(f"no layer with rank {rank} (have 1..{len(self.layers)})")
        self.layers[rank - 1].enabled = bool(on)

    def kept_layers(self, keep: KeepMode | str | None = None) -> list[Layer]:
        """Layers that are on. With ``keep`` given, those the policy keeps for that mode, except
        that a layer switched with ``set_enabled`` stays as switched: switched off stays off
        (``keep`` never brings it back), switched on stays on."""
        if keep is None:
            return [layer for layer in self.layers if layer.enabled]
        selection = self._selection(KeepMode.parse(keep))
        return [
            layer
            for layer, decision in zip(self.layers, selection.decisions, strict=True)
            if (decision.role.kept if layer.switched is None else layer.switched)
        ]

    # -- compositing ---------------------------------------------------------------------------
    def matte_all(self) -> None:
        """Matte every layer now (not only those on), e.g. before handing the layers to a client
        that toggles them; the time goes into ``timings_s['refine']`` and, when present,
        ``timings_s['total']``."""
        start = time.perf_counter()
        for layer in self.layers:
            self._matte(layer.instance)
        if "total" in self.timings_s:
            self.timings_s["total"] += time.perf_counter() - start

    def _matte(self, instance: Instance) -> Matte:
        if instance.id not in self._mattes:
            start = time.perf_counter()
            self._mattes[instance.id] = self._refine_fn(self.image, instance)
            elapsed = time.perf_counter() - start
            self.timings_s["refine"] = self.timings_s.get("refine", 0.0) + elapsed
        return self._mattes[instance.id]

    def _alpha_and_colour(self, layers: Sequence[Layer]) -> tuple[np.ndarray, np.ndarray]:
        """Union alpha ``1 − Π(1 − aᵢ)`` and the alpha-weighted mean of the colours of
        ``layers``. A layer's soft edge never paints the mask of a layer left out (outside its
        own mask): switching an occluder off leaves no sliver of it (no ghost) in its
        neighbour's edge. The page composes by the same rule."""
        h, w = self.hw
        keep_out = np.ones((h, w), np.float32)  # Π(1 − aᵢ)
        colour_sum = np.zeros((h, w, 3), np.float32)
        weight_sum = np.zeros((h, w), np.float32)
        shown = {id(layer) for layer in layers}
        hidden = np.zeros((h, w), bool)
        for layer in self.layers:
            if id(layer) not in shown:
                hidden |= layer.instance.mask
        for layer in layers:
            matte = layer.matte.within(layer.instance.mask | ~hidden)
            mh, mw = matte.alpha.shape
            sl = (slice(matte.y0, matte.y0 + mh), slice(matte.x0, matte.x0 + mw))
            keep_out[sl] *= 1.0 - matte.alpha
            colour_sum[sl] += matte.alpha[..., None] * matte.foreground.astype(np.float32)
            weight_sum[sl] += matte.alpha
        alpha = 1.0 - keep_out
        if self.input_alpha is not None:
            alpha *= self.input_alpha
        colour = self.image.astype(np.float32)
        covered = weight_sum > 1e-6
        colour[covered] = colour_sum[covered] / weight_sum[covered][:, None]
        return alpha.astype(np.float32), colour

    def _compose(self, layers: Sequence[Layer]) -> np.ndarray:
        alpha, colour = self._alpha_and_colour(layers)
        return to_rgba(colour, alpha)

    def composite(self, keep: KeepMode | str | None = None, background=None) -> np.ndarray:
        """``H×W×4 uint8`` RGBA of the layers that are on, or with ``keep`` of those that mode
        keeps; either way a layer switched off with ``set_enabled`` stays off (``kept_layers``).
        With a ``background`` (a colour, an image or ``"blur"``: ``pipeline.background``) the
        layers laid over it, ``H×W×3 uint8`` RGB without alpha. The current mode and switches
        are not changed."""
        alpha, colour = self._alpha_and_colour(self.kept_layers(keep))
        if background is None:
            return to_rgba(colour, alpha)
        from pipeline.background import over

        return over(colour, alpha, background, self.image)

    def alpha(self, keep: KeepMode | str | None = None) -> np.ndarray:
        """``H×W float32`` alpha in [0, 1] of the layers ``composite(keep)`` shows (a layer
        switched off with ``set_enabled`` stays off)."""
        return self._alpha_and_colour(self.kept_layers(keep))[0]

    def kept_mask(self, keep: KeepMode | str | None = None) -> np.ndarray:
        """``H×W bool`` union of the masks (before matting) of ``kept_layers(keep)``."""
        mask = np.zeros(self.hw, bool)
        for layer in self.kept_layers(keep):
            mask |= layer.instance.mask
        return mask

    # -- export ------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The JSON-serialisable manifest (``pipeline.manifest.manifest_json``): size, keep
        mode, ``ambiguity``, ``alternatives`` (ranks), timings and every layer, best first."""
        from pipeline.manifest import manifest_json

        return manifest_json(self)

    def debug_view(self) -> np.ndarray:
        """``H'×W'×3 uint8``: every instance outlined, numbered, coloured by role, with the
        cues that moved its rank, beside the alpha and the salient map (``pipeline.viz``)."""
        from pipeline.viz import layers_debug_view

        return layers_debug_view(self)

    def files(
        self,
        fmt: str = "png",
        *,
        png_compress_level: int = 1,
        webp_quality: int = 90,
        debug: bool = False,
    ) -> Iterator[tuple[str, bytes]]:
        """Every file of the layer set, as ``(relative name, bytes)``, one at a time: one
        full-size RGBA file per layer (``01-person.png`` …), ``composite.<ext>``, with ``debug``
        ``debug.png`` (the debug view), and last ``layers.json`` (``to_json()`` plus each
        layer's ``file``, ``composite`` and, with ``debug``, ``debug``). Both ``save`` and the
        server's ZIP write exactly these."""
        spec = get_format(fmt)
        options = {"png_compress_level": png_compress_level, "webp_quality": webp_quality}
        names = {layer.rank: f"{layer.filename_stem}{spec.extension}" for layer in self.layers}
        for layer in self.layers:
            yield names[layer.rank], encode(layer.rgba(), spec, **options)
        composite = f"composite{spec.extension}"
        yield composite, encode(self.composite(), spec, **options)
        if debug:
            yield "debug.png", encode(self.debug_view(), "png", **options)
        manifest = self.to_json()  # after the mattes, so timings_s counts their refine time
        for entry, layer in zip(manifest["layers"], self.layers, strict=True):
            entry["file"] = names[layer.rank]
        manifest["composite"] = composite
        if debug:
            manifest["debug"] = "debug.png"
        yield "layers.json", json.dumps(manifest, indent=1).encode("utf-8")

    def save(
        self,
        out_dir: str | Path,
        fmt: str = "png",
        png_compress_level: int = 1,
        webp_quality: int = 90,
        protect: Sequence[Path] = (),
    ) -> list[Path]:
        """Write ``files()`` as the folder ``out_dir``, atomically as a whole (``outputs.
        write_folder``: a previous folder there is replaced, a symlink is never followed, a
        failure leaves no partial folder), never over one of ``protect``; returns the paths
        written, ``layers.json`` last."""
        options = {"png_compress_level": png_compress_level, "webp_quality": webp_quality}
        return write_folder(out_dir, self.files(fmt, **options), protect)


def to_rgba(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``h×w×4 uint8`` RGBA from ``h×w×3`` colour (any real dtype, rounded) and ``h×w`` alpha
    in [0, 1]: the one place a matte becomes pixels."""
    rgba = np.empty((*alpha.shape, 4), np.uint8)
    rgba[..., :3] = np.clip(colour + 0.5, 0, 255).astype(np.uint8)
    rgba[..., 3] = np.clip(alpha * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return rgba
