"""Shape and dtype completion by a trial run of the reference backend.

ONNX shape inference gives shapes (with symbolic dims) for standard ops, but not the
dtypes of the integer dialect (QuantLab files declare float everywhere) nor shapes for
the IR's own ops. A trial run on zero inputs of the declared shapes (symbolic dims
taken as 1) records every value's actual dtype and shape: the kernels are the spec.
"""

from __future__ import annotations

import numpy as np

from edgeq.engine.ir import Graph
from edgeq.errors import EdgeqError


def _trial_feeds(graph: Graph) -> dict[str, np.ndarray] | None:
    feeds = {}
    for name in graph.inputs:
        v = graph.values[name]
        if v.shape is None or v.dtype is None:
            return None
        shape = tuple(d if isinstance(d, int) else 1 for d in v.shape)
        feeds[name] = np.zeros(shape, dtype=v.dtype)
        if v.quant is not None:
            feeds[name] = np.full(shape, v.quant.range.lo, dtype=v.dtype)
    return feeds


def _has_data_inputs(graph: Graph) -> bool:
    """Unquantised integer graph inputs (shape, axes, indices tensors) steer the computation."""
    return any(
        graph.values[n].quant is None and graph.values[n].is_integer for n in graph.inputs
    )


def complete_shapes(graph: Graph) -> Graph:
    """Fill in every node output's dtype (actual) and shape (ONNX's if known, else actual)."""
    from edgeq.engine.backends.reference.executor import run_graph

    feeds = _trial_feeds(graph)
    if feeds is None:
        return graph
    seen: dict[str, tuple] = {}
    try:
        run_graph(graph, feeds, observe=lambda n, a: seen.__setitem__(n, (a.shape, a.dtype)))
    except EdgeqError:
        if _has_data_inputs(graph):
            return graph  # zero shapes/indices make the trial meaningless: keep ONNX's shapes
        raise
    symbolic = any(not isinstance(d, int) for n in graph.inputs for d in graph.values[n].shape)
    for name, (shape, dtype) in seen.items():
        v = graph.values[name]
        if v.quant is None:
            v.dtype = np.dtype(dtype)
        if v.shape is None or len(v.shape) != len(shape) or not symbolic:
            v.shape = tuple(int(d) for d in shape)
    return graph
