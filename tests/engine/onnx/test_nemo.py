"""NEMO integer ONNX: the real DORY-example fixtures and generated NEMO-pattern files.

Expected values come from the fixtures' golden outputs and from Python-int arithmetic.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from edgeq.engine import load
from edgeq.engine.backends.reference.executor import run_graph
from edgeq.engine.backends.reference.thirdparty import requant_div
from edgeq.engine.onnx import import_onnx
from edgeq.errors import UnsupportedOpError
from tests.conftest import shared_fixture


def _nemo_vector(path) -> np.ndarray:
    """DORY-example text vectors: a '# name (shape ...)' line, then 'v.000,\\' lines."""
    vals = [ln.strip().rstrip("\\").rstrip(",") for ln in open(path)]
    return np.array([int(float(v)) for v in vals if v and not v.startswith("#")])


@pytest.mark.parametrize("name, n_adds", [("Residual_connection_test_1", 1), ("dronet_2.0", 3)])
def test_fixture_reproduces_golden_output(name, n_adds):
    folder = shared_fixture("nemo", name)
    model = load(folder / "model_int.onnx")
    x = _nemo_vector(folder / "input.txt").reshape(1, 1, 200, 200)  # one channel: HWC = CHW
    golden = _nemo_vector(folder / "output.txt")
    graph = model.graph
    ops = [n.op for n in graph.nodes]
    assert graph.meta["dialect"] == "nemo"
    assert ops.count("HarmonisedAdd") == n_adds
    assert not {"Div", "Cast", "Floor", "Clip"} & set(ops)
    last_linear = [n for n in graph.nodes if n.op == "MatMul"][-1].outputs[0]
    seen = {}
    run_graph(graph, {graph.inputs[0]: x.astype(np.uint8)},
              observe=lambda n, a: seen.__setitem__(n, a))
    np.testing.assert_array_equal(seen[last_linear].ravel(), golden)


def test_fixture_requant_folds_bn_and_multiplier():
    graph = load(shared_fixture("nemo", "dronet_2.0") / "model_int.onnx").graph
    rq = next(n for n in graph.nodes if n.op == "RequantShift")
    kappa = graph.const(rq.inputs[1]) // 35  # Mul(bn1.kappa) then Mul(35)
    src = onnx.load(str(shared_fixture("nemo", "dronet_2.0") / "model_int.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in src.graph.initializer}
    np.testing.assert_array_equal(kappa, inits["bn1.kappa"])
    lamda = inits["bn1.lamda"].astype(np.int64)
    np.testing.assert_array_equal(graph.const(rq.inputs[2]), lamda * 35)
    assert rq.attrs == {"shift": 22, "lo": 0, "hi": 255}  # Div(4194304 = 2^22)


# -- generated NEMO-pattern files ---------------------------------------------------------
def _const(name, value, dtype=np.float32):
    return helper.make_node("Constant", [], [name], name=f"c_{name}",
                            value=numpy_helper.from_array(np.asarray(value, dtype=dtype)))


def _requant_model(w, kappa, lamda, m, div, lo, hi, pool=None, int_div=True, rounding="Cast"):
    """x -> Conv(w) -> [AveragePool] -> Mul(kappa) -> Add(lamda) -> Cast -> Mul(m) -> Div ->
    Cast|Floor -> Clip(lo, hi) (opset 9, float carriers, as NEMO writes it)."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["acc"], kernel_shape=[1, 1])]
    src = "acc"
    if pool:
        nodes.append(helper.make_node("AveragePool", ["acc"], ["pool"], kernel_shape=pool,
                                      strides=pool))
        src = "pool"
    nodes += [helper.make_node("Mul", ["kappa", src], ["bn_m"]),
              helper.make_node("Add", ["bn_m", "lamda"], ["bn"])]
    ityp = TensorProto.INT64 if int_div else TensorProto.FLOAT
    cdt = np.int64 if int_div else np.float32
    nodes += [helper.make_node("Cast", ["bn"], ["bn_i"], to=ityp), _const("m", [m], cdt),
              helper.make_node("Mul", ["bn_i", "m"], ["s"]), _const("d", div, cdt),
              helper.make_node("Div", ["s", "d"], ["q"])]
    if rounding == "Floor":
        nodes.append(helper.make_node("Floor", ["q"], ["r"]))
    else:
        nodes.append(helper.make_node("Cast", ["q"], ["r"], to=TensorProto.INT64))
    nodes += [helper.make_node("Cast", ["r"], ["rf"], to=TensorProto.FLOAT),
              helper.make_node("Clip", ["rf"], ["y"], min=float(lo), max=float(hi))]
    c = w.shape[0]
    inits = [numpy_helper.from_array(np.asarray(w, np.float32), "w"),
             numpy_helper.from_array(np.asarray(kappa, np.float32).reshape(1, c, 1, 1), "kappa"),
             numpy_helper.from_array(np.asarray(lamda, np.float32).reshape(1, c, 1, 1), "lamda")]
    graph = helper.make_graph(
        nodes, "nemo_gen", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)])


def _py_round(v: Fraction, rounding: str) -> int:
    return int(v // 1) if rounding == "floor" else int(v)  # int() truncates toward zero


def _expected(x, w, kappa, lamda, m, div, lo, hi, rounding, pool=None):
    acc = np.einsum("nchw,oc->nohw", x.astype(object), w[:, :, 0, 0].astype(object))
    if pool:
        n, c, h, wd = acc.shape
        k = pool[0] * pool[1]
        acc = acc.reshape(n, c, h // pool[0], pool[0], wd // pool[1], pool[1]).sum(axis=(3, 5))
        acc = np.vectorize(lambda s: Fraction(int(s), k))(acc)
    y = np.empty(acc.shape, dtype=object)
    for idx in np.ndindex(acc.shape):
        ch = idx[1]
        v = Fraction(acc[idx]) * int(kappa[ch]) + int(lamda[ch])
        if pool is None:
            v = Fraction(int(v))  # Cast to int64 of an integer: exact
        y[idx] = min(max(_py_round(v * m / div, rounding), lo), hi)
    return y.astype(np.int64)


CASES = [  # (div, lo, hi, int_div, rounding, pool, expected IR op)
    (2**12, 0, 255, True, "Cast", None, "RequantShift"),
    (2**12 - 1, 0, 255, True, "Cast", None, "RequantDiv"),      # NEMO's 2^k - 1
    (2**10, -128, 127, True, "Cast", None, "RequantDiv"),       # trunc matters below zero
    (2**10, -128, 127, False, "Floor", None, "RequantShift"),   # float Div, Floor
    (2**10, 0, 255, False, "Floor", (2, 2), "RequantShift"),     # 2x2 mean: divisor * 4
    (3 * 2**8, -128, 127, False, "Cast", (2, 2), "RequantDiv"),
]


@pytest.mark.parametrize("div, lo, hi, int_div, rounding, pool, op", CASES)
def test_generated_requant_is_exact(div, lo, hi, int_div, rounding, pool, op):
    rng = np.random.default_rng(div + lo)
    w = rng.integers(-60, 61, size=(3, 2, 1, 1))
    kappa, lamda = rng.integers(100, 2048, size=3), rng.integers(-300_000, 300_000, size=3)
    model = _requant_model(w, kappa, lamda, 37, div, lo, hi, pool, int_div, rounding)
    graph = import_onnx(model)
    assert [n.op for n in graph.nodes][-1] == op
    x = rng.integers(0, 256, size=(1, 2, 4, 4))
    (y,) = run_graph(graph, {"x": x.astype(np.uint8)}).values()
    mode = "floor" if rounding == "Floor" else "trunc"
    np.testing.assert_array_equal(y, _expected(x, w, kappa, lamda, 37, div, lo, hi, mode, pool))


def test_unrounded_div_is_refused_naming_the_node():
    model = _requant_model(np.ones((3, 2, 1, 1)), [1] * 3, [0] * 3, 1, 2, 0, 255)
    model.graph.node.extend([_const("three", 3.0),
                             helper.make_node("Div", ["y", "three"], ["z"], name="mean3")])
    model.graph.output[0].name = "z"
    with pytest.raises(UnsupportedOpError, match="node 'mean3'.*never rounded"):
        import_onnx(model)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-2**40, 2**40), min_size=1, max_size=6),
       st.integers(-2**20, 2**20), st.integers(-2**30, 2**30), st.integers(1, 2**20),
       st.sampled_from(["floor", "trunc"]))
def test_requant_div_matches_python_ints(xs, mul, add, div, rounding):
    y = requant_div(np.array(xs), np.int64(mul), np.int64(add), div=div, rounding=rounding,
                    lo=-2**40, hi=2**40)
    want = [min(max(_py_round(Fraction(x * mul + add, div), rounding), -2**40), 2**40)
            for x in xs]
    assert y.tolist() == want


def test_nemo_average_pool_export_is_exact():
    """PACT_IntegerAvgPool2d as exported: AveragePool(3x3) -> Mul(9) -> Mul(ratio) ->
    Div(D) -> Floor, i.e. floor(sum * ratio / D)."""
    ratio, d = 57, 512  # round(D / 9) with D = 512
    nodes = [helper.make_node("AveragePool", ["x"], ["p"], kernel_shape=[3, 3],
                              strides=[3, 3]),
             _const("k", 9.0), helper.make_node("Mul", ["p", "k"], ["s"]),
             _const("r", float(ratio)), helper.make_node("Mul", ["s", "r"], ["t"]),
             _const("d", float(d)), helper.make_node("Div", ["t", "d"], ["q"]),
             helper.make_node("Floor", ["q"], ["y"])]
    g = helper.make_graph(nodes, "pool", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 2, 6, 6])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, None)])
    graph = import_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 9)]))
    rq = next(n for n in graph.nodes if n.op in ("RequantShift", "RequantDiv"))
    assert rq.op == "RequantShift" and rq.attrs["shift"] == 9
    x = np.random.default_rng(2).integers(0, 256, size=(1, 2, 6, 6))
    (y,) = run_graph(graph, {"x": x.astype(np.uint8)}).values()
    sums = x.reshape(1, 2, 2, 3, 2, 3).sum(axis=(3, 5))
    np.testing.assert_array_equal(y, [[[[int(v) * ratio // d for v in row] for row in ch]
                                       for ch in sums[0]]])
