"""The int8 ISNet (``pipeline.stages.isnet_int8``): where the file lives, the errors a user sees,
the shipped calibration, and a real quantisation of a tiny random-weight ISNet-shaped model
(plumbing only: random weights say nothing about quality; the real file's quality is measured
in README, "Speed"). Quantising needs the ``onnx`` package (the ``quantize`` extra); the tests
that quantise skip without it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from pipeline.api import Remover
from pipeline.config import Config, load_config
from pipeline.stages.isnet_int8 import (
    RANGES_PATH,
    auto_int8,
    built_int8,
    input_convs,
    int8_path,
    quantize,
    shipped_ranges,
)
from pipeline.weights import WeightsError
from pipeline.weights_cli import main as weights_main

SIDE_PX = 32


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """An empty weights cache of this test's own."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("LAYERCUT_WEIGHTS", raising=False)
    return tmp_path / "xdg" / "layercut"


def tiny_isnet(path, seed: int = 0):
    """A random-weight model shaped like the ISNet export at 32²: ``input`` 1×3×32×32 → Cast →
    Conv 3→4 → Relu → Conv 4→4 → Relu → Conv 4→1 → Sigmoid → ``output``, plus a side output
    (as ISNet's deep-supervision maps) that the CPU rewrite drops."""
    onnx = pytest.importorskip("onnx", reason="quantising needs the onnx package")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)

    def conv(name, x, c_in, c_out):
        weight = numpy_helper.from_array(
            rng.normal(0, 0.5, (c_out, c_in, 3, 3)).astype(np.float32), f"{name}.w"
        )
        bias = numpy_helper.from_array(rng.normal(0, 0.1, c_out).astype(np.float32), f"{name}.b")
        node = helper.make_node(
            "Conv", [x, weight.name, bias.name], [f"{name}.y"], name=name, pads=[1, 1, 1, 1]
        )
        return node, [weight, bias]

    nodes = [helper.make_node("Cast", ["input"], ["cast"], name="cast", to=TensorProto.FLOAT)]
    inits = []
    x = "cast"
    for i, (c_in, c_out) in enumerate([(3, 4), (4, 4)]):
        node, params = conv(f"/conv{i}/Conv", x, c_in, c_out)
        nodes += [node, helper.make_node("Relu", [node.output[0]], [f"relu{i}"], name=f"r{i}")]
        inits += params
        x = f"relu{i}"
    head, params = conv("/head/Conv", x, 4, 1)
    nodes += [head, helper.make_node("Sigmoid", [head.output[0]], ["output"], name="sig")]
    nodes.append(helper.make_node("Sigmoid", [x], ["side"], name="side"))
    inits += params
    graph = helper.make_graph(
        nodes,
        "tiny_isnet",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, SIDE_PX, SIDE_PX])],
        [
            helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, SIDE_PX, SIDE_PX]),
            helper.make_tensor_value_info("side", TensorProto.FLOAT, [1, 4, SIDE_PX, SIDE_PX]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def photos(folder, count: int = 3):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(count):
        pixels = rng.integers(0, 256, (40 + 7 * i, 50, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"photo{i}.png")
    return folder


def test_int8_file_is_named_after_the_source_and_changes_when_it_does(tmp_path, cache):
    source = tmp_path / "isnet.onnx"
    source.write_bytes(b"one")
    first = int8_path(source)
    assert first.parent == cache / "int8" and first.name.startswith("isnet.")
    assert int8_path(source) == first
    source.write_bytes(b"other content")
    os.utime(source, ns=(1, 1))
    assert int8_path(source) != first


def test_missing_int8_file_names_the_command_that_builds_it(tmp_path):
    source = tmp_path / "isnet.onnx"
    source.write_bytes(b"not built yet")
    with pytest.raises(WeightsError, match="layercut weights quantize my-isnet") as info:
        built_int8(source, "my-isnet")
    assert "\n" not in str(info.value)
    config = load_config(
        None,
        [
            "saliency.model=isnet",
            f"saliency.weights={source}",
            "saliency.precision=int8",
        ],
    )
    with pytest.raises(WeightsError, match=f"layercut weights quantize {source}"):
        Remover(config).saliency  # noqa: B018 (the property builds the stage)


def test_precision_is_a_checked_choice():
    assert Config().saliency.precision == "fp32"
    assert load_config("cpu").saliency.precision == "auto"
    with pytest.raises(ValueError, match="saliency.precision must be one of fp32, int8, auto"):
        load_config(None, ["saliency.precision=int4"])


def auto_config(source) -> Config:
    """The map of ``source`` at ``saliency.precision = "auto"``, at the tiny model's input."""
    overrides = [f"saliency.weights={source}", f"saliency.input_px={SIDE_PX}"]
    return load_config(None, ["saliency.model=isnet", "saliency.precision=auto", *overrides])


def test_auto_precision_keeps_float32_for_a_file_without_shipped_ranges(tmp_path, cache):
    source = tiny_isnet(tmp_path / "tiny.onnx")
    assert auto_int8(source) is None
    assert not int8_path(source).exists()  # nothing built, nothing half-written
    image = np.random.default_rng(3).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    config = auto_config(source)
    from pipeline.stages.saliency import IsnetSaliency

    expected = IsnetSaliency(source, input_px=SIDE_PX, threads=1).predict(image)
    assert np.array_equal(Remover(config).saliency.predict(image), expected)


def test_auto_precision_uses_the_int8_file_once_it_is_built(tmp_path, cache):
    pytest.importorskip("onnx", reason="quantising needs the onnx package")
    from pipeline.stages.saliency import IsnetSaliency

    source = tiny_isnet(tmp_path / "tiny.onnx")
    built = quantize(source, sorted(photos(tmp_path / "calib").iterdir()))
    assert auto_int8(source) == built
    config = auto_config(source)
    image = np.random.default_rng(4).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    int8_map = IsnetSaliency(built, input_px=SIDE_PX, threads=1).predict(image)
    fp32_map = IsnetSaliency(source, input_px=SIDE_PX, threads=1).predict(image)
    assert not np.array_equal(int8_map, fp32_map)  # the two files are told apart
    assert np.array_equal(Remover(config).saliency.predict(image), int8_map)


def test_shipped_ranges_belong_to_one_file_and_are_ordered():
    data = json.loads(RANGES_PATH.read_text(encoding="utf-8"))
    ranges = shipped_ranges(data["source_sha256"])
    assert ranges and all(lo <= hi for lo, hi in ranges.values())
    assert shipped_ranges(hashlib.sha256(b"another file").hexdigest()) is None


def test_quantize_without_photos_refuses_a_file_it_has_no_ranges_for(tmp_path):
    source = tmp_path / "isnet.onnx"
    source.write_bytes(b"some other export")
    err = io.StringIO()
    assert weights_main(["quantize", str(source)], stderr=err) == 1
    message = err.getvalue()
    assert message.count("\n") == 1 and "--photos DIR" in message and str(source) in message
    err = io.StringIO()
    assert weights_main(["quantize", str(source), "--photos", str(tmp_path / "none")], stderr=err)
    assert "not a folder" in err.getvalue()


def test_quantized_tiny_isnet_runs_as_the_map_and_keeps_the_input_conv_float(tmp_path, cache):
    onnx = pytest.importorskip("onnx", reason="quantising needs the onnx package")
    from pipeline.stages.saliency import IsnetSaliency

    source = tiny_isnet(tmp_path / "tiny.onnx")
    folder = photos(tmp_path / "calib")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")  # skipped with a line, not fatal
    out = io.StringIO()
    assert weights_main(["quantize", str(source), "--photos", str(folder)], stdout=out) == 0
    built = built_int8(source, str(source))
    assert out.getvalue().strip() == str(built)
    model = onnx.load(built)
    ops = [node.op_type for node in model.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    assert [value.name for value in model.graph.output] == ["output"]  # side output dropped
    # the first convolution reads the float input: its weights stay float32
    floats = {i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    assert "/conv0/Conv.w" in floats and "/conv1/Conv.w" not in floats
    assert input_convs(onnx.load(source)) == ["/conv0/Conv"]

    image = np.random.default_rng(2).integers(0, 256, (45, 61, 3), dtype=np.uint8)
    saliency = IsnetSaliency(built, input_px=SIDE_PX, threads=1)
    result = saliency.predict(image)
    assert result.shape == (45, 61) and result.dtype == np.float32
    assert 0.0 <= result.min() <= result.max() <= 1.0
    # built once: a second call returns the same file without rebuilding it
    mtime_ns = built.stat().st_mtime_ns
    assert quantize(source, []) == built and built.stat().st_mtime_ns == mtime_ns


def test_calibration_without_a_readable_photo_is_one_error_line(tmp_path):
    pytest.importorskip("onnx", reason="quantising needs the onnx package")
    source = tiny_isnet(tmp_path / "tiny.onnx")
    folder = tmp_path / "calib"
    folder.mkdir()
    (folder / "broken.png").write_bytes(b"not a png")
    err = io.StringIO()
    assert weights_main(["quantize", str(source), "--photos", str(folder)], stderr=err) == 1
    message = err.getvalue()
    assert message.startswith("layercut weights: ") and message.count("\n") == 1
    assert "none of the 1 calibration photos could be read" in message


def test_auto_precision_builds_the_int8_file_of_the_export_whose_ranges_ship(tmp_path, cache):
    """The real isnet_medium.onnx (../shared/weights): built once from the shipped ranges, then
    found without rebuilding; a copy with one byte changed is not that export."""
    pytest.importorskip("onnx", reason="quantising needs the onnx package")
    from tests.checkpoints import shared_weights_dir

    real = shared_weights_dir() / "isnet_medium.onnx"
    if not real.is_file():
        pytest.skip(f"needs the real ISNet export at {real} (../shared absent)")
    built = auto_int8(real)
    assert built == int8_path(real) and built.is_file()
    mtime_ns = built.stat().st_mtime_ns
    assert auto_int8(real) == built and built.stat().st_mtime_ns == mtime_ns
    altered = tmp_path / "isnet_medium.onnx"
    data = bytearray(real.read_bytes())
    data[-1] ^= 1
    altered.write_bytes(bytes(data))  # same size, another sha256
    assert auto_int8(altered) is None and not int8_path(altered).exists()


def test_the_shipped_models_follow_the_precision_the_map_runs_at(tmp_path, cache):
    """int8 map → the ranker and keep model trained on int8 maps; fp32 map or no map → the
    float32 ones; a model named by path is used as given."""
    pytest.importorskip("onnx", reason="quantising needs the onnx package")
    source = tiny_isnet(tmp_path / "tiny.onnx")
    base = ["saliency.model=isnet", f"saliency.weights={source}", f"saliency.input_px={SIDE_PX}"]

    def names(*overrides):
        remover = Remover(load_config("cpu", [*base, *overrides]))
        return remover.ranker.name, remover.fusion.name

    assert names("saliency.precision=auto") == ("ranker", "keep")  # no int8 file: fp32
    assert names("saliency.precision=fp32") == ("ranker", "keep")
    quantize(source, sorted(photos(tmp_path / "calib").iterdir()))
    assert names("saliency.precision=auto") == ("ranker_int8", "keep_int8")
    assert names("saliency.precision=int8") == ("ranker_int8", "keep_int8")
    assert names("saliency.precision=fp32") == ("ranker", "keep")
    assert names("saliency.model=none", "saliency.precision=auto") == ("ranker", "keep")
    from pipeline.config import MODELS_DIR

    own = tmp_path / "my_ranker.json"
    own.write_text((MODELS_DIR / "ranker.json").read_text(encoding="utf-8"), encoding="utf-8")
    assert names("saliency.precision=auto", f"rank.model={own}")[0] == "ranker"


def test_auto_precision_falls_back_to_float32_in_one_line_when_the_cache_is_not_writable(
    tmp_path, monkeypatch, capsys
):
    pytest.importorskip("onnx", reason="quantising needs the onnx package")
    from tests.checkpoints import shared_weights_dir

    real = shared_weights_dir() / "isnet_medium.onnx"
    if not real.is_file():
        pytest.skip(f"needs the real ISNet export at {real} (../shared absent)")
    blocked = tmp_path / "not_a_folder"
    blocked.write_text("a file where the cache folder would be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    assert auto_int8(real) is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(real) in err and "runs in float32" in err
