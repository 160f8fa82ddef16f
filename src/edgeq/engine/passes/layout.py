"""Layout assignment: each 4-D tensor inside the program is stored NCHW or NHWC.

:func:`assign_layouts` gives every node a layout -- the one its kernel reads and writes
-- from ``wanted`` (node name -> ``"NCHW"``/``"NHWC"``); a node absent from ``wanted``
is NCHW, except the layout-agnostic ops of :data:`FOLLOW_OPS`, which take their first
4-D input's layout (so an elementwise op between two NHWC convolutions costs no
conversion). Graph inputs and outputs stay as in the ONNX file (NCHW).

In the rewritten graph:

- a value's ``shape`` is its **physical** shape: an NHWC tensor is ``[N, H, W, C]``
  (per-channel ``quant.axis`` moves from 1 to 3 with it);
- a node computing in NHWC carries the attribute ``layout="NHWC"``; its constant inputs
  (weights, per-channel mul/add) keep their ONNX (NCHW) meaning;
- where a producer and a consumer disagree, an explicit ``LayoutConvert(x)`` node
  (domain ``edgeq``, attribute ``perm``: ``y = transpose(x, perm)``) is inserted, once
  per value and target layout.

The reference backend runs both: ``LayoutConvert`` is a transpose, and an NHWC node is
run by :func:`run_nhwc` as its NCHW kernel between transposes -- so a graph after this
pass stays differential-testable against the graph before it, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from edgeq.engine.ir import EDGEQ_DOMAIN, Graph, Node, QuantInfo, Value
from edgeq.errors import ConfigError

NCHW, NHWC = "NCHW", "NHWC"
LAYOUTS = (NCHW, NHWC)
LAYOUT_ATTR = "layout"
CONVERT_OP = "LayoutConvert"
TO_NHWC = (0, 2, 3, 1)  # transpose(nchw, TO_NHWC) is the NHWC tensor
TO_NCHW = (0, 3, 1, 2)
PERM_TO = {NHWC: TO_NHWC, NCHW: TO_NCHW}
# ops whose result does not depend on the layout, given all their 4-D inputs share one
FOLLOW_OPS = frozenset({"Relu", "Clip", "HarmonisedAdd", "RequantShift", "QLinearRequant"})


def assign_layouts(graph: Graph, wanted: Mapping[str, str]) -> tuple[Graph, int]:
    """A copy of ``graph`` with layouts assigned; returns it and the number of
    LayoutConvert nodes inserted. Raises ConfigError for an unknown node name or layout."""
    _check_wanted(graph, wanted)
    g = graph.copy()
    state = _State(g)
    for node in g.nodes:
        lay = _node_layout(g, node, wanted, state.layout)
        for i, name in enumerate(node.inputs):
            if _is_act4(g, name) and state.layout.get(name, NCHW) != lay:
                node.inputs[i] = state.convert(name, lay)
        if lay == NHWC:
            node.attrs[LAYOUT_ATTR] = NHWC
        state.nodes.append(node)
        for j, name in enumerate(node.outputs):
            if _is_act4(g, name):
                state.define(node, j, lay)
    g.nodes = state.nodes
    return g, state.inserted


def layout_of(node: Node) -> str:
    """The layout a node of an assigned graph computes in."""
    return node.attrs.get(LAYOUT_ATTR, NCHW)


def logical_shape(graph: Graph, node: Node, name: str) -> tuple:
    """The NCHW-order shape of value ``name`` as node ``node`` sees it."""
    shape = tuple(graph.values[name].shape)
    if layout_of(node) == NHWC and _is_act4(graph, name):
        return tuple(shape[p] for p in TO_NCHW)
    return shape


def run_nhwc(graph: Graph, node: Node, args: list, call: Callable) -> tuple:
    """Run an NHWC node with its NCHW kernel: ``call(args, attrs)`` sees NCHW arrays and
    the attributes without ``layout``; its 4-D outputs come back NHWC."""
    ins = [np.transpose(a, TO_NCHW) if a is not None and _is_act4(graph, n) else a
           for n, a in zip(node.inputs, args, strict=False)]
    attrs = {k: v for k, v in node.attrs.items() if k != LAYOUT_ATTR}
    outs = call(ins, attrs)
    return tuple(np.ascontiguousarray(np.transpose(o, TO_NHWC)) if _is_act4(graph, n) else o
                 for n, o in zip(node.outputs, outs, strict=False))


def layout_convert(x, *, perm):
    """Reference kernel of LayoutConvert: ``transpose(x, perm)`` (exact, any dtype)."""
    perm = tuple(int(p) for p in perm)
    if sorted(perm) != list(range(np.ndim(x))):
        raise ValueError(f"LayoutConvert: perm {perm} is not a permutation of rank {np.ndim(x)}")
    return np.ascontiguousarray(np.transpose(x, perm))


def keeps_byte_order(shape, perm) -> bool:
    """True when ``transpose(x, perm)`` lists x's elements in the same order (the
    non-unit dims keep their order: e.g. NCHW -> NHWC when C == 1), so it is a view."""
    moved = [p for p in perm if not (isinstance(shape[p], int) and shape[p] == 1)]
    return moved == sorted(moved)


# -- the C backend's preference ------------------------------------------------------------
def c_layout(node: Node, graph: Graph | None = None) -> str:
    """NHWC for a convolution or MaxPool the C backend has an NHWC kernel for (8-bit
    path: depthwise or group-1 convolutions; with ``graph``, also checks the integer
    dtypes and the range proof), else NCHW."""
    if node.op not in ("Conv", "ConvRequant", "MaxPool"):
        return NCHW
    if graph is None:
        return NHWC
    from edgeq.engine.backends.c.generator import nhwc_conv_ok
    from edgeq.engine.backends.c.nhwc import maxpool_ok

    return NHWC if nhwc_conv_ok(graph, node) or maxpool_ok(graph, node) else NCHW


def c_wanted(graph: Graph) -> dict[str, str]:
    """The C backend's ``wanted`` map for :func:`assign_layouts`."""
    return {n.name: NHWC for n in graph.nodes if c_layout(n, graph) == NHWC}


def assign_c_layouts(graph: Graph) -> Graph:
    """The C backend's layout pass (after the range proof, whose bounds it reads)."""
    return assign_layouts(graph, c_wanted(graph))[0]


# -- internals ------------------------------------------------------------------------------
def _check_wanted(graph: Graph, wanted: Mapping[str, str]) -> None:
    names = {n.name for n in graph.nodes}
    for name, lay in wanted.items():
        if name not in names:
            raise ConfigError(f"layout: no node named '{name}' in graph '{graph.name}'")
        if lay not in LAYOUTS:
            raise ConfigError(f"layout: node '{name}': layout {lay!r} is not NCHW or NHWC")


def _is_act4(graph: Graph, name: str) -> bool:
    if not name:
        return False
    v = graph.values.get(name)
    return v is not None and not v.is_const and v.shape is not None and len(v.shape) == 4


def _node_layout(graph: Graph, node: Node, wanted: Mapping[str, str], layouts: dict) -> str:
    if node.op == CONVERT_OP:
        return NCHW  # an existing conversion: its input is taken as it is
    acts = [n for n in node.inputs if _is_act4(graph, n)]
    if not acts and not any(_is_act4(graph, n) for n in node.outputs):
        return NCHW  # no 4-D tensor: nothing to lay out
    if node.name in wanted:
        return wanted[node.name]
    if node.op in FOLLOW_OPS and acts:
        return layouts.get(acts[0], NCHW)
    return NCHW


def _permuted(v: Value, name: str, perm: tuple) -> Value:
    shape = tuple(v.shape[p] for p in perm)
    q = v.quant
    if q is not None and q.axis is not None and isinstance(q.eps, tuple):
        q = QuantInfo(q.range, q.eps, perm.index(q.axis % 4), q.codebook)
    return Value(name, shape, v.dtype, q, None)


class _State:
    """The rewrite in progress: node list, each 4-D value's layout, conversions made."""

    def __init__(self, graph: Graph) -> None:
        self.g = graph
        self.nodes: list[Node] = []
        self.layout: dict[str, str] = {n: NCHW for n in graph.inputs}
        self.converted: dict[tuple[str, str], str] = {}
        self.inserted = 0

    def convert(self, name: str, lay: str) -> str:
        """The name of ``name`` in layout ``lay``, adding a LayoutConvert the first time."""
        key = (name, lay)
        if key not in self.converted:
            new = self.g.fresh_name(f"{name}_{lay.lower()}")
            self.g.values[new] = _permuted(self.g.values[name], new, PERM_TO[lay])
            self._add_convert(name, new, lay)
            self.converted[key] = new
        return self.converted[key]

    def _add_convert(self, src: str, dst: str, lay: str) -> None:
        self.nodes.append(Node(CONVERT_OP, self.g.fresh_name(f"{dst}_convert"), [src], [dst],
                               {"perm": list(PERM_TO[lay])}, EDGEQ_DOMAIN))
        self.layout[dst] = lay
        self.inserted += 1

    def define(self, node: Node, j: int, lay: str) -> None:
        """Output ``j`` of ``node`` is written in ``lay``; a graph output goes back to NCHW."""
        name = node.outputs[j]
        if lay == NCHW:
            self.layout[name] = NCHW
            return
        v = self.g.values[name]
        if name not in self.g.outputs:
            self.g.values[name] = _permuted(v, name, TO_NHWC)
            self.layout[name] = NHWC
            return
        inner = self.g.fresh_name(f"{name}_nhwc")
        self.g.values[inner] = _permuted(v, inner, TO_NHWC)
        node.outputs[j] = inner
        self.layout[inner] = NHWC
        self._add_convert(inner, name, NCHW)
        self.converted[(name, NHWC)] = inner
