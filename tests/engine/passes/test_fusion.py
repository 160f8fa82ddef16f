"""fuse_requant / fuse_clip: the right nodes merge, and the fused graph computes the
same integers as the unfused one, bit for bit (the fused kernels compose the parts,
but the comparison runs both graphs end to end)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeq.engine.backends.reference import supported_ops
from edgeq.engine.backends.reference.executor import run_graph
from edgeq.engine.passes import run_passes
from edgeq.engine.passes.fusion import fuse_clip, fuse_requant
from edgeq.numerics import IntRange
from tests.engine.passes.graphs import (
    S8,
    const,
    conv_rq_graph,
    graph,
    node,
    random_feeds,
    tq_graph,
    value,
)


def _weights(seed, m=4, cg=3):
    rng = np.random.default_rng(seed)
    w = rng.integers(-128, 128, (m, cg, 3, 3)).astype(np.int8)
    b = rng.integers(-5000, 5000, m).astype(np.int32)
    mul = rng.integers(1, 2**12, (m, 1, 1)).astype(np.int64)
    add = rng.integers(-2**15, 2**15, (m, 1, 1)).astype(np.int64)
    return w, b, mul, add


def _same(g1, g2, seeds=(0, 1)):
    for seed in seeds:
        feeds = random_feeds(g1, seed=seed)
        a, b = run_graph(g1, feeds), run_graph(g2, feeds)
        for name in g1.outputs:
            np.testing.assert_array_equal(a[name], b[name])


def test_conv_requant_fuses_into_one_node_named_after_the_requant():
    w, b, mul, add = _weights(0)
    g = conv_rq_graph(w, b, mul, add, 16, -128, 127)
    f = run_passes(g, [fuse_requant], supported_ops())
    assert [(n.op, n.name, n.domain) for n in f.nodes] == [("ConvRequant", "rq", "edgeq")]
    (n,) = f.nodes
    assert n.inputs == ["x", "w", "b", "mul", "add"] and n.outputs == ["q"]
    assert n.attrs["shift"] == 16 and (n.attrs["lo"], n.attrs["hi"]) == (-128, 127)
    assert n.attrs["pads"] == [0, 0, 0, 0] and "acc" not in f.values
    assert len(g.nodes) == 2  # the input graph is untouched
    _same(g, f)


def test_omitted_bias_becomes_an_empty_input():
    w, _, mul, add = _weights(1)
    f = fuse_requant(conv_rq_graph(w, None, mul, add, 14, 0, 255))
    assert f.nodes[0].inputs == ["x", "w", "", "mul", "add"]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), shift=st.integers(0, 24), lo=st.integers(-200, 0),
       span=st.integers(1, 400), pad=st.booleans(), group=st.sampled_from([1, 3]),
       bias=st.booleans())
def test_fused_conv_equals_unfused_bit_for_bit(seed, shift, lo, span, pad, group, bias):
    rng = np.random.default_rng(seed)
    m = 6
    w = rng.integers(-128, 128, (m, 3 // group, 3, 3)).astype(np.int8)
    b = rng.integers(-2**16, 2**16, m).astype(np.int32) if bias else None
    mul = rng.integers(-2**10, 2**10, (m, 1, 1)).astype(np.int64)
    add = rng.integers(-2**20, 2**20, (m, 1, 1)).astype(np.int64)
    g = conv_rq_graph(w, b, mul, add, shift, lo, lo + span, pads=(1, 1, 1, 1) if pad else
                      (0, 0, 0, 0), group=group)
    f = run_passes(g, [fuse_requant, fuse_clip], supported_ops())
    assert [n.op for n in f.nodes] == ["ConvRequant"]
    _same(g, f, seeds=(seed,))


def _gemm_graph(op, with_c):
    rng = np.random.default_rng(5)
    k, n = 7, 5
    wshape = (n, k) if op == "Gemm" else (k, n)
    ins = ["a", "w"] + (["c"] if with_c else [])
    attrs = {"transB": 1} if op == "Gemm" else {}
    nodes = [node(op, "lin", ins, ["acc"], **attrs),
             node("RequantShift", "rq", ["acc", "mul", "add"], ["q"], shift=8, lo=-128, hi=127)]
    vals = [value("a", ("N", k), np.int8, S8), const("w", rng.integers(-128, 128, wshape)
                                                   .astype(np.int8), S8),
            value("acc", ("N", n), np.int64), const("mul", rng.integers(1, 300, n)),
            const("add", rng.integers(-500, 500, n)), value("q", ("N", n), np.int8, S8)]
    if with_c:
        vals.append(const("c", rng.integers(-1000, 1000, n).astype(np.int32)))
    return graph(nodes, vals, ["a"], ["q"])


@pytest.mark.parametrize("op,with_c,fused,inputs", [
    ("Gemm", True, "GemmRequant", ["a", "w", "c", "mul", "add"]),
    ("Gemm", False, "GemmRequant", ["a", "w", "", "mul", "add"]),
    ("MatMul", False, "MatMulRequant", ["a", "w", "mul", "add"]),
])
def test_gemm_and_matmul_fuse(op, with_c, fused, inputs):
    g = _gemm_graph(op, with_c)
    f = run_passes(g, [fuse_requant], supported_ops())
    assert [(n.op, n.inputs) for n in f.nodes] == [(fused, inputs)]
    assert f.nodes[0].attrs.get("transB", 0) == (1 if op == "Gemm" else 0)
    _same(g, f)


def test_no_fusion_when_the_accumulator_has_another_reader_or_is_an_output():
    w, b, mul, add = _weights(2)
    g = conv_rq_graph(w, b, mul, add, 16, -128, 127)
    g.outputs.append("acc")
    assert [n.op for n in fuse_requant(g).nodes] == ["Conv", "RequantShift"]
    g = conv_rq_graph(w, b, mul, add, 16, -128, 127, tail=("Relu", [], {}))
    g.nodes.insert(1, node("Relu", "other", ["acc"], ["acc2"]))
    g.values["acc2"] = value("acc2", g.values["acc"].shape, np.int64)
    g.outputs.append("acc2")
    assert [n.op for n in fuse_requant(g).nodes] == ["Conv", "Relu", "RequantShift", "Relu"]


def test_float_conv_is_not_fused():
    rng = np.random.default_rng(0)
    g = graph([node("Conv", "conv", ["x", "w"], ["acc"]),
               node("RequantShift", "rq", ["acc", "mul", "add"], ["q"], shift=0, lo=0, hi=9)],
              [value("x", (1, 1, 3, 3), np.float32), const("w", rng.random((1, 1, 1, 1))
                                                            .astype(np.float32)),
               value("acc", (1, 1, 3, 3), np.float32), const("mul", np.int64(1)),
               const("add", np.int64(0)), value("q", (1, 1, 3, 3), np.uint8)], ["x"], ["q"])
    assert [n.op for n in fuse_requant(g).nodes] == ["Conv", "RequantShift"]


@pytest.mark.parametrize("tail,lo,hi", [
    (("Relu", [], {}), 0, 127),
    (("Clip", ["cmin", "cmax"], {}), -5, 100),  # opset >= 11: bounds as inputs
    (("Clip", [], {"min": -7.5, "max": 99.5}), -7, 99),  # opset < 11: float attrs round in
])
def test_clip_folds_into_lo_hi(tail, lo, hi):
    w, b, mul, add = _weights(3)
    g = conv_rq_graph(w, b, mul, add, 17, -128, 127, tail=tail,
                      extra=[const("cmin", np.int8(-5)), const("cmax", np.int8(100))])
    f = run_passes(g, [fuse_clip], supported_ops())
    assert [n.op for n in f.nodes] == ["Conv", "RequantShift"]
    rq = f.nodes[1]
    assert (rq.attrs["lo"], rq.attrs["hi"]) == (lo, hi) and rq.outputs == ["y"]
    assert f.values["y"].quant.range == IntRange.from_bounds(lo, hi)
    _same(g, f)
    both = run_passes(g, [fuse_requant, fuse_clip], supported_ops())
    assert [n.op for n in both.nodes] == ["ConvRequant"]
    _same(g, both)


def test_clip_with_a_computed_bound_or_two_readers_stays():
    w, b, mul, add = _weights(4)
    g = conv_rq_graph(w, b, mul, add, 17, -128, 127, tail=("Clip", ["x_min"], {}),
                      extra=[value("x_min", (), np.int8, S8)])
    assert [n.op for n in fuse_clip(g).nodes] == ["Conv", "RequantShift", "Clip"]
    g = conv_rq_graph(w, b, mul, add, 17, -128, 127, tail=("Relu", [], {}))
    g.outputs.append("q")
    assert [n.op for n in fuse_clip(g).nodes] == ["Conv", "RequantShift", "Relu"]


@pytest.mark.parametrize("name", ["resnet", "concat"])
def test_f2t_families_fuse_every_conv_and_stay_bit_exact(name):
    g = tq_graph(name)
    f = run_passes(g, [fuse_requant, fuse_clip], supported_ops())
    ops = [n.op for n in f.nodes]
    # every Conv that a RequantShift reads is fused; the sum-pool Conv and the final Gemm
    # (graph output, no requantisation) stay
    assert ops.count("Conv") == 1 and ops.count("Gemm") == 1 and "ConvRequant" in ops
    for extreme in (None, "lo", "hi"):
        feeds = random_feeds(g, batch=3, extreme=extreme)
        np.testing.assert_array_equal(run_graph(g, feeds)[g.outputs[0]],
                                      run_graph(f, feeds)[f.outputs[0]])
