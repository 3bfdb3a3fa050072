"""A float16 ONNX export widened to float32 in memory (``pipeline.stages.onnx_fp32``): the same
function at higher precision, nothing float16 left, and models without float16 untouched.

The test model is written here with a minimal protobuf encoder (the ``onnx`` package is not a
dependency): input float → Cast(to=float16) → Mul by a float16 weight → Cast(to=float) →
output, the structure of ``isnet_medium.onnx``'s half-precision blocks.
"""

from __future__ import annotations

import struct

import numpy as np
import onnxruntime as ort
import pytest

from pipeline.stages.onnx_fp32 import FLOAT, FLOAT16, _messages, float16_to_float32, for_cpu
from tests.checkpoints import shared_weights_dir


def varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number: int, value) -> bytes:
    """One protobuf field: int → varint, bytes/str → length-delimited."""
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    data = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(data)) + data


def tensor_type(elem_type: int, dims: list[int]) -> bytes:
    shape = b"".join(field(1, field(1, d)) for d in dims)  # TensorShapeProto.dim.dim_value
    return field(1, field(1, elem_type) + field(2, shape))  # TypeProto.tensor_type


def value_info(name: str, elem_type: int, dims: list[int]) -> bytes:
    return field(1, name) + field(2, tensor_type(elem_type, dims))


def node(op: str, inputs: list[str], outputs: list[str], to: int | None = None) -> bytes:
    data = b"".join(field(1, i) for i in inputs) + b"".join(field(2, o) for o in outputs)
    data += field(4, op)
    if to is not None:  # AttributeProto name, i, type=INT (2)
        data += field(5, field(1, "to") + field(3, to) + field(20, 2))
    return data


def half_model(weights: np.ndarray, side_output: bool = False) -> bytes:
    """A ``1×n`` float model computing ``x * weights`` through float16; with ``side_output``
    a second graph output ``s = x * weights * weights`` (as ISNet's side maps)."""
    n = weights.size
    weight = (
        field(1, 1) + field(1, n) + field(2, FLOAT16) + field(8, "w")
        + field(9, weights.astype("<f2").tobytes())
    )  # fmt: skip
    graph = (
        field(1, node("Cast", ["x"], ["x16"], to=FLOAT16))
        + field(1, node("Mul", ["x16", "w"], ["y16"]))
        + field(1, node("Cast", ["y16"], ["y"], to=FLOAT))
        + field(2, "half")
        + field(5, weight)
        + field(11, value_info("x", FLOAT, [1, n]))
        + field(12, value_info("y", FLOAT, [1, n]))
        + field(13, value_info("x16", FLOAT16, [1, n]))
    )
    if side_output:
        graph += (
            field(1, node("Mul", ["y16", "w"], ["s16"]))
            + field(1, node("Cast", ["s16"], ["s"], to=FLOAT))
            + field(12, value_info("s", FLOAT, [1, n]))
        )
    opset = field(1, "") + field(2, 13)
    return field(1, 8) + field(8, opset) + field(7, graph)


def run(model: bytes, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_a_half_model_becomes_float_and_computes_the_same_at_higher_precision():
    rng = np.random.default_rng(0)
    weights = rng.uniform(-3, 3, 64).astype(np.float32)
    x = rng.uniform(-3, 3, (1, 64)).astype(np.float32)
    half = half_model(weights)
    wide = float16_to_float32(half)
    assert wide is not None
    exact = x * weights.astype(np.float16).astype(np.float32)  # the weights as stored
    np.testing.assert_allclose(run(half, x), exact, rtol=2e-3)  # float16 activations round
    np.testing.assert_allclose(run(wide, x), exact, rtol=1e-6)
    assert float16_to_float32(wide) is None  # no float16 tensor left
    model = _messages()["ModelProto"]()
    model.ParseFromString(wide)
    casts = [a.i for n in model.graph.node if n.op_type == "Cast" for a in n.attribute]
    assert casts == [FLOAT, FLOAT] and len(model.graph.value_info) == 0


def test_a_model_without_float16_is_left_as_it_is():
    wide = float16_to_float32(half_model(np.ones(4, np.float32)))
    assert float16_to_float32(wide) is None
    assert struct.pack("<f", 1.0) in wide  # the weight is stored as float32 now


def test_for_cpu_keeps_the_one_output_asked_for_and_onnxruntime_drops_what_only_others_need():
    rng = np.random.default_rng(2)
    weights = rng.uniform(-3, 3, 8).astype(np.float32)
    x = rng.uniform(-3, 3, (1, 8)).astype(np.float32)
    both = half_model(weights, side_output=True)
    pruned, kept = for_cpu(both, "y")
    assert kept == "y" and pruned is not None
    session = ort.InferenceSession(pruned, providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["y"]
    np.testing.assert_allclose(session.run(None, {"x": x})[0], run(both, x), rtol=2e-3)
    model = _messages()["ModelProto"]()
    model.ParseFromString(pruned)
    assert [n.op_type for n in model.graph.node].count("Mul") == 2  # stored; onnxruntime prunes
    # a name the graph does not have: its first output, as exports without names order them
    assert for_cpu(both, "output")[1] == "y"
    # nothing to widen and one output: nothing to rewrite
    assert for_cpu(float16_to_float32(half_model(weights)), "y") == (None, "y")


ISNET = shared_weights_dir() / "isnet_medium.onnx"


@pytest.mark.skipif(not ISNET.is_file(), reason=f"{ISNET} absent (../shared weights)")
def test_isnet_medium_widened_gives_the_same_map():
    wide = float16_to_float32(ISNET.read_bytes())
    assert wide is not None
    x = np.random.default_rng(1).uniform(-0.5, 0.5, (1, 3, 1024, 1024)).astype(np.float32)
    pruned, kept = for_cpu(ISNET.read_bytes(), "output")
    assert kept == "output"
    out = {}
    for name, model in (("half", str(ISNET)), ("wide", wide), ("pruned", pruned)):
        session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        out[name] = session.run(["output"], {"input": x})[0]
    assert np.abs(out["half"] - out["wide"]).max() < 5e-3
    assert np.array_equal(out["wide"], out["pruned"])  # the side maps do not feed the map
