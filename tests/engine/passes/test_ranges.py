"""prove_ranges: bounds contain every value the reference produces, are tight on a
hand-computed case, and unprovable networks raise RangeError naming the node."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeq.engine.backends.reference.executor import run_graph
from edgeq.engine.passes.fusion import fuse_clip, fuse_requant
from edgeq.engine.passes.ranges import NodeBounds, prove_ranges
from edgeq.errors import RangeError
from edgeq.numerics import IntRange
from tests.engine.passes.graphs import (
    U8,
    const,
    conv_rq_graph,
    graph,
    node,
    observe_all,
    random_feeds,
    tq_graph,
    value,
)


def hand_graph():
    """x u8 [N,2,2,2] -> 1x1 Conv (w=[[1,-2],[3,0]], b=[10,-7]) -> RequantShift."""
    w = np.array([[1, -2], [3, 0]], np.int8).reshape(2, 2, 1, 1)
    b = np.array([10, -7], np.int32)
    mul = np.array([3, -2], np.int64).reshape(2, 1, 1)
    add = np.array([100, 1], np.int64).reshape(2, 1, 1)
    nodes = [node("Conv", "conv", ["x", "w", "b"], ["acc"], kernel_shape=[1, 1]),
             node("RequantShift", "rq", ["acc", "mul", "add"], ["q"], shift=2, lo=-128, hi=127)]
    vals = [value("x", ("N", 2, 2, 2), np.uint8, U8), const("w", w), const("b", b),
            value("acc", ("N", 2, 2, 2), np.int64), const("mul", mul), const("add", add),
            value("q", ("N", 2, 2, 2), np.int8, IntRange.from_bits(8, True))]
    return graph(nodes, vals, ["x"], ["q"])


def test_hand_computed_bounds_are_exact():
    g = prove_ranges(hand_graph())
    b = g.meta["bounds"]
    # channel 0: 1*[0,255] + -2*[0,255] + 10 = [-500, 265]; channel 1: 3*[0,255] - 7 = [-7, 758]
    assert g.meta["value_ranges"]["acc"] == (-500, 758)
    # partial sums: ch0 reaches -510 before its bias, ch1 reaches 765 before its bias
    assert b["conv"] == NodeBounds(-510, 765)
    assert (b["conv"].acc_bits, b["conv"].rq_bits) == (32, None)
    # rq: ch0 [-500,265]*3 = [-1500,795], +100 = [-1400,895]; ch1 [-7,758]*-2 = [-1516,14], +1
    assert b["rq"] == NodeBounds(-500, 758, -1516, 895)
    # out: ch0 floor([-1400,895]/4) clipped = [-128,127]; ch1 floor([-1515,15]/4) -> [-128,3]
    assert g.meta["value_ranges"]["q"] == (-128, 127)
    # the extremes are attained: x = (0, 255) gives ch0 = -500 and (after rq) ch1 = 3;
    # x = (255, 255) gives ch1 = 758
    x = np.zeros((1, 2, 2, 2), np.uint8)
    x[:, 1] = 255
    seen = observe_all(g, {"x": x})
    assert seen["acc"][0, 0].min() == -500 and seen["q"][0, 1].max() == 3
    assert observe_all(g, {"x": x * 0 + 255})["acc"][0, 1].max() == 758


def test_bits_switch_to_int64_past_int32():
    assert NodeBounds(-(2**31), 2**31 - 1).acc_bits == 32
    assert NodeBounds(-(2**31) - 1, 0).acc_bits == 64
    assert NodeBounds(0, 2**31, 0, 5).acc_bits == 64 and NodeBounds(0, 1, 0, 2**31).rq_bits == 64


def _contains(g, proven, feeds):
    """Every integer value and every accumulator of the unfused graph lies in its bound."""
    seen = observe_all(g, feeds)
    ranges, bounds = proven.meta["value_ranges"], proven.meta["bounds"]
    for name, arr in seen.items():
        if name in ranges and arr.dtype.kind in "iu" and arr.size:
            lo, hi = ranges[name]
            assert lo <= int(arr.min()) and int(arr.max()) <= hi, name
    for n in g.nodes:
        if n.name in bounds and n.op in ("Conv", "Gemm", "MatMul"):
            acc = seen[n.outputs[0]]
            assert bounds[n.name].acc_lo <= int(acc.min()), n.name
            assert int(acc.max()) <= bounds[n.name].acc_hi, n.name
    return seen


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), shift=st.integers(0, 30), pad=st.booleans(),
       bias=st.booleans(), big_mul=st.booleans())
def test_bounds_contain_every_reference_value(seed, shift, pad, bias, big_mul):
    rng = np.random.default_rng(seed)
    m = 4
    w = rng.integers(-128, 128, (m, 3, 3, 3)).astype(np.int8)
    b = rng.integers(-2**18, 2**18, m).astype(np.int32) if bias else None
    lim = 2**30 if big_mul else 2**8
    mul = rng.integers(-lim, lim, (m, 1, 1)).astype(np.int64)
    add = rng.integers(-2**20, 2**20, (m, 1, 1)).astype(np.int64)
    g = conv_rq_graph(w, b, mul, add, shift, -100, 300, pads=(1, 1, 1, 1) if pad else (0,) * 4)
    proven, fused = prove_ranges(g), prove_ranges(fuse_requant(g))
    for extreme in (None, "lo", "hi"):
        feeds = random_feeds(g, seed=seed, extreme=extreme)
        seen = _contains(g, proven, feeds)
        fb = fused.meta["bounds"]["rq"]  # the fused node: conv accumulator + requant product
        acc = seen["acc"].astype(object)
        rq = acc * mul.astype(object) + add.astype(object)
        assert fb.acc_lo <= acc.min() and acc.max() <= fb.acc_hi
        assert fb.rq_lo <= rq.min() and rq.max() <= fb.rq_hi
        prod = acc * mul.astype(object)
        assert fb.rq_lo <= prod.min() and prod.max() <= fb.rq_hi


@pytest.mark.parametrize("name", ["resnet", "concat", "mobilenet"])
def test_f2t_families_are_proven_and_contained(name):
    g = tq_graph(name)
    proven = prove_ranges(g)
    for extreme in (None,) if name == "mobilenet" else (None, "lo", "hi"):  # (time)
        _contains(g, proven, random_feeds(g, batch=1 if name == "mobilenet" else 4,
                                          extreme=extreme))
    fused = prove_ranges(fuse_clip(fuse_requant(g)))
    bounds = fused.meta["bounds"]
    assert set(bounds) == {n.name for n in fused.nodes}  # every node is integer here
    if name == "mobilenet":  # 8-bit activations x 8-bit weights: int32 accumulators suffice
        assert all(b.acc_bits == 32 for b in bounds.values())


def test_dronet_fixture_is_proven_and_contained(dronet_dir):
    from edgeq.engine import load

    g = load(dronet_dir / "DRONETV3_ql_integerized.onnx").graph
    proven = prove_ranges(g)
    float_nodes = {"Sigmoid_80", "Unsqueeze_82", "Concat_83"}
    assert set(proven.meta["bounds"]) == {n.name for n in g.nodes} - float_nodes
    _contains(g, proven, random_feeds(g))
    _contains(g, proven, random_feeds(g, extreme="hi"))


def test_unknown_input_range_names_the_node():
    g = hand_graph()
    g.values["x"].quant = None
    with pytest.raises(RangeError, match="node 'conv'.*graph input 'x' has no declared"):
        prove_ranges(g)


def test_int64_overflow_of_the_accumulator_names_the_node():
    g = hand_graph()
    g.values["w"] = const("w", np.full((2, 2, 1, 1), 2**55, np.int64))
    with pytest.raises(RangeError, match="node 'conv' .*accumulator.*outside int64"):
        prove_ranges(g)


def test_int64_overflow_of_the_product_names_the_requant():
    g = hand_graph()
    g.values["mul"] = const("mul", np.full((2, 1, 1), 2**60, np.int64))
    with pytest.raises(RangeError, match="node 'rq' .*product.*outside int64"):
        prove_ranges(g)


def test_an_integer_op_without_a_rule_names_the_node():
    g = graph([node("Div", "div", ["x", "two"], ["y"])],
              [value("x", (1, 4), np.uint8, U8), const("two", np.uint8(2)),
               value("y", (1, 4), np.uint8)], ["x"], ["y"])
    run_graph(g, {"x": np.ones((1, 4), np.uint8)})  # the reference runs it...
    with pytest.raises(RangeError, match="node 'div' \\(Div\\): no range rule"):
        prove_ranges(g)  # ...but its bound is not proven


def test_harmonised_add_hand_computed():
    """a u8 rescaled by floor((3a+1)/4) in [0,191] plus b s8 [-128,127] -> s in [-128,318];
    out: floor((-2s+5)/2) in [-316,130] clipped to [-100,100]."""
    s8 = IntRange.from_bits(8, True)
    g = graph([node("HarmonisedAdd", "hadd", ["a", "b"], ["y"], in_mul=[3, 1], in_add=[1, 0],
                    in_shift=[2, 0], in_rq=[1, 0], out_mul=-2, out_add=5, out_shift=1,
                    out_rq=1, lo=-100, hi=100)],
              [value("a", ("N", 4), np.uint8, U8), value("b", ("N", 4), np.int8, s8),
               value("y", ("N", 4), np.int8, IntRange.from_bounds(-100, 100))],
              ["a", "b"], ["y"])
    proven = prove_ranges(g)
    # products: 3a+1 in [1,766] (3a in [0,765]); -2s in [-636,256], -2s+5 in [-631,261]
    assert proven.meta["bounds"]["hadd"] == NodeBounds(-128, 318, -636, 766)
    assert proven.meta["value_ranges"]["y"] == (-100, 100)
    lo = {"a": np.zeros((1, 4), np.uint8), "b": np.full((1, 4), 127, np.int8)}
    assert observe_all(g, lo)["y"].min() == -100  # s = 127: floor(-249/2) = -125 -> -100
    for extreme in (None, "lo", "hi"):
        _contains(g, proven, random_feeds(g, extreme=extreme))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), bits=st.integers(2, 12), signed=st.booleans(),
       trans_b=st.booleans(), with_c=st.booleans(), alpha=st.sampled_from([1, -2, 3]))
def test_gemm_bounds_contain_every_value(seed, bits, signed, trans_b, with_c, alpha):
    rng = np.random.default_rng(seed)
    r = IntRange.from_bits(bits, signed)
    k, n = 6, 5
    w = rng.integers(-2**bits, 2**bits, (n, k) if trans_b else (k, n)).astype(np.int32)
    ins = ["a", "w"] + (["c"] if with_c else [])
    vals = [value("a", ("N", k), np.int16 if bits > 7 else np.int8, r), const("w", w),
            value("acc", ("N", n), np.int64)]
    if with_c:
        vals.append(const("c", rng.integers(-1000, 1000, (2, n) if seed % 2 else n)
                          .astype(np.int32)))
    g = graph([node("Gemm", "gemm", ins, ["acc"], transB=int(trans_b), alpha=float(alpha))],
              vals, ["a"], ["acc"])
    if with_c and g.values["c"].shape[0] == 2:
        g.values["a"].shape = (2, k)  # a per-row C needs M = 2
    proven = prove_ranges(g)
    for extreme in (None, "lo", "hi"):
        _contains(g, proven, random_feeds(g, batch=2, seed=seed, extreme=extreme))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), rq0=st.booleans(), rq1=st.booleans(), out_rq=st.booleans(),
       shift=st.integers(0, 12))
def test_harmonised_add_bounds_contain_every_value(seed, rq0, rq1, out_rq, shift):
    rng = np.random.default_rng(seed)
    s8 = IntRange.from_bits(8, True)
    mul = [int(v) for v in rng.integers(-2**10, 2**10, 2)]
    add = [int(v) for v in rng.integers(-2**12, 2**12, 2)]
    g = graph([node("HarmonisedAdd", "h", ["a", "b"], ["y"], in_mul=mul, in_add=add,
                    in_shift=[shift, shift + 1], in_rq=[int(rq0), int(rq1)],
                    out_mul=int(rng.integers(-50, 50)), out_add=int(rng.integers(-99, 99)),
                    out_shift=2, out_rq=int(out_rq), lo=-128, hi=127)],
              [value("a", ("N", 8), np.uint8, U8), value("b", ("N", 8), np.int8, s8),
               value("y", ("N", 8), np.int8, s8)], ["a", "b"], ["y"])
    proven = prove_ranges(g)
    b = proven.meta["bounds"]["h"]
    for extreme in (None, "lo", "hi"):
        feeds = random_feeds(g, batch=4, seed=seed, extreme=extreme)
        _contains(g, proven, feeds)
        # the exact sum of the rescaled inputs, in Python integers, lies in acc
        parts = []
        for x, m, a, s, on in ((feeds["a"], mul[0], add[0], shift, rq0),
                               (feeds["b"], mul[1], add[1], shift + 1, rq1)):
            v = x.astype(object)
            parts.append((v * m + a) // 2**s if on else v)
            if on:
                prod = v * m + a
                assert b.rq_lo <= prod.min() and prod.max() <= b.rq_hi
        total = parts[0] + parts[1]
        assert b.acc_lo <= total.min() and total.max() <= b.acc_hi
