"""A chain of small random integer layers covering every armcl layer type, with each
layer's result a graph output (so one binary checks them all, each against the
reference backend): 3×3 stride 1 and 2 with symmetric and asymmetric pads, 1×1 (the
NHWC in-place path), fully connected (Gemm with transB and bias, MatMul), unsigned and
signed inputs, per-channel RequantShift; weights span [-128, 127]."""

from __future__ import annotations

import numpy as np

from edgeq.numerics import IntRange
from tests.engine.passes.graphs import S8, U8, const, graph, node, value


def _rq(rng, name, acc, out, m, shape, lo, hi, shift, per_axis_shape):
    mul = rng.integers(1, 2**10, per_axis_shape).astype(np.int64)
    add = rng.integers(-(2**16), 2**16, per_axis_shape).astype(np.int64)
    dt = np.uint8 if lo >= 0 else np.int8
    return ([node("RequantShift", name, [acc, f"{name}_mul", f"{name}_add"], [out],
                  shift=shift, lo=lo, hi=hi)],
            [const(f"{name}_mul", mul), const(f"{name}_add", add),
             value(out, shape, dt, IntRange.from_bounds(lo, hi))])


def layer_chain(seed: int = 0):
    """(graph, [names of the linear nodes]) — see the module docstring."""
    rng = np.random.default_rng(seed)
    nodes, vals = [], [value("x", ("N", 5, 9, 9), np.uint8, U8)]

    def conv(name, x, out, c, m, k, stride, pads, hw_out, lo, hi, shift, bias=True):
        w = rng.integers(-128, 128, (m, c, k, k)).astype(np.int8)
        w.flat[0], w.flat[1] = -128, 127  # the extremes of the u8·u8 encoding
        ins = [x, f"{name}_w"] + ([f"{name}_b"] if bias else [])
        nodes.append(node("Conv", name, ins, [f"{name}_acc"], kernel_shape=[k, k],
                          strides=[stride, stride], pads=list(pads)))
        vals.extend([const(f"{name}_w", w, S8),
                     value(f"{name}_acc", ("N", m, *hw_out), np.int64)])
        if bias:
            vals.append(const(f"{name}_b", rng.integers(-5000, 5000, m).astype(np.int32)))
        ns, vs = _rq(rng, f"{name}_rq", f"{name}_acc", out, m, ("N", m, *hw_out), lo, hi, shift,
                     (m, 1, 1))
        nodes.extend(ns)
        vals.extend(vs)

    conv("c3s1", "x", "y1", 5, 6, 3, 1, (1, 1, 1, 1), (9, 9), -128, 127, 20)
    conv("c3s2", "y1", "y2", 6, 7, 3, 2, (1, 0, 0, 1), (4, 4), 0, 255, 18)
    conv("c1u", "y2", "y3", 7, 8, 1, 1, (0, 0, 0, 0), (4, 4), 0, 255, 17)
    conv("c1s", "y3", "y4", 8, 4, 1, 1, (0, 0, 0, 0), (4, 4), -128, 127, 17, bias=False)
    # fully connected: signed (Gemm, transB, bias) and unsigned (MatMul)
    nodes.append(node("Flatten", "flat4", ["y4"], ["f4"], axis=1))
    vals.append(value("f4", ("N", 64), np.int8, S8))
    nodes.append(node("Gemm", "fc_s", ["f4", "fc_s_w", "fc_s_b"], ["fc_s_acc"], transB=1))
    vals += [const("fc_s_w", rng.integers(-128, 128, (10, 64)).astype(np.int8), S8),
             const("fc_s_b", rng.integers(-9000, 9000, 10).astype(np.int32)),
             value("fc_s_acc", ("N", 10), np.int64)]
    ns, vs = _rq(rng, "fc_s_rq", "fc_s_acc", "y5", 10, ("N", 10), -128, 127, 18, (10,))
    nodes += ns
    vals += vs
    nodes.append(node("Flatten", "flat3", ["y3"], ["f3"], axis=1))
    vals.append(value("f3", ("N", 128), np.uint8, U8))
    nodes.append(node("MatMul", "fc_u", ["f3", "fc_u_w"], ["fc_u_acc"]))
    vals += [const("fc_u_w", rng.integers(-128, 128, (128, 5)).astype(np.int8), S8),
             value("fc_u_acc", ("N", 5), np.int64)]
    ns, vs = _rq(rng, "fc_u_rq", "fc_u_acc", "y6", 5, ("N", 5), 0, 255, 19, (5,))
    nodes += ns
    vals += vs
    g = graph(nodes, vals, ["x"], ["y1", "y2", "y3", "y4", "y5", "y6"])
    return g, ["c3s1_rq", "c3s2_rq", "c1u_rq", "c1s_rq", "fc_s_rq", "fc_u_rq"]
