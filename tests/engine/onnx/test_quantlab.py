"""QuantLab/DORY integer dialect: the real Dronet fixture and generated dialect files."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from edgeq.engine import load
from edgeq.engine.model import Model
from edgeq.engine.onnx import import_onnx
from edgeq.errors import IntegralityError
from edgeq.numerics import IntRange
from tests.engine.onnx.quantlab_builder import (
    conv_requant,
    f32,
    make_model,
    ref_conv,
    ref_requant,
)


def _read_vector(path):
    lines = [ln.strip().rstrip(",") for ln in open(path) if ln.strip()]
    return np.array([int(v) for v in lines[1:]], dtype=np.int64)


def test_dronet_fixture_reproduces_golden_output(dronet_dir):
    model = load(dronet_dir / "DRONETV3_ql_integerized.onnx")
    x = _read_vector(dronet_dir / "input.txt").reshape(1, 1, 200, 200)
    golden = _read_vector(dronet_dir / "output.txt")
    (out,) = model.run({model.inputs[0].name: x}).values()
    assert out.shape == (1, 2)
    np.testing.assert_array_equal(out.ravel(), golden)


def test_dronet_import_recovers_dialect(dronet_dir):
    graph = load(dronet_dir / "DRONETV3_ql_integerized.onnx").graph
    ops = [n.op for n in graph.nodes]
    assert ops.count("RequantShift") == 10
    assert ops.count("HarmonisedAdd") == 3
    assert not {"Div", "Floor", "Clip", "Mul"} & set(ops)
    first_rq = next(n for n in graph.nodes if n.op == "RequantShift")
    assert first_rq.attrs["shift"] == 19  # the Div constant 524288 = 2^19
    assert (first_rq.attrs["lo"], first_rq.attrs["hi"]) == (0, 255)
    conv = next(n for n in graph.nodes if n.op == "Conv")
    w = graph.values[conv.inputs[1]]
    assert w.dtype == np.int8 and w.quant.bits == 8 and w.quant.signed
    assert graph.values[first_rq.outputs[0]].dtype == np.uint8
    assert graph.values[graph.inputs[0]].quant.range == IntRange.from_bits(8, signed=False)


def _two_layer_model(opset, bits, signed_input, seed=0):
    """Conv->requant (bits) -> Conv->requant, plus a harmonised add of both branches."""
    rng = np.random.default_rng(seed)
    wr = IntRange.from_bits(bits, signed=True)
    out_hi = 2**bits - 1
    w1 = rng.integers(wr.lo, wr.hi + 1, size=(3, 2, 3, 3))
    w2 = rng.integers(wr.lo, wr.hi + 1, size=(3, 3, 3, 3))
    mul1, mul2 = rng.integers(50, 400, size=(3, 1, 1)), rng.integers(50, 400, size=(3, 1, 1))
    add1 = rng.integers(-3000, 3000, size=(3, 1, 1))
    add2 = rng.integers(-3000, 3000, size=(3, 1, 1))
    n1, i1, o1 = conv_requant("c1", "x", w1, mul1, add1, 9, 0, out_hi, opset, bits, bits)
    n2, i2, o2 = conv_requant("c2", o1, w2, mul2, add2, 10, 0, out_hi, opset, bits, bits)
    adder = helper.make_node(
        "Add", [o2, o1], ["y"], in1_mul=3, in1_add=2, in1_shift=2, in1_n_levels=2**bits, in1_rq=1,
        in2_mul=5, in2_add=4, in2_shift=3, in2_n_levels=2**bits, in2_rq=1, out_mul=1, out_add=0,
        out_shift=0, out_n_levels=2**bits, out_rq=0, add_bits=8)
    model = make_model(n1 + n2 + [adder], i1 + i2, [("x", [1, 2, 5, 6])], "y", [1, 3, 5, 6], opset)
    xr = IntRange.from_bits(8, signed=signed_input)
    x = rng.integers(xr.lo, xr.hi + 1, size=(1, 2, 5, 6))

    def reference():
        a = ref_requant(ref_conv(x, w1, 1), mul1, add1, 9, 0, out_hi)
        b = ref_requant(ref_conv(a, w2, 1), mul2, add2, 10, 0, out_hi)
        s = (b * 3 + 2) // 4 + (a * 5 + 4) // 8
        return np.clip(s, 0, out_hi).astype(np.int64)

    return model, x, xr, reference


@pytest.mark.parametrize("opset", [10, 13, 17])
@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("signed_input", [False, True])
def test_generated_dialect_matches_integer_reference(opset, bits, signed_input):
    model, x, xr, reference = _two_layer_model(opset, bits, signed_input, seed=bits + opset)
    graph = import_onnx(model, input_range=xr)
    out = Model(graph).run({"x": x})["y"]
    np.testing.assert_array_equal(out, reference())
    assert graph.values["y"].quant.range == IntRange.from_bits(bits, signed=False)


def test_several_inputs_each_get_the_input_range():
    nodes = [helper.make_node(
        "Add", ["a", "b"], ["y"], in1_mul=1, in1_add=0, in1_shift=0, in1_n_levels=256, in1_rq=0,
        in2_mul=1, in2_add=0, in2_shift=0, in2_n_levels=256, in2_rq=0, out_mul=1, out_add=0,
        out_shift=1, out_n_levels=256, out_rq=1, out_signed=1)]
    model = make_model(nodes, [], [("a", [4]), ("b", [4])], "y", [4], 13)
    m = load_model_proto(model, IntRange.from_bits(8, signed=True))
    a = np.array([-128, 127, 100, -7])
    b = np.array([-128, 127, 100, 3])
    out = m.run({"a": a, "b": b})["y"]
    expected = np.clip((a + b) // 2, -128, 127)  # out_rq: floor((s*1 + 0) / 2^1)
    np.testing.assert_array_equal(out, expected)
    assert [i.quant.range for i in m.inputs] == [IntRange.from_bits(8, signed=True)] * 2


def load_model_proto(model, input_range):
    return Model(import_onnx(model, input_range=input_range))


def test_non_integral_constant_is_rejected_with_its_name():
    w = np.full((1, 1, 1, 1), 1.5)
    nodes, inits, out = conv_requant("bad", "x", w, np.ones((1, 1, 1)), np.zeros((1, 1, 1)), 1,
                                     0, 255, 13, 8, 8, pads=0)
    model = make_model(nodes, inits, [("x", [1, 1, 2, 2])], out, [1, 1, 2, 2], 13)
    with pytest.raises(IntegralityError, match="bad.w"):
        import_onnx(model)


def test_weights_outside_weight_bits_are_rejected():
    w = np.full((1, 1, 1, 1), 5.0)  # 5 is not a 2-bit signed level
    nodes, inits, out = conv_requant("c", "x", w, np.ones((1, 1, 1)), np.zeros((1, 1, 1)), 1,
                                     0, 3, 13, 2, 2, pads=0)
    model = make_model(nodes, inits, [("x", [1, 1, 2, 2])], out, [1, 1, 2, 2], 13)
    with pytest.raises(IntegralityError, match="weight_bits=2"):
        import_onnx(model)


def test_input_outside_its_range_is_rejected():
    model, x, xr, _ = _two_layer_model(13, 8, signed_input=True)
    m = load_model_proto(model, IntRange.from_bits(8, signed=False))
    with pytest.raises(IntegralityError, match="input 'x'"):
        m.run({"x": x - 1})


def test_exact_where_float32_runtime_is_not():
    """Large accumulators: float32 (a plain ONNX runtime) rounds, the engine does not."""
    nodes = [
        helper.make_node("Mul", ["x", "m"], ["p"]),
        helper.make_node("Add", ["p", "a"], ["q"]),
        helper.make_node("Div", ["q", "d"], ["r"]),
        helper.make_node("Floor", ["r"], ["y"]),
    ]
    inits = [f32("m", np.float32(1)), f32("a", np.float32(0)), f32("d", np.float32(1))]
    model = make_model(nodes, inits, [("x", [1])], "y", [1], 13)
    model.graph.node[0].attribute.append(helper.make_attribute("mult_bits", 32))
    m = load_model_proto(model, IntRange.from_bits(31, signed=False))
    x = np.array([2**24 + 1])  # not representable in float32
    assert int(m.run({"x": x})["y"][0]) == 2**24 + 1


def test_float_inputs_are_quantised_by_the_input_rule():
    """With ε known, float inputs go through clip(floor(x/ε + 1/2)); ints pass as they are."""
    from edgeq.engine.ir import QuantInfo

    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    graph = import_onnx(make_model(nodes, [], [("x", [5])], "y", [5], 13))
    graph.values["x"].quant = QuantInfo(IntRange.from_bits(4, signed=True), eps=0.5)
    graph.values["x"].dtype = np.dtype(np.int8)
    m = Model(graph)
    x = np.array([-0.25, 0.25, 0.75, 100.0, -100.0])
    # x/ε = -0.5, 0.5, 1.5, 200, -200 -> half up: 0, 1, 2, clip 7, clip -8 -> relu
    np.testing.assert_array_equal(m.run({"x": x})["y"], [0, 1, 2, 7, 0])
    np.testing.assert_array_equal(m.run({"x": np.array([-3, 1, 2, 7, -8])})["y"], [0, 1, 2, 7, 0])


def _avgpool_model(global_pool: bool, mul_factor: int):
    """x -> AveragePool(2x2 s2) | GlobalAveragePool -> Mul(c) -> Add -> Div(16) -> Floor -> Clip."""
    pool = (helper.make_node("GlobalAveragePool", ["x"], ["p"]) if global_pool else
            helper.make_node("AveragePool", ["x"], ["p"], kernel_shape=[2, 2], strides=[2, 2]))
    k = 16 if global_pool else 4
    mul = np.array([3, 5], dtype=np.float32).reshape(2, 1, 1) * mul_factor * k
    nodes = [pool,
             helper.make_node("Mul", ["p", "m"], ["q"], mult_bits=32),
             helper.make_node("Add", ["q", "a"], ["r"], add_bits=32),
             helper.make_node("Div", ["r", "d"], ["s"]),
             helper.make_node("Floor", ["s"], ["t"]),
             helper.make_node("Clip", ["t"], ["y"], min=0.0, max=255.0, out_bits=8)]
    inits = [f32("m", mul), f32("a", np.float32(8)), f32("d", np.float32(16))]
    out = [1, 2, 1, 1] if global_pool else [1, 2, 2, 2]
    return make_model(nodes, inits, [("x", [1, 2, 4, 4])], "y", out, 10), mul.astype(np.int64), k


@pytest.mark.parametrize("global_pool", [False, True])
def test_integer_average_pool_is_exact(global_pool):
    from fractions import Fraction

    model, mul, k = _avgpool_model(global_pool, 1)
    x = np.random.default_rng(5).integers(0, 256, size=(1, 2, 4, 4))
    out = load_model_proto(model, IntRange.from_bits(8, False)).run({"x": x})["y"]
    windows = x.reshape(1, 2, 1, 4, 1, 4) if global_pool else x.reshape(1, 2, 2, 2, 2, 2)
    sums = windows.sum(axis=(3, 5))
    for idx in np.ndindex(sums.shape):
        mean = Fraction(int(sums[idx]), k)  # exact rational mean
        expected = min(max((mean * int(mul[idx[1], 0, 0]) + 8) // 16, 0), 255)
        assert out[idx] == expected


def test_integer_average_pool_with_unaligned_mul_is_refused():
    from edgeq.errors import UnsupportedOpError

    model, _, _ = _avgpool_model(False, 1)
    model.graph.initializer[0].CopyFrom(f32("m", np.array([3, 5], np.float32).reshape(2, 1, 1)))
    with pytest.raises(UnsupportedOpError, match="multiple of 4"):
        import_onnx(model)
