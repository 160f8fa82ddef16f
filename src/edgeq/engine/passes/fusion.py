"""Fusion passes: a linear op with its requantisation, a requantisation with its clip.

- :func:`fuse_requant`: an integer ``Conv``/``Gemm``/``MatMul`` whose output only a
  ``RequantShift`` reads becomes one ``ConvRequant``/``GemmRequant``/``MatMulRequant``
  node (domain ``edgeq``, kernels in ``backends/reference/fused.py``), so the C kernel
  requantises in its output loop and the wide accumulator tensor never exists.
- :func:`fuse_clip`: an integer ``Relu``/``Clip`` that is the sole reader of a
  ``RequantShift``/``HarmonisedAdd``/``*Requant`` output folds into that node's
  ``lo``/``hi`` (both clip the same integers, so the composition is one clip).

Both return a new graph (the input is not modified) that computes the same integers.
"""

from __future__ import annotations

import math

import numpy as np

from edgeq.engine.backends.reference.fused import FUSED_OPS
from edgeq.engine.ir import EDGEQ_DOMAIN, Graph, Node, QuantInfo
from edgeq.numerics import IntRange

LINEAR_TO_FUSED = {linear: fused for fused, linear in FUSED_OPS.items()}
CLIPPABLE_OPS = frozenset({"RequantShift", "HarmonisedAdd", *FUSED_OPS})
# number of inputs of the linear op, the optional last one padded with "" when omitted
_LINEAR_ARITY = {"Conv": 3, "Gemm": 3, "MatMul": 2}


def _only_reader(graph: Graph, value: str) -> Node | None:
    """The single node reading ``value`` (None if several, none, or a graph output)."""
    if value in graph.outputs:
        return None
    readers = graph.consumers(value)
    return readers[0] if len(readers) == 1 else None


def _integer_node(graph: Graph, node: Node) -> bool:
    names = [n for n in node.inputs if n] + [n for n in node.outputs if n]
    return all(graph.values[n].is_integer for n in names)


def fuse_requant(graph: Graph) -> Graph:
    """Merge each integer Conv/Gemm/MatMul into the RequantShift that alone reads it."""
    g = graph.copy()
    dropped: set[str] = set()
    replace: dict[str, Node] = {}  # RequantShift name -> fused node
    for node in g.nodes:
        if node.op not in LINEAR_TO_FUSED or not _integer_node(g, node):
            continue
        rq = _only_reader(g, node.outputs[0])
        if rq is None or rq.op != "RequantShift" or rq.inputs[0] != node.outputs[0]:
            continue
        if node.outputs[0] in rq.inputs[1:]:
            continue  # the accumulator is also the multiplier: not the pattern
        replace[rq.name] = _fused(node, rq)
        dropped.add(node.name)
    g.nodes = [replace.get(n.name, n) for n in g.nodes if n.name not in dropped]
    g.remove_unused()
    return g


def _fused(linear: Node, rq: Node) -> Node:
    ins = list(linear.inputs) + [""] * (_LINEAR_ARITY[linear.op] - len(linear.inputs))
    attrs = dict(linear.attrs)
    for key in ("shift", "lo", "hi"):
        if key in rq.attrs:
            attrs[key] = rq.attrs[key]
    return Node(
        op=LINEAR_TO_FUSED[linear.op],
        name=rq.name,
        inputs=ins + list(rq.inputs[1:3]),
        outputs=list(rq.outputs),
        attrs=attrs,
        domain=EDGEQ_DOMAIN,
    )


def fuse_clip(graph: Graph) -> Graph:
    """Fold an integer Relu/Clip into the requantising node that alone feeds it."""
    g = graph.copy()
    dropped: set[str] = set()
    for node in g.nodes:
        if node.op not in CLIPPABLE_OPS or node.name in dropped:
            continue
        out = node.outputs[0]
        clip = _only_reader(g, out)
        if clip is None or clip.op not in ("Relu", "Clip") or clip.inputs[0] != out:
            continue
        if not _integer_node(g, clip):
            continue
        bounds = _clip_bounds(g, clip)
        if bounds is None:
            continue
        lo = max(int(node.attrs["lo"]), bounds[0])
        hi = min(int(node.attrs["hi"]), bounds[1])
        if lo >= hi:
            continue  # a constant output: leave such a degenerate clip alone
        _retarget(g, node, clip, lo, hi)
        dropped.add(clip.name)
    g.nodes = [n for n in g.nodes if n.name not in dropped]
    g.remove_unused()
    return g


def _clip_bounds(graph: Graph, clip: Node) -> tuple[float, float] | None:
    """(lo, hi) of an integer Relu/Clip as integers (None: a bound is not a constant)."""
    if clip.op == "Relu":
        return 0, math.inf
    lo, hi = clip.attrs.get("min"), clip.attrs.get("max")
    for i, name in ((1, "lo"), (2, "hi")):
        if len(clip.inputs) > i and clip.inputs[i]:
            data = graph.const(clip.inputs[i])
            if data is None:
                return None
            if name == "lo":
                lo = data.item()
            else:
                hi = data.item()
    # a float bound on integers rounds inward, as the reference Clip kernel does
    lo = -math.inf if lo is None or not np.isfinite(lo) else math.ceil(lo)
    hi = math.inf if hi is None or not np.isfinite(hi) else math.floor(hi)
    return lo, hi


def _retarget(graph: Graph, node: Node, clip: Node, lo: int, hi: int) -> None:
    """``node`` now writes the clip's output value, clipped to ``[lo, hi]``."""
    node.attrs["lo"], node.attrs["hi"] = lo, hi
    source = graph.values[node.outputs[0]].quant
    target = graph.values[clip.outputs[0]]
    # the annotation keeps the clip output's dtype (the executor stores into it) and says
    # which integers it now holds; ε is the producer's (a clip does not rescale)
    eps, axis = (source.eps, source.axis) if source is not None else (None, None)
    target.quant = QuantInfo(IntRange.from_bounds(lo, hi), eps, axis)
    node.outputs = [clip.outputs[0]] + list(node.outputs[1:])
