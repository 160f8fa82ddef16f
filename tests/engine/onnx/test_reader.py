"""Float ONNX import: shapes at import, and clear typed errors for bad input."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeq.engine import load
from edgeq.errors import (
    MissingInputError,
    ModelFileError,
    ShapeError,
    UnsupportedOpError,
)


def _save(tmp_path, nodes, inputs, outputs, inits=(), opset=17, name="m.onnx"):
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs],
        list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    path = tmp_path / name
    path.write_bytes(model.SerializeToString())
    return path


def test_shapes_and_dtypes_are_inferred_at_import(tmp_path):
    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Flatten", ["r"], ["y"])]
    m = load(_save(tmp_path, nodes, [("x", [1, 3, 8, 8])], [("y", None)], [w]))
    assert m.graph.values["c"].shape == (1, 4, 4, 4)
    assert m.graph.values["y"].shape == (1, 64)
    assert m.graph.values["r"].dtype == np.float32
    assert m.outputs[0].shape == (1, 64)
    assert "Conv" in m.graph.dump()


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="no such model file"):
        load(tmp_path / "absent.onnx")


def test_malformed_file_names_the_file(tmp_path):
    bad = tmp_path / "garbage.onnx"
    bad.write_bytes(b"\x00\x01not a protobuf at all" * 10)
    with pytest.raises(ModelFileError, match="garbage.onnx"):
        load(bad)


def test_unsupported_op_names_op_node_and_opset(tmp_path):
    nodes = [helper.make_node("Einsum", ["x", "x"], ["y"], name="mix", equation="ij,ij->ij")]
    path = _save(tmp_path, nodes, [("x", [2, 2])], [("y", [2, 2])], opset=13)
    with pytest.raises(UnsupportedOpError) as info:
        load(path)
    msg = str(info.value)
    assert "'Einsum'" in msg and "'mix'" in msg and "opset 13" in msg


def test_custom_domain_is_unsupported(tmp_path):
    node = helper.make_node("Quant", ["x"], ["y"], name="q", domain="qonnx.custom_op.general")
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    opsets = [helper.make_opsetid("", 13), helper.make_opsetid("qonnx.custom_op.general", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    path = tmp_path / "q.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(UnsupportedOpError, match="Quant"):
        load(path)


def test_inconsistent_shapes_name_the_node(tmp_path):
    b = numpy_helper.from_array(np.ones((5,), np.float32), "b")
    nodes = [helper.make_node("Add", ["x", "b"], ["y"], name="bad_add")]
    path = _save(tmp_path, nodes, [("x", [2, 3])], [("y", None)], [b])
    with pytest.raises(ShapeError, match="bad_add"):
        load(path)


def test_missing_and_misshapen_inputs_at_run(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    m = load(_save(tmp_path, nodes, [("x", [2, 3])], [("y", [2, 3])]))
    with pytest.raises(MissingInputError, match="'x'"):
        m.run({})
    with pytest.raises(ShapeError, match="input 'x'"):
        m.run({"x": np.zeros((3, 2), np.float32)})
    np.testing.assert_array_equal(m.run({"x": -np.ones((2, 3), np.float32)})["y"], 0)
