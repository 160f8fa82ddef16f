"""onnxruntime QDQ / QOperator files: the integer IR must equal onnxruntime's own kernels.

The expected values are onnxruntime's outputs (CPU execution provider, default graph
optimisation, which fuses QDQ groups into its int8 kernels), bit for bit.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from edgeq.engine.backends.reference.executor import run_graph
from edgeq.engine.backends.reference.thirdparty import qlinear_requant
from edgeq.engine.onnx import import_onnx
from edgeq.errors import UnsupportedOpError
from tests.engine.onnx.qdq_builder import VARIANTS, agreement, quantise_all

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxruntime.quantization")
pytest.importorskip("torch")


@pytest.fixture(scope="session")
def quantised(tmp_path_factory):
    """Every (model, format, activation type, per-channel) file, written once."""
    return quantise_all(tmp_path_factory.mktemp("qdq"))


def _ort_session(model: onnx.ModelProto, extra_outputs=()):
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for name in extra_outputs:
        m.graph.output.append(onnx.ValueInfoProto(name=name))
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(map(str, v)))
def test_matches_onnxruntime_exactly(quantised, variant):
    exact, worst, _ = agreement(quantised[variant])
    assert (exact, worst) == (1.0, 0)


def test_imports_as_integer_ops(quantised):
    graph = import_onnx(quantised[("resnet", "QDQ", "U8", True)])
    ops = {n.op for n in graph.nodes}
    assert {"QLinearRequant", "QLinearAddOrt", "QLinearAvgPoolOrt", "Conv", "Gemm"} <= ops
    assert ops & {"Add", "GlobalAveragePool"} == set()
    assert [n.op for n in graph.nodes].count("DequantizeLinear") == 1  # the float output
    rq = next(n for n in graph.nodes if n.op == "QLinearRequant")
    assert graph.values[rq.outputs[0]].dtype == np.uint8


@pytest.mark.parametrize("pc", [False, True])
def test_int8_groups_fuse_where_onnxruntime_fuses_them(quantised, tmp_path, pc):
    """With int8 activations onnxruntime (x86) fuses a group only when its Q->DQ pairs
    can move to uint8; the others run in float. Its optimised graph is the reference."""
    path = quantised[("resnet", "QDQ", "S8", pc)]
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    ort_ops = [n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node]
    ops = [n.op for n in import_onnx(path).nodes]
    assert ops.count("QLinearRequant") == sum(ort_ops.count(o) for o in ("QLinearConv", "QGemm"))
    assert ops.count("QLinearAddOrt") == ort_ops.count("QLinearAdd")
    assert ops.count("Add") == ort_ops.count("Add") > 0


# -- single-node files with chosen numbers ---------------------------------------------------
def _model(nodes, inputs, outputs, inits, ms=False):
    g = helper.make_graph(nodes, "g", inputs, outputs,
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    ops = [helper.make_opsetid("", 17)] + ([helper.make_opsetid("com.microsoft", 1)] if ms else [])
    m = helper.make_model(g, opset_imports=ops)
    m.ir_version = 8
    return m


def _both(model, feeds):
    ref = _ort_session(model).run(None, feeds)[0]
    (got,) = run_graph(import_onnx(model), feeds).values()
    return got, ref


def test_qlinearconv_ties_round_half_to_even():
    """Multiplier exactly 0.5 and odd accumulators -15..15: every result is a tie."""
    x = np.arange(-15, 16, 2).astype(np.int8).reshape(1, 1, 4, 4)
    inits = {"xs": np.float32(1.0), "xz": np.int8(0), "w": np.ones((1, 1, 1, 1), np.int8),
             "ws": np.float32(0.5), "wz": np.int8(0), "ys": np.float32(1.0), "yz": np.int8(0)}
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"])
    m = _model([node], [helper.make_tensor_value_info("x", TensorProto.INT8, [1, 1, 4, 4])],
               [helper.make_tensor_value_info("y", TensorProto.INT8, None)], inits)
    got, ref = _both(m, {"x": x})
    want = np.array([round(v / 2) for v in range(-15, 16, 2)]).reshape(1, 1, 4, 4)  # banker's
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(ref, want)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_qlinearadd_and_global_average_pool(dtype):
    tp = TensorProto.UINT8 if dtype == np.uint8 else TensorProto.INT8
    lo, hi = (0, 255) if dtype == np.uint8 else (-128, 127)
    rng = np.random.default_rng(3)
    z = lambda: dtype(rng.integers(lo, hi + 1))  # noqa: E731
    inits = {"sa": np.float32(0.037), "za": z(), "sb": np.float32(0.11), "zb": z(),
             "sc": np.float32(0.05), "zc": z(), "sp": np.float32(0.013), "zp": z()}
    nodes = [helper.make_node("QLinearAdd", ["a", "sa", "za", "b", "sb", "zb", "sc", "zc"],
                              ["c"], domain="com.microsoft"),
             helper.make_node("QLinearGlobalAveragePool", ["c", "sc", "zc", "sp", "zp"], ["y"],
                              domain="com.microsoft", channels_last=0)]
    vi = [helper.make_tensor_value_info(n, tp, [1, 8, 9, 7]) for n in "ab"]
    m = _model(nodes, vi, [helper.make_tensor_value_info("y", tp, None)], inits, ms=True)
    m.graph.output.append(helper.make_tensor_value_info("c", tp, None))
    feeds = {n: rng.integers(lo, hi + 1, size=(1, 8, 9, 7)).astype(dtype) for n in "ab"}
    ref_y, ref_c = _ort_session(m).run(["y", "c"], feeds)
    out = run_graph(import_onnx(m), feeds)
    np.testing.assert_array_equal(out["c"], ref_c)
    np.testing.assert_array_equal(out["y"], ref_y)


def test_matmulinteger_and_convinteger_are_exact_int32():
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, size=(3, 6)).astype(np.uint8)
    w = rng.integers(-128, 128, size=(6, 4)).astype(np.int8)
    x = rng.integers(0, 256, size=(1, 2, 5, 5)).astype(np.uint8)
    k = rng.integers(-128, 128, size=(3, 2, 3, 3)).astype(np.int8)
    nodes = [helper.make_node("MatMulInteger", ["a", "w", "az"], ["m"]),
             helper.make_node("ConvInteger", ["x", "k", "xz"], ["c"], pads=[1, 1, 1, 1])]
    m = _model(nodes, [helper.make_tensor_value_info("a", TensorProto.UINT8, [3, 6]),
                       helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 2, 5, 5])],
               [helper.make_tensor_value_info(n, TensorProto.INT32, None) for n in "mc"],
               {"w": w, "az": np.uint8(7), "k": k, "xz": np.uint8(130)})
    ref_m, ref_c = _ort_session(m).run(None, {"a": a, "x": x})
    out = run_graph(import_onnx(m), {"a": a, "x": x})
    np.testing.assert_array_equal(out["m"], (a.astype(int) - 7) @ w.astype(int))
    np.testing.assert_array_equal(out["m"], ref_m)
    np.testing.assert_array_equal(out["c"], ref_c)


def test_int4_weights_are_read():
    """A packed INT4 weight behind DequantizeLinear (QDQ 4-bit weights)."""
    rng = np.random.default_rng(9)
    w4 = rng.integers(-8, 8, size=(4, 3))
    w_t = helper.make_tensor("w4", TensorProto.INT4, [4, 3], w4.ravel().tolist())
    nodes = [helper.make_node("DequantizeLinear", ["w4", "ws"], ["w"]),
             helper.make_node("MatMul", ["x", "w"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                     [2, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [w_t, numpy_helper.from_array(np.float32(0.25), "ws")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    x = rng.standard_normal((2, 4)).astype(np.float32)
    (got,) = run_graph(import_onnx(m), {"x": x}).values()
    np.testing.assert_allclose(got, x @ (w4 * 0.25).astype(np.float32), rtol=1e-6)
    # onnxruntime's default optimisation rewrites DQ(int4)->MatMul into MatMulNBits, which
    # computes differently; unoptimised it is DequantizeLinear then a float MatMul.
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(got, sess.run(None, {"x": x})[0], rtol=1e-6)


def test_unknown_contrib_op_is_refused_naming_the_node():
    node = helper.make_node("QLinearSigmoid", ["x", "s", "z", "s", "z"], ["y"],
                            domain="com.microsoft", name="sig7")
    m = _model([node], [helper.make_tensor_value_info("x", TensorProto.UINT8, [4])],
               [helper.make_tensor_value_info("y", TensorProto.UINT8, None)],
               {"s": np.float32(0.1), "z": np.uint8(128)}, ms=True)
    with pytest.raises(UnsupportedOpError, match="QLinearSigmoid.*sig7"):
        import_onnx(m)


def test_quantising_to_int4_is_refused_naming_the_node():
    zp = helper.make_tensor("z4", TensorProto.INT4, [], [0])
    node = helper.make_node("QuantizeLinear", ["x", "s", "z4"], ["y"], name="q4")
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                      [4])],
                          [helper.make_tensor_value_info("y", TensorProto.INT4, None)],
                          [zp, numpy_helper.from_array(np.float32(0.1), "s")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    with pytest.raises(UnsupportedOpError, match="QuantizeLinear.*q4.*4-bit"):
        import_onnx(m)


@pytest.mark.parametrize("qdq", [False, True])
def test_qlinearmatmul_per_column_matches_onnxruntime(qdq):
    rng = np.random.default_rng(11)
    b = rng.integers(-128, 128, size=(16, 5)).astype(np.int8)
    inits = {"as": np.float32(0.02), "az": np.uint8(121), "b": b,
             "bs": rng.uniform(0.001, 0.01, 5).astype(np.float32), "bz": np.zeros(5, np.int8),
             "ys": np.float32(0.05), "yz": np.uint8(100)}
    if qdq:  # DQ(a), DQ(b, per column) -> MatMul -> Q, as the quantiser writes it
        nodes = [helper.make_node("DequantizeLinear", ["a", "as", "az"], ["af"]),
                 helper.make_node("DequantizeLinear", ["b", "bs", "bz"], ["bf"], axis=1),
                 helper.make_node("MatMul", ["af", "bf"], ["yf"]),
                 helper.make_node("QuantizeLinear", ["yf", "ys", "yz"], ["y"])]
    else:
        nodes = [helper.make_node("QLinearMatMul",
                                  ["a", "as", "az", "b", "bs", "bz", "ys", "yz"], ["y"])]
    m = _model(nodes, [helper.make_tensor_value_info("a", TensorProto.UINT8, [7, 16])],
               [helper.make_tensor_value_info("y", TensorProto.UINT8, None)], inits)
    a = rng.integers(0, 256, size=(7, 16)).astype(np.uint8)
    got, ref = _both(m, {"a": a})
    assert "QLinearRequant" in {n.op for n in import_onnx(m).nodes}
    np.testing.assert_array_equal(got, ref)


def _f32(v: float) -> float:
    """Round a Python float to the nearest float32 (ties to even), via the C cast."""
    import struct

    return struct.unpack("f", struct.pack("f", v))[0]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-2**31 + 1, 2**31 - 1), min_size=1, max_size=8),
       st.floats(2.0**-20, 4.0, allow_nan=False, width=32), st.integers(-128, 127))
def test_qlinear_requant_matches_a_float32_model_in_python(accs, mult, zp):
    """fp32(acc) * fp32(M), rounded once to float32, then half to even (Python's round),
    plus the zero point, saturated to int8 -- computed without NumPy."""
    y = qlinear_requant(np.array(accs), np.float32(mult), np.int64(zp), lo=-128, hi=127)
    want = [min(max(round(_f32(_f32(float(a)) * mult)) + zp, -128), 127) for a in accs]
    assert y.tolist() == want
