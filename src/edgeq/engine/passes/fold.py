"""Constant folding of third-party quantisers applied to constants.

Imported QDQ and QONNX files quantise their weights in the graph: ``DequantizeLinear``
or QONNX ``Quant`` of a constant feeding a float Conv/Gemm. A backend that needs
constant weights (the C backend) sees them only once these nodes are evaluated.
:func:`fold_constant_quantisers` runs each such node whose inputs are all constants
through the reference kernel (the specification, so the folded values are the ones the
reference computes at run time, bit for bit) and replaces its output by the constant.
"""

from __future__ import annotations

import numpy as np

from edgeq.engine.ir import Graph, Value

FOLDABLE = frozenset({"DequantizeLinear", "QuantizeLinear", "Quant", "IntQuant",
                      "BipolarQuant", "Trunc"})


def fold_constant_quantisers(graph: Graph) -> Graph:
    """A copy of ``graph`` where every FOLDABLE node with only constant inputs (and no
    graph output) is replaced by its constant result."""
    g = graph.copy()
    kept = []
    for node in g.nodes:
        ins = [i for i in node.inputs if i]
        foldable = (node.op in FOLDABLE and ins and all(g.values[i].is_const for i in ins)
                    and not set(node.outputs) & set(g.outputs))
        if not foldable:
            kept.append(node)
            continue
        results = fold_node(g, node)
        for name, data in zip(node.outputs, results, strict=False):
            v = g.values[name]
            v.data = np.asarray(data)
            v.dtype, v.shape = v.data.dtype, tuple(v.data.shape)
    g.nodes = kept
    g.remove_unused()
    return g


def fold_node(graph: Graph, node) -> tuple:
    """The outputs of ``node`` (all inputs constant) by the reference kernel."""
    from edgeq.engine.backends.reference.executor import _run_node

    return _run_node(graph, node, [graph.const(i) if i else None for i in node.inputs])


def absorb_input_zero_point(graph: Graph) -> Graph:
    """``Sub(x, z) -> Conv(w, b)`` (onnxruntime's QLinearConv input zero point, x 8-bit)
    becomes ``Pad(x, value=z) -> Conv(w, b - z*Σw)`` without the convolution's own
    padding: Σ w·(x - z) over the taps = Σ w·x - z·Σ w, and a zero of ``x - z`` in the
    border is the value ``z`` of ``x``. Exact in integers; the convolution then reads the
    8-bit tensor itself (the C backend's 8-bit kernels) instead of a widened difference.
    Only a scalar ``z``, a single-consumer Sub, constant integer weights and explicit
    pads (no auto_pad) are rewritten."""
    g = graph.copy()
    out = []
    for node in g.nodes:
        conv = _zero_point_conv(g, node)
        if conv is None:
            out.append(node)
            continue
        x, z = node.inputs[0], int(np.ravel(g.const(node.inputs[1]))[0])
        w = g.const(conv.inputs[1]).astype(np.int64)
        m = w.shape[0]
        b_name = conv.inputs[2] if len(conv.inputs) > 2 and conv.inputs[2] else None
        bias = np.zeros(m, np.int64) if b_name is None else g.const(b_name).astype(np.int64)
        bias = bias - z * w.reshape(m, -1).sum(axis=1)
        fits = int(bias.min()) >= -(2**31) and int(bias.max()) < 2**31
        bname = g.fresh_name(f"{conv.name}.bias_zp")
        g.values[bname] = Value(bname, (m,), None, None, bias.astype(np.int32 if fits
                                                                      else np.int64))
        g.values[bname].dtype = g.values[bname].data.dtype
        pads = [int(p) for p in (conv.attrs.get("pads") or (0, 0, 0, 0))]
        src = x
        if any(pads):
            src = _pad_node(g, out, node, x, z, pads)
            conv.attrs["pads"] = [0, 0, 0, 0]
        conv.inputs = [src, conv.inputs[1], bname]
    g.nodes = out
    g.remove_unused()
    return g


def _zero_point_conv(g: Graph, node):
    """The Conv a rewritable ``Sub(x, z)`` feeds, else None."""
    if node.op != "Sub" or len(node.inputs) != 2 or node.outputs[0] in g.outputs:
        return None
    x, zv = g.values[node.inputs[0]], g.values[node.inputs[1]]
    if x.is_const or not zv.is_const or zv.data.size != 1 or not zv.is_integer:
        return None
    if x.dtype is None or np.dtype(x.dtype) not in (np.dtype(np.uint8), np.dtype(np.int8)):
        return None
    users = g.consumers(node.outputs[0])
    if len(users) != 1 or users[0].op != "Conv" or users[0].inputs[0] != node.outputs[0]:
        return None
    conv = users[0]
    w = g.const(conv.inputs[1])
    auto = conv.attrs.get("auto_pad", "NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if w is None or w.ndim != 4 or not np.issubdtype(w.dtype, np.integer) or auto != "NOTSET":
        return None
    if len(conv.inputs) > 2 and conv.inputs[2] and g.const(conv.inputs[2]) is None:
        return None
    if x.shape is None or len(x.shape) != 4 or any(p < 0 for p in conv.attrs.get("pads") or ()):
        return None
    return conv


def _pad_node(g: Graph, out: list, sub, x: str, z: int, pads: list[int]) -> str:
    from edgeq.engine.ir import Node

    xv = g.values[x]
    pt, pl, pb, pr = pads
    n, c, h, w = xv.shape
    hh = h + pt + pb if isinstance(h, int) else None
    ww = w + pl + pr if isinstance(w, int) else None
    name = g.fresh_name(f"{sub.name}.pad_zp")
    pname, vname = g.fresh_name(f"{name}.pads"), g.fresh_name(f"{name}.value")
    pdata = np.array([0, 0, pt, pl, 0, 0, pb, pr], np.int64)
    vdata = np.array(z, dtype=xv.dtype)
    g.values[pname] = Value(pname, (8,), pdata.dtype, None, pdata)
    g.values[vname] = Value(vname, (), vdata.dtype, None, vdata)
    g.values[name] = Value(name, (n, c, hh, ww), xv.dtype, None, None)
    out.append(Node("Pad", name, [x, pname, vname], [name], {"mode": "constant"}))
    return name
