"""Differential tests against onnxruntime on random small multi-node graphs.

Float graphs: rtol 1e-5, atol 1e-5 (float32, different summation orders).
Integer graphs: exact.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeq.engine.model import Model
from edgeq.engine.onnx import import_onnx

ort = pytest.importorskip("onnxruntime")


def _model(nodes, inputs, output, inits, elem=TensorProto.FLOAT, opset=17):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, elem, s) for n, s in inputs],
        [helper.make_tensor_value_info(output, elem, None)], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def _ort(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


def _random_cnn(rng):
    """conv -> bn -> act -> pool -> (residual add) -> flatten -> gemm -> softmax."""
    c_in, c, hw = int(rng.integers(1, 4)), int(rng.integers(2, 6)), int(rng.integers(6, 11))
    k = int(rng.choice([1, 3]))
    group = c_in if c % c_in == 0 and rng.random() < 0.3 else 1
    act = str(rng.choice(["Relu", "Sigmoid", "Tanh", "LeakyRelu"]))
    pool = str(rng.choice(["MaxPool", "AveragePool"]))
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    inits = {"w": f(c, c_in // group, k, k), "b": f(c), "s": f(c), "bb": f(c), "mu": f(c),
             "var": np.abs(f(c)) + 0.5}
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c1"], pads=[k // 2] * 4, group=group),
        helper.make_node("BatchNormalization", ["c1", "s", "bb", "mu", "var"], ["n1"]),
        helper.make_node(act, ["n1"], ["a1"]),
        helper.make_node(pool, ["a1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Add", ["p1", "p1"], ["r1"]),
        helper.make_node("Flatten", ["r1"], ["f1"]),
    ]
    feat = c * (hw // 2) ** 2
    inits.update({"gw": f(5, feat), "gb": f(5)})
    nodes += [helper.make_node("Gemm", ["f1", "gw", "gb"], ["g1"], transB=1),
              helper.make_node("Softmax", ["g1"], ["y"], axis=1)]
    inits = [numpy_helper.from_array(v, k) for k, v in inits.items()]
    return _model(nodes, [("x", [2, c_in, hw, hw])], "y", inits), f(2, c_in, hw, hw)


@pytest.mark.parametrize("seed", range(12))
def test_random_float_cnn_matches_onnxruntime(seed):
    rng = np.random.default_rng(seed)
    model, x = _random_cnn(rng)
    got = Model(import_onnx(model)).run({"x": x})["y"]
    np.testing.assert_allclose(got, _ort(model, {"x": x}), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", range(8))
def test_random_integer_graph_matches_onnxruntime_exactly(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(-1000, 1000, size=(3, 4)).astype(np.int64)
    w = rng.integers(-1000, 1000, size=(4, 5)).astype(np.int64)
    c = rng.integers(-50, 50, size=(5,)).astype(np.int64)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(c, "c")]
    nodes = [
        helper.make_node("MatMul", ["a", "w"], ["m"]),
        helper.make_node("Add", ["m", "c"], ["s"]),
        helper.make_node("Mul", ["s", "s"], ["q"]),
        helper.make_node("Sub", ["q", "m"], ["d"]),
        helper.make_node("Div", ["d", "c"], ["e"]) if np.all(c != 0)
        else helper.make_node("Identity", ["d"], ["e"]),
        helper.make_node("Transpose", ["e"], ["t"], perm=[1, 0]),
        helper.make_node("Concat", ["t", "t"], ["y"], axis=0),
    ]
    model = _model(nodes, [("a", [3, 4])], "y", inits, elem=TensorProto.INT64)
    got = Model(import_onnx(model)).run({"a": a})["y"]
    expected = _ort(model, {"a": a})
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, expected)
