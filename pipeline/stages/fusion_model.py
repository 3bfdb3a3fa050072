"""The learned keep decision as plain JSON data, and the rule that never keeps nothing.

The JSON document (it loads without executing code, unlike a pickle)::

    {"format": "layercut-keep-model", "version": 1, "kind": "trees" | "linear" | "agree",
     "features": [names…],
     # kind "trees": gradient-boosted regression trees on the log-odds
     "init": float, "learning_rate": float, "float32_inputs": bool (optional, default false:
     compare features rounded to float32, as trees grown on float32 data expect),
     "trees": [{"feature": [int…], "threshold": [float…], "left": [int…], "right": [int…],
                "value": [float…]}, …],
     # kind "agree": boosted-tree models fitted on bootstrap draws of the training photos
     # ("bags", leaf values holding the learning rate), read as one cautious model (below)
     "bags": [{"init": float, "trees": [...]}, …], "reference_drops": [names…],
     # kind "linear": a logistic regression on standardised features
     "mean": [...], "scale": [...], "coef": [...], "intercept": float,
     # optional: the keep thresholds by segment kind (``KeepThresholds``), each in [0, 1];
     # absent: KEEP_AT for every segment
     "policy": {"salient_drop_below": float, "detector_add_at": float,
                "instance_drop_below": float, …}}

A tree node with ``feature = -1`` is a leaf; an inner node sends ``x[feature] <= threshold`` to
``left``, else to ``right`` (scikit-learn's convention). Trees: ``p = σ(init + learning_rate ·
Σ leaf values)``; linear: ``p = σ(intercept + coef · (x − mean) / scale)``. Extra keys (a
``training`` block with data, folds and date; how the policy was chosen) are ignored by the
loader.

Kind "agree" changes the reference decision (the map alone; every instance without a map) only
where every bag agrees: a row the reference leaves out (every feature named in
``reference_drops`` > 0.5: with the shipped features ``kind_detector`` and ``has_saliency``, an
instance's pixels the map misses) gets the *lowest* of its bags' probabilities, so it is added
only when every bag is sure; any other row the *highest*, so it is dropped only when every bag
is. Why: held out, one booster's probability for a rare, large addition swung from 0.19 to 0.98
with the other photos in its training folds (``pipeline/models/KEEP_CARD.md``); what holds
across bootstrap draws of the photos is what the data teach, not what one photo happened to.

The thresholds make the decision asymmetric (``KeepThresholds``): with a map, a salient segment
(what the map alone would keep) is dropped only when its probability is below
``salient_drop_below`` and a segment the map does not call salient is added only at
``detector_add_at`` or more; without a map an instance is dropped below
``instance_drop_below``. They are learned by cross-validation (``tools.select_policy``) and
stored in the model's JSON, so a photo the map gets right is changed only where the model is
confident.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.stages.segments import SALIENT_KINDS

FORMAT = "layercut-keep-model"
VERSION = 1
# the threshold of every segment kind for a model without a "policy" block: the trees are
# trained with pixel-weighted labels, so 0.5 is where keeping starts to gain IoU in-sample
KEEP_AT = 0.5


@dataclass(frozen=True)
class KeepThresholds:
    """Keep thresholds (probabilities in [0, 1]) by segment kind
    (``pipeline.stages.segments``): a segment is kept when its probability is ≥ its kind's.

    Attributes:
        salient_drop_below: with a map, for the salient kinds (``SALIENT_KINDS``: what the map
            alone keeps): low, so the map's region is cut only where the model is confident.
        detector_add_at: with a map, for ``detector`` segments (an instance's pixels the map
            misses, or a whole instance with no salient pixel): high, so an addition needs
            confidence.
        instance_drop_below: without a map, for each (whole) instance.
    """

    salient_drop_below: float = KEEP_AT
    detector_add_at: float = KEEP_AT
    instance_drop_below: float = KEEP_AT

    def __post_init__(self) -> None:
        for name in POLICY_KEYS:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 <= float(value) <= 1.0):
                raise ValueError(f"keep threshold {name} must be a number in [0, 1], got {value!r}")

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any] | None) -> KeepThresholds:
        """From a model document's ``policy`` block (None: ``KEEP_AT`` everywhere)."""
        if doc is None:
            return cls()
        if not isinstance(doc, Mapping):
            raise ValueError("policy must be an object")
        missing = [k for k in POLICY_KEYS if k not in doc]
        if missing:
            raise ValueError(f"policy lacks {missing}")
        return cls(**{k: doc[k] for k in POLICY_KEYS})

    def to_doc(self) -> dict[str, float]:
        return {k: float(getattr(self, k)) for k in POLICY_KEYS}

    def per_segment(self, kinds: Sequence[str], has_map: bool) -> np.ndarray:
        """``(N,) float64`` threshold of each segment, by its kind and whether a map exists."""
        if not has_map:
            return np.full(len(kinds), float(self.instance_drop_below))
        salient = np.isin(np.asarray(kinds, dtype=object), SALIENT_KINDS)
        return np.where(salient, float(self.salient_drop_below), float(self.detector_add_at))


POLICY_KEYS = ("salient_drop_below", "detector_add_at", "instance_drop_below")


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60.0, 60.0)))


@dataclass(frozen=True)
class Tree:
    """One regression tree: parallel node arrays (leaves have ``feature == -1``)."""

    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray

    def predict(self, x: np.ndarray) -> np.ndarray:
        """``(N,)`` leaf values for ``(N, F)`` rows."""
        node = np.zeros(len(x), np.int64)
        rows = np.arange(len(x))
        for _ in range(len(self.feature)):  # bounded by the node count; ends at the leaves
            inner = self.feature[node] >= 0
            if not inner.any():
                break
            n, r = node[inner], rows[inner]
            go_left = x[r, self.feature[n]] <= self.threshold[n]
            node[inner] = np.where(go_left, self.left[n], self.right[n])
        return self.value[node]


class Forest:
    """Trees evaluated together: their node arrays padded to one length and stacked, so one
    pass per tree level walks every tree for every row. An 8-bag model is 1600 trees: for 12
    segments 1.1 ms this way, where ``Tree.predict`` tree by tree took 3.0 ms per 200 trees
    (medians of 30 on the 2-core development machine)."""

    def __init__(self, trees: Sequence[Tree]) -> None:
        size = max((len(t.feature) for t in trees), default=1)

        def stack(name: str, fill) -> np.ndarray:
            arrays = [getattr(t, name) for t in trees]
            padded = [np.pad(a, (0, size - len(a)), constant_values=fill) for a in arrays]
            return np.stack(padded) if padded else np.zeros((0, size), type(fill))

        self.feature = stack("feature", -1)
        self.threshold = stack("threshold", 0.0)
        self.left = stack("left", 0)
        self.right = stack("right", 0)
        self.value = stack("value", 0.0)

    def leaf_values(self, x: np.ndarray) -> np.ndarray:
        """``(T, N)`` each tree's leaf value for each of ``(N, F)`` rows (``Tree.predict``)."""
        n_trees, size = self.feature.shape
        tree = np.arange(n_trees)[:, None]
        row = np.arange(len(x))[None, :]
        node = np.zeros((n_trees, len(x)), np.int64)
        for _ in range(size):  # bounded by the node count; ends at the leaves
            feature = self.feature[tree, node]
            inner = feature >= 0
            if not inner.any():
                break
            go_left = x[row, np.maximum(feature, 0)] <= self.threshold[tree, node]
            step = np.where(go_left, self.left[tree, node], self.right[tree, node])
            node = np.where(inner, step, node)
        return self.value[tree, node]


class KeepModel:
    """Probability that a segment belongs to the kept region (see the module docstring)."""

    def __init__(self, doc: Mapping[str, Any], source: str = "keep model") -> None:
        if not isinstance(doc, Mapping) or doc.get("format") != FORMAT:
            raise ValueError(f"{source}: format must be {FORMAT!r}")
        if doc.get("version") != VERSION:
            raise ValueError(f"{source}: unsupported version {doc.get('version')!r}")
        features = doc.get("features")
        if not isinstance(features, list) or not features:
            raise ValueError(f"{source}: features must be a non-empty list of names")
        self.features = tuple(str(f) for f in features)
        self.kind = doc.get("kind")
        n = len(self.features)
        try:
            if self.kind == "trees":
                self.init = float(doc["init"])
                self.learning_rate = float(doc["learning_rate"])
                self.trees = [_tree(t, n) for t in doc["trees"]]
                self.forest = Forest(self.trees)
                self.float32_inputs = bool(doc.get("float32_inputs", False))
            elif self.kind == "agree":
                self.bags = [_bag(b, n) for b in doc["bags"]]
                if not self.bags or any(not trees for _, trees in self.bags):
                    raise ValueError("bags must be a non-empty list of non-empty tree lists")
                self.forest = Forest([t for _, trees in self.bags for t in trees])
                self.bag_inits = np.array([init for init, _ in self.bags])[:, None]
                # where each bag's trees start in the forest
                self.bag_starts = np.cumsum([0] + [len(trees) for _, trees in self.bags[:-1]])
                drops = doc["reference_drops"]
                if not isinstance(drops, list) or not drops:
                    raise ValueError("reference_drops must be a non-empty list of feature names")
                unknown = [f for f in drops if f not in self.features]
                if unknown:
                    raise ValueError(f"reference_drops names features the model lacks: {unknown}")
                self.reference_drops = np.array([self.features.index(f) for f in drops])
            elif self.kind == "linear":
                self.mean = _vector(doc["mean"], n, "mean")
                self.scale = _vector(doc["scale"], n, "scale")
                if np.any(self.scale <= 0):
                    raise ValueError("scale must be > 0")
                self.coef = _vector(doc["coef"], n, "coef")
                self.intercept = float(doc["intercept"])
            else:
                raise ValueError(f"kind must be 'trees', 'agree' or 'linear', got {self.kind!r}")
            self.thresholds = KeepThresholds.from_doc(doc.get("policy"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{source}: {exc}") from None
        self.doc = dict(doc)

    def columns(self, names: Sequence[str]) -> np.ndarray:
        """Indices of this model's features in a matrix whose columns are ``names``;
        ``ValueError`` naming a feature the matrix lacks."""
        index = {name: j for j, name in enumerate(names)}
        missing = [f for f in self.features if f not in index]
        if missing:
            raise ValueError(f"keep model needs features {missing} the matrix lacks")
        return np.array([index[f] for f in self.features], np.int64)

    def probability(self, x: np.ndarray, names: Sequence[str]) -> np.ndarray:
        """``(N,) float64`` keep probabilities of ``(N, len(names))`` rows."""
        x = np.asarray(x, np.float64)[:, self.columns(names)] if len(x) else np.zeros((0, 0))
        if len(x) == 0:
            return np.zeros(0)
        if self.kind == "trees":
            if self.float32_inputs:  # the trees were grown on float32 features
                x = x.astype(np.float32).astype(np.float64)
            z = self.init + self.learning_rate * self.forest.leaf_values(x).sum(axis=0)
        elif self.kind == "agree":
            sums = np.add.reduceat(self.forest.leaf_values(x), self.bag_starts, axis=0)
            bags = _sigmoid(self.bag_inits + sums)
            # x holds this model's features in its own order: reference_drops indexes them
            left_out = np.all(x[:, self.reference_drops] > 0.5, axis=1)
            return np.where(left_out, bags.min(axis=0), bags.max(axis=0))
        else:
            z = self.intercept + ((x - self.mean) / self.scale) @ self.coef
        return _sigmoid(np.asarray(z, np.float64))

    @classmethod
    def from_json(cls, path: str | Path | Traversable) -> KeepModel:
        """Load a JSON file (a path, or a file of the installed package: ``MODELS_DIR / name``);
        a missing or invalid file raises ``ValueError`` naming it."""
        path = Path(path) if isinstance(path, str) else path
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ValueError(f"cannot read keep model {path}: {exc.strerror or exc}") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"keep model {path} is not valid JSON: {exc}") from None
        return cls(doc, source=f"keep model {path}")

    def to_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.doc, indent=1) + "\n", encoding="utf-8")
        return path


def _vector(values: Any, n: int, name: str) -> np.ndarray:
    out = np.asarray(values, np.float64).reshape(-1)
    if out.shape != (n,) or not np.all(np.isfinite(out)):
        raise ValueError(f"{name} must hold {n} finite numbers")
    return out


def _bag(doc: Mapping[str, Any], n_features: int) -> tuple[float, list[Tree]]:
    """``(init, trees)`` of one bag of an "agree" model."""
    init = float(doc["init"])
    if not np.isfinite(init):
        raise ValueError("a bag's init must be finite")
    return init, [_tree(t, n_features) for t in doc["trees"]]


def _tree(doc: Mapping[str, Any], n_features: int) -> Tree:
    feature = np.asarray(doc["feature"], np.int64)
    size = len(feature)
    left = np.asarray(doc["left"], np.int64)
    right = np.asarray(doc["right"], np.int64)
    threshold = np.asarray(doc["threshold"], np.float64)
    value = np.asarray(doc["value"], np.float64)
    if not (len(left) == len(right) == len(threshold) == len(value) == size) or size == 0:
        raise ValueError("a tree's node arrays must be non-empty and of equal length")
    inner = feature >= 0
    if np.any(feature >= n_features) or np.any(feature < -1):
        raise ValueError("a tree node names a feature index out of range")
    children = np.concatenate([left[inner], right[inner]])
    if np.any((children < 1) | (children >= size)):
        raise ValueError("a tree node points to a child out of range")
    if not np.all(np.isfinite(value)) or not np.all(np.isfinite(threshold[inner])):
        raise ValueError("a tree holds non-finite values")
    return Tree(feature, threshold, left, right, value)


@dataclass(frozen=True)
class Decision:
    """The keep decision over one photo's segments.

    Attributes:
        probability: ``(N,)`` keep probability per segment.
        keep: ``(N,) bool``.
        keep_at: ``(N,)`` the threshold each segment was held to.
        fallback: "" normally; a sentence when no segment reached its threshold and the best
            candidate was kept so that a photo where something was found is never empty.
    """

    probability: np.ndarray
    keep: np.ndarray
    keep_at: np.ndarray
    fallback: str


def decide(probability: np.ndarray, keep_at: float | np.ndarray = KEEP_AT) -> Decision:
    """Keep the segments at ``probability ≥ keep_at`` (a number, or ``(N,)`` thresholds, e.g.
    ``KeepThresholds.per_segment``); when none is but some exist, keep the most probable one
    and say so (``Decision.fallback``)."""
    probability = np.asarray(probability, np.float64)
    thresholds = np.broadcast_to(np.asarray(keep_at, np.float64), probability.shape).copy()
    keep = probability >= thresholds
    fallback = ""
    if len(probability) and not keep.any():
        best = int(np.argmax(probability))
        keep[best] = True
        fallback = (
            f"no candidate reached its keep threshold ({thresholds[best]:.2f} for the most "
            f"probable); kept the most probable one ({probability[best]:.2f}) rather than nothing"
        )
    return Decision(probability, keep, thresholds, fallback)
