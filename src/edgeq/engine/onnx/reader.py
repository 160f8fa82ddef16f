"""Reading an ONNX file into the IR, dialect-independent part.

Initializers and ``Constant`` nodes become constant values; attributes become Python
values; shapes come from ONNX shape inference (symbolic dims kept as strings).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from edgeq.engine.ir import Graph, Node, Value
from edgeq.errors import ModelFileError, UnsupportedOpError

DEFAULT_DOMAINS = ("", "ai.onnx")
MIN_OPSET = 7


def read_model(path: str | os.PathLike) -> onnx.ModelProto:
    """Load and parse an ONNX file; errors name the file."""
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"{p}: no such model file")
    try:
        model = onnx.load(str(p))
    except Exception as exc:  # protobuf raises several unrelated types
        raise ModelFileError(f"{p}: not a readable ONNX model ({type(exc).__name__})") from None
    if not model.graph.node and not model.graph.output:
        raise ModelFileError(f"{p}: the ONNX model has an empty graph")
    return model


def default_opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in DEFAULT_DOMAINS:
            return int(imp.version)
    return 1


def infer_shapes(model: onnx.ModelProto, source: str) -> onnx.ModelProto:
    """ONNX shape inference, best effort.

    Not strict: dialect files carry attributes the ONNX schemas do not know. Real shape
    inconsistencies are caught by the trial run (:mod:`edgeq.engine.passes.shapes`),
    which names the node.
    """
    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception:
        return model


def to_graph(model: onnx.ModelProto, source: str = "<model>") -> Graph:
    """Convert a parsed (shape-inferred) ONNX model to a float IR graph."""
    opset = default_opset(model)
    if opset < MIN_OPSET:
        raise ModelFileError(f"{source}: opset {opset} is older than the supported {MIN_OPSET}")
    g = model.graph
    values: dict[str, Value] = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        values[vi.name] = _value_from_info(vi)
    for init in g.initializer:
        values[init.name] = _const_value(init.name, numpy_helper.to_array(init))
    nodes: list[Node] = []
    names: set[str] = set()
    for i, proto in enumerate(g.node):
        node = _node(proto, i, names, opset, source)
        if node.op == "Constant" and node.domain in DEFAULT_DOMAINS:
            values[node.outputs[0]] = _const_value(node.outputs[0], _constant_data(node))
            continue
        for name in node.outputs:
            values.setdefault(name, Value(name))
        nodes.append(node)
    inputs = [vi.name for vi in g.input if vi.name not in _init_names(g)]
    graph = Graph(nodes, values, inputs, [o.name for o in g.output], g.name or "graph", opset)
    graph.meta["source"] = source
    return graph


def _init_names(g: onnx.GraphProto) -> set[str]:
    return {i.name for i in g.initializer}


def _node(proto: onnx.NodeProto, index: int, names: set[str], opset: int, source: str) -> Node:
    name = proto.name or f"{proto.op_type}_{index}"
    if name in names:
        name = f"{name}_{index}"
    names.add(name)
    if proto.domain not in DEFAULT_DOMAINS:
        raise UnsupportedOpError(
            f"{proto.domain}.{proto.op_type}", name, opset, f"custom domain in {source}"
        )
    attrs = {}
    for a in proto.attribute:
        if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
            raise UnsupportedOpError(proto.op_type, name, opset, "subgraph attributes")
        attrs[a.name] = _attr_value(a)
    return Node(proto.op_type, name, list(proto.input), list(proto.output), attrs, "")


def _attr_value(a: onnx.AttributeProto):
    v = onnx.helper.get_attribute_value(a)
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, onnx.TensorProto):
        return numpy_helper.to_array(v)
    if isinstance(v, list) and v and isinstance(v[0], bytes):
        return [s.decode("utf-8") for s in v]
    if isinstance(v, list) and v and isinstance(v[0], onnx.TensorProto):
        return [numpy_helper.to_array(t) for t in v]
    return v


def _constant_data(node: Node) -> np.ndarray:
    a = node.attrs
    if "value" in a:
        return np.asarray(a["value"])
    if "value_float" in a:
        return np.asarray(a["value_float"], dtype=np.float32)
    if "value_floats" in a:
        return np.asarray(a["value_floats"], dtype=np.float32)
    if "value_int" in a:
        return np.asarray(a["value_int"], dtype=np.int64)
    if "value_ints" in a:
        return np.asarray(a["value_ints"], dtype=np.int64)
    if "value_string" in a:
        return np.asarray(a["value_string"], dtype=object)
    if "value_strings" in a:
        return np.asarray(a["value_strings"], dtype=object)
    raise UnsupportedOpError("Constant", node.name, None, f"attributes {sorted(a)}")


def _const_value(name: str, data: np.ndarray) -> Value:
    data = np.asarray(data)
    return Value(name, tuple(int(d) for d in data.shape), data.dtype, None, data)


def _value_from_info(vi: onnx.ValueInfoProto) -> Value:
    t = vi.type
    if not t.HasField("tensor_type"):
        return Value(vi.name)
    tt = t.tensor_type
    dtype = None
    if tt.elem_type:
        try:
            dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type))
        except (KeyError, TypeError):
            dtype = None
    shape = None
    if tt.HasField("shape"):
        shape = tuple(
            d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim
        )
    return Value(vi.name, shape, dtype)
