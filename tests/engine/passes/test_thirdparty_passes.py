"""The passes' third-party parts: constant folding of quantisers (passes/fold.py) and the
range rules of the third-party ops (passes/ranges.py), on hand-built graphs."""

from __future__ import annotations

import numpy as np
import pytest

from edgeq.engine.backends.reference.executor import run_graph
from edgeq.engine.passes.fold import fold_constant_quantisers
from edgeq.engine.passes.ranges import prove_ranges
from edgeq.errors import RangeError
from edgeq.numerics import IntRange
from tests.engine.passes.graphs import U8, const, graph, node, value


def _dq_conv_graph():
    """x f32 -> Conv(DequantizeLinear(w_q, per-channel scale, zp)) -> y."""
    w_q = np.array([[[[3]], [[-7]]], [[[127]], [[-128]]]], np.int8)  # (2, 2, 1, 1)
    nodes = [node("DequantizeLinear", "dq", ["wq", "ws", "wz"], ["w"], axis=0),
             node("Conv", "conv", ["x", "w"], ["y"], kernel_shape=[1, 1])]
    values = [value("x", (1, 2, 2, 2), np.float32), const("wq", w_q),
              const("ws", np.array([0.5, 0.25], np.float32)), const("wz", np.zeros(2, np.int8)),
              value("w", (2, 2, 1, 1), np.float32), value("y", (1, 2, 2, 2), np.float32)]
    return graph(nodes, values, ["x"], ["y"])


def test_dequantize_of_constants_folds_to_the_hand_computed_weights():
    g = _dq_conv_graph()
    folded = fold_constant_quantisers(g)
    folded.validate()
    assert [n.op for n in folded.nodes] == ["Conv"]
    w = folded.const("w")
    assert w.dtype == np.float32
    assert w.reshape(2, 2).tolist() == [[1.5, -3.5], [31.75, -32.0]]  # w_q * scale
    x = np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2)
    np.testing.assert_array_equal(run_graph(folded, {"x": x})["y"], run_graph(g, {"x": x})["y"])


def test_quantiser_of_a_tensor_or_of_a_graph_output_stays():
    g = _dq_conv_graph()
    g.outputs = ["y", "w"]
    assert [n.op for n in fold_constant_quantisers(g).nodes] == ["DequantizeLinear", "Conv"]
    nodes = [node("QuantizeLinear", "q", ["x", "s", "z"], ["y"])]
    values = [value("x", (4,), np.float32), const("s", np.float32(0.5)), const("z", np.uint8(3)),
              value("y", (4,), np.uint8)]
    g2 = graph(nodes, values, ["x"], ["y"])
    assert [n.op for n in fold_constant_quantisers(g2).nodes] == ["QuantizeLinear"]


def _bounds(nodes, values, inputs, outputs):
    g = prove_ranges(graph(nodes, values, inputs, outputs))
    return g.meta["bounds"], g.meta["value_ranges"]


def test_qlinear_requant_saturates_and_checks_its_int32_accumulator():
    vals = [value("acc", (1, 4), np.int64, IntRange.from_bounds(-1000, 70000)),
            const("m", np.float32(0.01)), const("z", np.int64(5)), value("y", (1, 4), np.uint8)]
    nodes = [node("QLinearRequant", "rq", ["acc", "m", "z"], ["y"], lo=0, hi=255)]
    bounds, ranges = _bounds(nodes, vals, ["acc"], ["y"])
    assert (bounds["rq"].acc_lo, bounds["rq"].acc_hi) == (-1000, 70000)
    assert ranges["y"] == (0, 255)
    vals[0] = value("acc", (1, 4), np.int64, IntRange.from_bounds(0, 2**31))
    with pytest.raises(RangeError, match="'rq'.*int32"):
        _bounds(nodes, vals, ["acc"], ["y"])


def test_global_average_pool_accumulator_is_the_window_sum_minus_zero_points():
    vals = [value("x", (1, 3, 4, 5), np.uint8, U8), const("sx", np.float32(0.1)),
            const("zx", np.uint8(7)), const("sy", np.float32(0.2)), const("zy", np.uint8(9)),
            value("y", (1, 3, 1, 1), np.uint8)]
    nodes = [node("QLinearAvgPoolOrt", "gap", ["x", "sx", "zx", "sy", "zy"], ["y"], lo=0,
                  hi=255)]
    bounds, _ = _bounds(nodes, vals, ["x"], ["y"])
    assert (bounds["gap"].acc_lo, bounds["gap"].acc_hi) == (-20 * 7, 20 * 255 - 20 * 7)


def test_requant_div_bounds_hand_computed():
    """x in [-10, 20], mul 3 (per channel 3 and -2), add 5, div 4: x*mul in [-40, 60],
    +add in [-35, 65], quotient between floor(-35/4) = -9 and ceil(65/4) = 17."""
    vals = [value("x", (1, 2, 3), np.int64, IntRange.from_bounds(-10, 20)),
            const("mul", np.array([[[3], [-2]]], np.int64)), const("add", np.int64(5)),
            value("y", (1, 2, 3), np.int16)]
    nodes = [node("RequantDiv", "rd", ["x", "mul", "add"], ["y"], div=4, rounding="trunc",
                  lo=-100, hi=100)]
    bounds, ranges = _bounds(nodes, vals, ["x"], ["y"])
    assert ranges["y"] == (-9, 17)
    assert (bounds["rd"].rq_lo, bounds["rd"].rq_hi) == (-40, 65)


def test_float_to_int_cast_may_be_any_value_of_its_type():
    vals = [value("x", (3,), np.float32), value("y", (3,), np.int16)]
    _, ranges = _bounds([node("Cast", "c", ["x"], ["y"], to=5)], vals, ["x"], ["y"])
    assert ranges["y"] == (-32768, 32767)


def _zp_conv_graph(z, pads, dtype=np.uint8):
    """x (8-bit) -> Sub(z) -> Conv(w, b, pads) -> acc (int64), as the QDQ importer writes
    onnxruntime's QLinearConv with a nonzero input zero point."""
    rng = np.random.default_rng(3)
    w = rng.integers(-128, 128, (4, 3, 3, 3)).astype(np.int8)
    b = rng.integers(-1000, 1000, 4).astype(np.int32)
    rngx = U8 if dtype == np.uint8 else IntRange.from_bits(8, True)
    nodes = [node("Sub", "sub", ["x", "z"], ["xc"]),
             node("Conv", "conv", ["xc", "w", "b"], ["acc"], pads=list(pads), strides=[2, 1],
                  kernel_shape=[3, 3])]
    oh = (6 + pads[0] + pads[2] - 3) // 2 + 1
    ow = 5 + pads[1] + pads[3] - 2
    values = [value("x", (2, 3, 6, 5), dtype, rngx), const("z", np.array([z], np.int64)),
              value("xc", (2, 3, 6, 5), np.int64), const("w", w), const("b", b),
              value("acc", (2, 4, oh, ow), np.int64)]
    return graph(nodes, values, ["x"], ["acc"])


@pytest.mark.parametrize("z, pads, dtype", [(117, (1, 1, 1, 1), np.uint8),
                                            (-5, (0, 2, 1, 0), np.int8),
                                            (9, (0, 0, 0, 0), np.uint8)])
def test_input_zero_point_moves_into_a_pad_and_the_bias(z, pads, dtype):
    from edgeq.engine.passes.fold import absorb_input_zero_point

    g = _zp_conv_graph(z, pads, dtype)
    out = absorb_input_zero_point(g)
    out.validate()
    ops = [n.op for n in out.nodes]
    assert ops == (["Pad", "Conv"] if any(pads) else ["Conv"])
    conv = out.nodes[-1]
    assert out.values[conv.inputs[0]].dtype == np.dtype(dtype)  # the 8-bit tensor itself
    w, b = g.const("w").astype(np.int64), g.const("b").astype(np.int64)
    assert out.const(conv.inputs[2]).tolist() == [int(b[m]) - z * int(w[m].sum())
                                                  for m in range(4)]
    info = np.iinfo(dtype)
    for seed in range(3):  # extremes included: every border tap sees the zero point
        x = np.random.default_rng(seed).integers(info.min, int(info.max) + 1, (2, 3, 6, 5))
        x = x.astype(dtype)
        want = run_graph(g, {"x": x})["acc"]
        np.testing.assert_array_equal(run_graph(out, {"x": x})["acc"], want)


def test_zero_point_of_a_shared_difference_stays():
    from edgeq.engine.passes.fold import absorb_input_zero_point

    g = _zp_conv_graph(7, (1, 1, 1, 1))
    g.outputs = ["acc", "xc"]
    assert [n.op for n in absorb_input_zero_point(g).nodes] == ["Sub", "Conv"]
