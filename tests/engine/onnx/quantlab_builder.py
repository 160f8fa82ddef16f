"""Builds small QuantLab/DORY-dialect ONNX files and evaluates them independently.

The independent evaluator uses Python integers and naive loops: it shares no code with
the engine, so agreement means the importer honoured the dialect's integer semantics.
"""

from __future__ import annotations

import itertools

import numpy as np
from onnx import TensorProto, helper, numpy_helper


def f32(name, arr):
    return numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name)


def conv_requant(prefix, x, w, mul, add, d, lo, hi, opset, out_bits, weight_bits, pads=1):
    """Nodes and initializers of Conv -> Mul -> Add -> Div(2^d) -> Floor -> Clip."""
    inits = [f32(f"{prefix}.w", w), f32(f"{prefix}.mul", mul), f32(f"{prefix}.add", add),
             f32(f"{prefix}.div", np.float32(2**d))]
    k = w.shape[-1]
    nodes = [
        helper.make_node("Conv", [x, f"{prefix}.w"], [f"{prefix}.acc"], kernel_shape=[k, k],
                         pads=[pads] * 4, strides=[1, 1], weight_bits=weight_bits, bias_bits=32),
        helper.make_node("Mul", [f"{prefix}.acc", f"{prefix}.mul"], [f"{prefix}.m"], mult_bits=32),
        helper.make_node("Add", [f"{prefix}.m", f"{prefix}.add"], [f"{prefix}.a"], add_bits=32),
        helper.make_node("Div", [f"{prefix}.a", f"{prefix}.div"], [f"{prefix}.d"]),
        helper.make_node("Floor", [f"{prefix}.d"], [f"{prefix}.f"]),
    ]
    if opset < 11:
        nodes.append(helper.make_node("Clip", [f"{prefix}.f"], [f"{prefix}.y"], min=float(lo),
                                      max=float(hi), out_bits=out_bits))
    else:
        inits += [f32(f"{prefix}.lo", np.float32(lo)), f32(f"{prefix}.hi", np.float32(hi))]
        nodes.append(helper.make_node("Clip", [f"{prefix}.f", f"{prefix}.lo", f"{prefix}.hi"],
                                      [f"{prefix}.y"], out_bits=out_bits))
    return nodes, inits, f"{prefix}.y"


def make_model(nodes, inits, inputs, output, out_shape, opset):
    graph = helper.make_graph(
        nodes, "ql", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, out_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7 if opset <= 13 else 8
    return model


# -- the independent reference -------------------------------------------------------------
def ref_conv(x, w, pads):
    """Naive NCHW cross-correlation, stride 1, in Python integers."""
    n, c, h, wd = x.shape
    m, _, k, _ = w.shape
    xp = np.zeros((n, c, h + 2 * pads, wd + 2 * pads), dtype=object)
    xp[:, :, pads:pads + h, pads:pads + wd] = x.astype(object)
    oh, ow = h + 2 * pads - k + 1, wd + 2 * pads - k + 1
    out = np.zeros((n, m, oh, ow), dtype=object)
    for b, o, i, j in itertools.product(range(n), range(m), range(oh), range(ow)):
        out[b, o, i, j] = int(np.sum(xp[b, :, i:i + k, j:j + k] * w[o].astype(object)))
    return out


def ref_requant(acc, mul, add, d, lo, hi):
    """clip(floor((acc*mul + add) / 2^d)) with Python's exact floor division."""
    mul = np.broadcast_to(np.asarray(mul, dtype=object), acc.shape)
    add = np.broadcast_to(np.asarray(add, dtype=object), acc.shape)
    out = np.empty(acc.shape, dtype=object)
    for idx in np.ndindex(acc.shape):
        out[idx] = min(max((acc[idx] * mul[idx] + add[idx]) // (2**d), lo), hi)
    return out
