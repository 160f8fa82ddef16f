"""QONNX files: float-carrier semantics equal to the real qonnx executor, and the exact
integer lowering of power-of-two patterns.

Expected values come from ``qonnx.core.onnx_exec.execute_onnx`` (qonnx 1.0.0) and, for
the kernels, from Python-int / Fraction arithmetic.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from edgeq.engine.backends.reference.executor import run_graph
from edgeq.engine.backends.reference.thirdparty import requant_div
from edgeq.engine.onnx import import_onnx
from edgeq.engine.onnx.qonnx import import_qonnx
from edgeq.errors import UnsupportedOpError

DOMAIN = "qonnx.custom_op.general"


def _quant(x, out, scale, zp, bits, signed=1, narrow=0, mode="ROUND"):
    names = [f"{out}_{k}" for k in ("scale", "zp", "bits")]
    consts = [helper.make_node("Constant", [], [n], value=numpy_helper.from_array(
        np.asarray(v, np.float32))) for n, v in zip(names, (scale, zp, bits), strict=True)]
    node = helper.make_node("Quant", [x] + names, [out], domain=DOMAIN, name=out,
                            signed=signed, narrow=narrow, rounding_mode=mode)
    return consts + [node]


def _model(nodes, inits, shape, version=2, outputs=("y",)):
    g = helper.make_graph(
        nodes, "qonnx", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13),
                                            helper.make_opsetid(DOMAIN, version)])
    m.ir_version = 8
    return m


def _qonnx_exec(model, x):
    """qonnx's executor. It runs standard nodes one by one in onnxruntime through
    ``qonnx_make_model``, which stamps onnx 1.23's IR version 14 that onnxruntime 1.31
    refuses; the wrapper only lowers that stamp to 8 (the graph is unchanged)."""
    qonnx_exec = pytest.importorskip("qonnx.core.onnx_exec")
    if not getattr(qonnx_exec.qonnx_make_model, "_ir8", False):
        make = qonnx_exec.qonnx_make_model

        def make_ir8(graph, **kw):
            m = make(graph, **kw)
            m.ir_version = 8
            return m

        make_ir8._ir8 = True
        qonnx_exec.qonnx_make_model = make_ir8
    wrapper = pytest.importorskip("qonnx.core.modelwrapper")
    infer = pytest.importorskip("qonnx.transformation.infer_shapes")
    m = wrapper.ModelWrapper(model).transform(infer.InferShapes())
    return qonnx_exec.execute_onnx(m, {"x": x})


def _float_model(rng, version):
    """Brevitas-style: Quant(act) -> Conv(Quant(w, per channel, narrow 4 bit), Quant(b))
    -> Relu -> Quant(unsigned, FLOOR) -> Trunc; plus a BipolarQuant branch."""
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    sw = (np.abs(w).reshape(3, -1).max(axis=1) / 7).reshape(3, 1, 1, 1)
    nodes = _quant("x", "xq", 0.037, 0, 8, signed=1)
    nodes += _quant("w", "wq", sw, 0, 4, signed=1, narrow=1)
    nodes += _quant("b", "bq", 0.037 * sw.ravel(), 0, 16, signed=1)
    nodes += [helper.make_node("Conv", ["xq", "wq", "bq"], ["c"], pads=[1, 1, 1, 1]),
              helper.make_node("Relu", ["c"], ["r"])]
    nodes += _quant("r", "rq", 0.11, 3, 6, signed=0, mode="FLOOR")
    t_in = ["rq", "rq_scale", "rq_zp", "rq_bits"]
    if version == 1:
        nodes.append(helper.make_node("Trunc", t_in + ["two"], ["y"], domain=DOMAIN,
                                      rounding_mode="ROUND"))
    else:
        nodes.append(helper.make_node("Trunc", t_in + ["tscale", "two"], ["y"], domain=DOMAIN,
                                      rounding_mode="FLOOR", signed=0))
    nodes.append(helper.make_node("BipolarQuant", ["c", "bs"], ["z"], domain=DOMAIN))
    inits = {"w": w, "b": b, "two": 4.0, "tscale": 0.44, "bs": 0.5}
    return _model(nodes, inits, [1, 2, 6, 6], version, outputs=("y", "z"))


@pytest.mark.parametrize("version", [1, 2])
def test_float_carrier_matches_qonnx_executor(version):
    rng = np.random.default_rng(version)
    model = _float_model(rng, version)
    graph = import_onnx(model)
    assert {"Quant", "Trunc", "BipolarQuant"} <= {n.op for n in graph.nodes}
    for seed in range(3):
        x = (np.random.default_rng(seed).standard_normal((1, 2, 6, 6)) * 3).astype(np.float32)
        ref = _qonnx_exec(model, x)
        got = run_graph(graph, {"x": x})
        for name in ("y", "z"):
            np.testing.assert_array_equal(got[name], ref[name])


def _pow2_model(rng, relu=True, out_scale=2.0**-3, bias=True):
    w = rng.integers(-7, 8, size=(4, 3, 3, 3)).astype(np.float32) * 2.0**-4
    b = rng.integers(-300, 300, size=4).astype(np.float32) * 2.0**-9
    nodes = _quant("x", "xq", 2.0**-5, 0, 8, signed=1)
    nodes += _quant("w", "wq", 2.0**-4, 0, 4, signed=1, narrow=1)
    ins = ["xq", "wq"]
    if bias:
        nodes += _quant("b", "bq", 2.0**-9, 0, 16)
        ins.append("bq")
    nodes.append(helper.make_node("Conv", ins, ["c"], pads=[1, 1, 1, 1], name="conv"))
    last = "c"
    if relu:
        nodes.append(helper.make_node("Relu", ["c"], ["r"]))
        last = "r"
    nodes += _quant(last, "y", out_scale, 0, 8, signed=0 if relu else 1)
    return _model(nodes, {"w": w, "b": b}, [1, 3, 5, 5])


@pytest.mark.parametrize("relu, bias", [(True, True), (False, True), (True, False)])
def test_power_of_two_pattern_lowers_to_exact_integers(relu, bias):
    model = _pow2_model(np.random.default_rng(7), relu=relu, bias=bias)
    graph = import_onnx(model)
    ops = [n.op for n in graph.nodes]
    assert "RequantDiv" in ops and ops.count("Quant") == 1  # only the input quantiser
    conv = next(n for n in graph.nodes if n.op == "Conv")
    assert graph.values[conv.inputs[1]].data.dtype == np.int8
    rq = next(n for n in graph.nodes if n.op == "RequantDiv")
    assert rq.attrs["div"] == 2 ** (5 + 4 - 3) and rq.attrs["rounding"] == "half_even"
    for seed in range(4):
        x = (np.random.default_rng(seed).standard_normal((1, 3, 5, 5)) * 2).astype(np.float32)
        np.testing.assert_array_equal(run_graph(graph, {"x": x})["y"],
                                      _qonnx_exec(model, x)["y"])


def test_non_power_of_two_scale_stays_float():
    model = _pow2_model(np.random.default_rng(1), out_scale=0.1)
    graph = import_onnx(model)
    assert "RequantDiv" not in {n.op for n in graph.nodes}
    x = np.random.default_rng(0).standard_normal((1, 3, 5, 5)).astype(np.float32)
    np.testing.assert_array_equal(run_graph(graph, {"x": x})["y"], _qonnx_exec(model, x)["y"])
    assert "RequantDiv" not in {n.op for n in import_qonnx(model, "m", lower=False).nodes}


def test_unknown_qonnx_op_is_refused_naming_it():
    node = helper.make_node("MultiThreshold", ["x", "t"], ["y"], domain=DOMAIN, name="mt0")
    q = _quant("x", "q", 1.0, 0, 8)
    model = _model(q + [node], {"t": np.zeros((1, 3))}, [1, 4])
    with pytest.raises(UnsupportedOpError, match="MultiThreshold.*mt0"):
        import_onnx(model)


def _round_half_even(f: Fraction) -> int:
    q = f.numerator // f.denominator
    r = f - q
    return q + 1 if r > Fraction(1, 2) or (r == Fraction(1, 2) and q % 2) else q


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-2**30, 2**30), min_size=1, max_size=6), st.integers(1, 2**12))
def test_requant_div_half_even_matches_fractions(xs, div):
    y = requant_div(np.array(xs), np.int64(1), np.int64(0), div=div, rounding="half_even",
                    lo=-2**40, hi=2**40)
    assert y.tolist() == [_round_half_even(Fraction(x, div)) for x in xs]


def test_power_of_two_gemm_lowers_to_exact_integers():
    """A Brevitas QuantLinear: Gemm(transB=1) on Quant'd input and weight, signed output."""
    rng = np.random.default_rng(4)
    w = rng.integers(-127, 128, size=(5, 12)).astype(np.float32) * 2.0**-7
    nodes = _quant("x", "xq", 2.0**-4, 0, 8) + _quant("w", "wq", 2.0**-7, 0, 8, narrow=1)
    nodes.append(helper.make_node("Gemm", ["xq", "wq"], ["g"], transB=1, name="fc"))
    nodes += _quant("g", "y", 2.0**-6, 0, 8)
    model = _model(nodes, {"w": w}, [3, 12])
    graph = import_onnx(model)
    assert "RequantDiv" in {n.op for n in graph.nodes}
    for seed in range(4):
        x = (np.random.default_rng(seed).standard_normal((3, 12)) * 3).astype(np.float32)
        np.testing.assert_array_equal(run_graph(graph, {"x": x})["y"],
                                      _qonnx_exec(model, x)["y"])
