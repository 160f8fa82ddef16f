"""Sample-by-sample batches: whether a compiled batch of N runs as N batch-1 passes.

A batch-N program that runs every layer over all N samples streams N samples' activations
through the caches per layer (MobileNetV1 3DDFA at batch 32: 3.7 MB for one early layer,
more than a core's L2), and splits each layer over the threads. Run sample by sample
instead, each sample's activations stay in cache from one layer to the next, the arena
holds one sample per thread rather than N, and threads take whole samples (no join per
layer). It pays when most of the work is in layers with many output positions per
sample (convolutions); a network whose work is in batch-row GEMMs (an MLP) reuses each
weight over the N rows of a whole-batch GEMM, so it stays whole.

Sample-by-sample is only chosen when it is the same computation: the batch-1 and the
batch-N graphs have the same nodes, every activation of the batch-N graph is N batch-1
activations laid end to end (leading dim scaled by N, the others equal), and no node
works along the leading axis (a Concat or Flatten at axis 0, a layout conversion moving
it, any op outside PER_SAMPLE_OPS) — such a graph keeps the whole-batch program.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeq.engine.ir import Graph, Node

# ops that compute each leading-axis slice from the same slice of their inputs, given the
# shape check below; others (and these with an axis attribute of 0) keep the batch whole
PER_SAMPLE_OPS = frozenset({
    "Conv", "ConvRequant", "Gemm", "GemmRequant", "MatMul", "MatMulRequant", "RequantShift",
    "HarmonisedAdd", "MaxPool", "GlobalMaxPool", "AveragePool", "GlobalAveragePool", "Relu",
    "Clip", "Sigmoid", "Add", "Sub", "Mul", "Concat", "LayoutConvert", "Flatten", "Reshape",
    "Identity", "QLinearRequant", "QuantizeLinear", "DequantizeLinear", "RequantDiv", "Quant",
    "IntQuant", "BipolarQuant", "Trunc", "Cast",
})
# per-sample work with fewer output positions than this per sample is a batch-row GEMM
MIN_POSITIONS = 16
MIN_SHARE = 0.5  # of all multiply-adds in layers with MIN_POSITIONS positions or more


@dataclass(frozen=True)
class SampleLoop:
    """A batch of ``samples`` run one sample at a time on ``contexts`` arenas (one per
    thread); ``batch_graph`` is the batch-N graph (its I/O shapes, its layer names)."""

    samples: int
    contexts: int
    batch_graph: Graph


def sample_loop(one: Graph, batch_graph: Graph, batch: int, threads: int) -> SampleLoop | None:
    """The sample loop for ``batch_graph`` (prepared at ``batch``) given ``one`` (the same
    graph prepared at batch 1), or None when the batch must run whole."""
    if batch < 2 or not separable(one, batch_graph, batch) or not conv_heavy(one):
        return None
    return SampleLoop(batch, max(1, min(threads, batch)), batch_graph)


def separable(one: Graph, many: Graph, batch: int) -> bool:
    """Whether ``many`` (prepared at ``batch``) is ``batch`` copies of ``one`` laid end to end."""
    if [(n.name, n.op) for n in one.nodes] != [(n.name, n.op) for n in many.nodes]:
        return False
    if list(one.inputs) != list(many.inputs) or list(one.outputs) != list(many.outputs):
        return False
    for name, v in many.values.items():
        if v.is_const:
            continue
        w = one.values.get(name)
        if w is None or v.shape is None or w.shape is None or not _scaled(w.shape, v.shape, batch):
            return False
    return all(_per_sample(many, node) for node in many.nodes)


def _scaled(one: tuple, many: tuple, batch: int) -> bool:
    return (len(one) == len(many) >= 1 and many[0] == batch * one[0]
            and tuple(many[1:]) == tuple(one[1:]))


def _per_sample(graph: Graph, node: Node) -> bool:
    if node.op not in PER_SAMPLE_OPS:
        return False
    if node.op == "LayoutConvert":
        perm = node.attrs.get("perm")
        return perm is not None and int(perm[0]) == 0
    if "axis" in node.attrs and node.inputs:
        shape = graph.values[node.inputs[0]].shape
        rank = len(shape) if shape is not None else 0
        axis = int(node.attrs["axis"])
        # Flatten's axis is where the 2-D split falls: 0 puts the batch in the columns
        return rank > 0 and axis % rank != 0
    return True


def conv_heavy(one: Graph) -> bool:
    """At least MIN_SHARE of the multiply-adds are in layers with MIN_POSITIONS output
    positions or more per sample (``one``: the batch-1 graph)."""
    from edgeq.engine.analysis import macs_of

    total = many = 0
    for node in one.nodes:
        macs = macs_of(one, node)
        if not macs:
            continue
        total += macs
        if _positions(one, node) >= MIN_POSITIONS:
            many += macs
    return total > 0 and many >= MIN_SHARE * total


def _positions(one: Graph, node: Node) -> int:
    """Output positions per sample: the spatial size of a convolution, the rows of a GEMM."""
    shape = one.values[node.outputs[0]].shape
    if not shape:
        return 1
    if node.op.startswith("Conv"):
        spatial = shape[1:-1] if node.attrs.get("layout") == "NHWC" else shape[2:]
        return int(np.prod(spatial, dtype=np.int64)) if len(spatial) else 1
    return int(np.prod(shape[:-1], dtype=np.int64))
