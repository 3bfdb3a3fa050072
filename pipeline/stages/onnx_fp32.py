"""An ONNX model stored in float16, rewritten to float32 in memory for onnxruntime's CPU provider.

Half-precision exports such as ``isnet_medium.onnx`` (every weight float16, the input cast to
float16, casts to float32 around each resize) run on a CPU through kernels onnxruntime has only
in float32: it inserts a cast before and after each of them, and every activation of the
1024² pass then exists twice. The same graph with its float16 tensors widened to float32 and
its casts to float16 turned into casts to float32 computes the same function at higher
precision (maps within 5e-4 of the half-precision run) with about 700 MB less peak memory for
two passes side by side and a few per cent less time (README, "Speed").

No ``onnx`` package is needed: the few messages touched (``ModelProto.graph``, ``GraphProto``
nodes, initializers and value infos, ``NodeProto`` attributes, ``TensorProto``) are declared
here for protobuf (a dependency of onnxruntime) with their field numbers from ``onnx.proto``;
every other field passes through untouched as an unknown field.
"""

from __future__ import annotations

from functools import cache

import numpy as np

FLOAT = 1  # TensorProto.DataType
FLOAT16 = 10
CAST = "Cast"


@cache
def _messages():
    """Model, tensor and attribute message classes with the fields this module touches."""
    from google.protobuf import descriptor_pb2, descriptor_pool

    Field = descriptor_pb2.FieldDescriptorProto
    fields = {
        "TensorProto": [
            ("dims", 1, Field.TYPE_INT64, Field.LABEL_REPEATED, None),
            ("data_type", 2, Field.TYPE_INT32, Field.LABEL_OPTIONAL, None),
            ("int32_data", 5, Field.TYPE_INT32, Field.LABEL_REPEATED, None),
            ("name", 8, Field.TYPE_STRING, Field.LABEL_OPTIONAL, None),
            ("raw_data", 9, Field.TYPE_BYTES, Field.LABEL_OPTIONAL, None),
            ("data_location", 14, Field.TYPE_INT32, Field.LABEL_OPTIONAL, None),
        ],
        "AttributeProto": [
            ("name", 1, Field.TYPE_STRING, Field.LABEL_OPTIONAL, None),
            ("i", 3, Field.TYPE_INT64, Field.LABEL_OPTIONAL, None),
            ("t", 5, Field.TYPE_MESSAGE, Field.LABEL_OPTIONAL, "TensorProto"),
        ],
        "NodeProto": [
            ("op_type", 4, Field.TYPE_STRING, Field.LABEL_OPTIONAL, None),
            ("attribute", 5, Field.TYPE_MESSAGE, Field.LABEL_REPEATED, "AttributeProto"),
        ],
        "ValueInfoProto": [("name", 1, Field.TYPE_STRING, Field.LABEL_OPTIONAL, None)],
        "GraphProto": [
            ("node", 1, Field.TYPE_MESSAGE, Field.LABEL_REPEATED, "NodeProto"),
            ("initializer", 5, Field.TYPE_MESSAGE, Field.LABEL_REPEATED, "TensorProto"),
            ("output", 12, Field.TYPE_MESSAGE, Field.LABEL_REPEATED, "ValueInfoProto"),
            ("value_info", 13, Field.TYPE_MESSAGE, Field.LABEL_REPEATED, "ValueInfoProto"),
        ],
        "ModelProto": [("graph", 7, Field.TYPE_MESSAGE, Field.LABEL_OPTIONAL, "GraphProto")],
    }
    package = "layercut_onnx_subset"
    proto = descriptor_pb2.FileDescriptorProto(
        name=f"{package}.proto", package=package, syntax="proto2"
    )
    for message, specs in fields.items():
        described = proto.message_type.add(name=message)
        for name, number, kind, label, type_name in specs:
            field = described.field.add(name=name, number=number, type=kind, label=label)
            if type_name:
                field.type_name = f".{package}.{type_name}"
            if name == "int32_data":
                field.options.packed = True  # as in onnx.proto
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    from google.protobuf import message_factory

    get = getattr(message_factory, "GetMessageClass", None)
    if get is None:  # protobuf < 4.21
        factory = message_factory.MessageFactory(pool)
        get = factory.GetPrototype
    return {name: get(pool.FindMessageTypeByName(f"{package}.{name}")) for name in fields}


def float16_to_float32(data: bytes) -> bytes | None:
    """The serialized ONNX model ``data`` with its float16 tensors (initializers and constant
    attributes) widened to float32, casts to float16 made casts to float32 and the intermediate
    type annotations (``value_info``, optional) dropped; None when the model holds no float16
    tensor or one this rewrite cannot read (external data), i.e. use ``data`` as it is."""
    return for_cpu(data)[0]


def for_cpu(data: bytes, output: str | None = None) -> tuple[bytes | None, str | None]:
    """(the model ``data`` rewritten for the CPU, or None when nothing changed; the name of the
    one graph output kept, or None when ``output`` is None). Float16 tensors are widened as
    ``float16_to_float32`` says. With ``output``, the graph keeps only that output when it has
    it, else its first (exports without names put the final map first), so onnxruntime leaves
    out the nodes that only the others need: for ISNet its five side maps at 1024² and the
    encoder features it returns (2 % of a pass's time, and their memory)."""
    model = _messages()["ModelProto"]()
    model.ParseFromString(data)
    graph = model.graph
    kept_name = None
    changed = False
    if output is not None and len(graph.output):
        names = [value.name for value in graph.output]
        kept_name = output if output in names else names[0]
        if len(names) > 1:
            kept = [value for value in graph.output if value.name == kept_name][:1]
            del graph.output[:]
            graph.output.extend(kept)
            changed = True
    changed = _widen(graph) or changed
    return (model.SerializeToString() if changed else None), kept_name


def _widen(graph) -> bool:
    """Widen ``graph``'s float16 tensors and casts in place; False when there is nothing to
    widen or a float16 tensor lives in external data (then nothing is changed)."""
    tensors = list(graph.initializer)
    for node in graph.node:
        tensors += [a.t for a in node.attribute if a.HasField("t")]
    half = [t for t in tensors if t.data_type == FLOAT16]
    if not half or any(t.data_location == 1 for t in half):
        return False
    for tensor in half:
        if tensor.raw_data:
            values = np.frombuffer(tensor.raw_data, dtype="<f2")
        else:  # float16 bit patterns in int32_data
            values = np.asarray(tensor.int32_data, dtype=np.uint16).view(np.float16)
        tensor.raw_data = values.astype("<f4").tobytes()
        del tensor.int32_data[:]
        tensor.data_type = FLOAT
    for node in graph.node:
        if node.op_type == CAST:
            for attribute in node.attribute:
                if attribute.name == "to" and attribute.i == FLOAT16:
                    attribute.i = FLOAT
    del graph.value_info[:]
    return True
