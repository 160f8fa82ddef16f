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

from edgeq.engine.ir import Graph

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
