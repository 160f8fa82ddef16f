"""Per-layer model analysis: shapes, precision, memory and MACs of every node.

:func:`layer_table` turns a :class:`~edgeq.engine.ir.Graph` into one :class:`LayerRow`
per node; :func:`format_table` prints the rows with totals.

Memory accounting:

- **parameter bytes** are the node's constant inputs, packed at the quantised bit width
  when the constant has a :class:`~edgeq.engine.ir.QuantInfo` (``ceil(n * bits / 8)``;
  a ternary weight counts 2 bits) and at the dtype size otherwise. A constant read by
  several nodes is counted once, at its first reader, so the total is the model's size.
- **activation bytes** are the node's outputs, counted the same way; ``None`` when a
  shape is not static.
- **MACs** (multiply-accumulates) for Conv, Gemm and MatMul and their fused
  ``*Requant`` forms; ``None`` for other ops.
- **accumulator bounds**, when the graph went through
  :func:`~edgeq.engine.passes.ranges.prove_ranges` (``graph.meta["bounds"]``): the
  proven interval of each integer node's accumulator, its width (int32/int64) and the
  width of its requantisation product.

Activations and MACs are **per sample**: a symbolic leading (batch) dimension counts as 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeq.engine.ir import Dim, Graph, Node, Value
from edgeq.numerics import IntRange

Shape = tuple[Dim, ...] | None


@dataclass(frozen=True)
class LayerRow:
    """One node of the table. Byte and MAC counts are ``None`` where shapes are unknown."""

    name: str
    op: str
    input_shapes: tuple[Shape, ...]  # non-constant inputs, in node order
    output_shapes: tuple[Shape, ...]
    precision: str  # of the outputs
    param_precision: str  # of the constant inputs ("" if none)
    param_bytes: int
    act_bytes: int | None
    macs: int | None
    acc_bound: tuple[int, int] | None = None  # proven accumulator interval (prove_ranges)
    acc_bits: int | None = None
    rq_bits: int | None = None


# -- per-value descriptions --------------------------------------------------------------


def precision_of(v: Value) -> str:
    """``u8``, ``s8 ε=0.0312``, ``s2 [-1,1]`` (ternary), ``s1`` (binary), or the dtype."""
    if v.quant is None:
        return "?" if v.dtype is None else np.dtype(v.dtype).name
    r = v.quant.range
    text = f"{'s' if r.is_signed else 'u'}{r.bits}"
    if r.n_levels > 2**32 or r != IntRange.from_bits(r.bits, r.is_signed):
        text += f" {r}"  # not the full B-bit range: show the levels
    eps = v.quant.eps
    if isinstance(eps, tuple):
        text += f" ε[{len(eps)}]"
    elif eps is not None:
        text += f" ε={eps:.4g}"
    return text


def const_bytes(v: Value) -> int:
    """Storage of a constant: packed at its quantised bit width, else its dtype size."""
    return v.bytes_for(int(v.data.size))


def shape_str(shape: Shape) -> str:
    if shape is None:
        return "?"
    return "[" + ",".join(str(d) if isinstance(d, int) else "?" for d in shape) + "]"


def _static_numel(shape: Shape) -> int | None:
    """Elements per sample: a symbolic batch dimension (dim 0) counts as 1."""
    if shape is not None and shape and not isinstance(shape[0], int):
        shape = (1, *shape[1:])
    if shape is None or not all(isinstance(d, int) for d in shape):
        return None
    return int(np.prod(shape, dtype=np.int64))


def _act_bytes(v: Value) -> int | None:
    return v.bytes_for(_static_numel(v.shape))


# -- MACs -----------------------------------------------------------------------------------


def _shape(graph: Graph, name: str) -> Shape:
    v = graph.values.get(name)
    if v is None:
        return None
    return v.shape if v.shape is not None or v.data is None else tuple(v.data.shape)


# fused linear + requantisation ops (passes/fusion.py) count as their linear part
FUSED_LINEAR = {"ConvRequant": "Conv", "GemmRequant": "Gemm", "MatMulRequant": "MatMul"}


def macs_of(graph: Graph, node: Node) -> int | None:
    """Multiply-accumulates of a Conv/Gemm/MatMul node (``None`` if unknown or other op)."""
    if node.op in FUSED_LINEAR:
        node = Node(FUSED_LINEAR[node.op], node.name, node.inputs, node.outputs, node.attrs)
    if node.op not in ("Conv", "Gemm", "MatMul") or len(node.inputs) < 2:
        return None
    out = _static_numel(_shape(graph, node.outputs[0]))
    if out is None:
        return None
    if node.op == "Conv":
        # each output element reads C_in/group * kH * kW weights: W is [M, C/g, kH, kW]
        per_output = _static_numel(_tail(_shape(graph, node.inputs[1])))
    else:
        per_output = _reduction_size(node, _shape(graph, node.inputs[0]))
    return None if per_output is None else out * per_output


def _tail(shape: Shape) -> Shape:
    return None if shape is None or len(shape) < 1 else tuple(shape[1:])


def _reduction_size(node: Node, a: Shape) -> int | None:
    """K of A[M, K] @ B[K, N] (Gemm honours transA)."""
    if a is None or len(a) == 0:
        return None
    k = a[0] if node.op == "Gemm" and node.attrs.get("transA", 0) else a[-1]
    return k if isinstance(k, int) else None


# -- the table ------------------------------------------------------------------------------


def layer_table(graph: Graph) -> list[LayerRow]:
    """One row per node in graph order (module docstring for how bytes are counted)."""
    counted: set[str] = set()
    rows = []
    for node in graph.nodes:
        rows.append(_row(graph, node, counted))
    return rows


def _row(graph: Graph, node: Node, counted: set[str]) -> LayerRow:
    ins = [graph.values[i] for i in node.inputs if i and i in graph.values]
    outs = [graph.values[o] for o in node.outputs if o and o in graph.values]
    consts = [v for v in ins if v.is_const]
    fresh = [v for v in consts if v.name not in counted]
    counted.update(v.name for v in fresh)
    act = [_act_bytes(v) for v in outs]
    bound = graph.meta.get("bounds", {}).get(node.name)
    return LayerRow(
        name=node.name,
        op=node.op,
        input_shapes=tuple(v.shape for v in ins if not v.is_const),
        output_shapes=tuple(v.shape for v in outs),
        precision=",".join(precision_of(v) for v in outs),
        param_precision="/".join(dict.fromkeys(precision_of(v) for v in consts)),
        param_bytes=sum(const_bytes(v) for v in fresh),
        act_bytes=None if any(b is None for b in act) else sum(act),
        macs=macs_of(graph, node),
        acc_bound=None if bound is None else (bound.acc_lo, bound.acc_hi),
        acc_bits=None if bound is None else bound.acc_bits,
        rq_bits=None if bound is None else bound.rq_bits,
    )


@dataclass(frozen=True)
class Totals:
    param_bytes: int
    act_bytes: int
    macs: int
    unknown_act: bool  # some activation sizes were not static


def totals(rows: list[LayerRow]) -> Totals:
    return Totals(
        param_bytes=sum(r.param_bytes for r in rows),
        act_bytes=sum(r.act_bytes or 0 for r in rows),
        macs=sum(r.macs or 0 for r in rows),
        unknown_act=any(r.act_bytes is None for r in rows),
    )


HEADER = ("#", "node", "op", "inputs", "outputs", "precision", "params", "param B", "act B", "MACs")
BOUND_HEADER = ("acc bound", "acc", "rq")  # shown before MACs when bounds were proven
RIGHT = {"#", "param B", "act B", "MACs", "acc bound"}


def _num(n: int | None) -> str:
    return "?" if n is None else f"{n:,}"


def _bound_cells(r: LayerRow) -> tuple[str, ...]:
    if r.acc_bound is None:
        return ("", "", "")
    rq = "" if r.rq_bits is None else f"int{r.rq_bits}"
    return (f"[{r.acc_bound[0]},{r.acc_bound[1]}]", f"int{r.acc_bits}", rq)


def _cells(i: int, r: LayerRow) -> tuple[str, ...]:
    return (
        str(i),
        r.name,
        r.op,
        " ".join(shape_str(s) for s in r.input_shapes),
        " ".join(shape_str(s) for s in r.output_shapes),
        r.precision,
        r.param_precision,
        _num(r.param_bytes),
        _num(r.act_bytes),
        "" if r.macs is None else _num(r.macs),
    )


def format_table(rows: list[LayerRow]) -> str:
    """A fixed-width text table, one line per node, then a totals line.

    With proven bounds (any row has one), three columns come before MACs: the
    accumulator interval, its width and the requantisation product's width.
    """
    t = totals(rows)
    body = [_cells(i, r) for i, r in enumerate(rows)]
    act_total = _num(t.act_bytes) + ("+?" if t.unknown_act else "")
    total = ("", "total", "", "", "", "", "", _num(t.param_bytes), act_total, _num(t.macs))
    header = HEADER
    if any(r.acc_bound is not None for r in rows):
        header = HEADER[:-1] + BOUND_HEADER + HEADER[-1:]
        body = [c[:-1] + _bound_cells(r) + c[-1:] for c, r in zip(body, rows, strict=True)]
        total = total[:-1] + ("", "", "") + total[-1:]
    widths = [max(len(c[k]) for c in [header, *body, total]) for k in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        parts = [
            c.rjust(w) if h in RIGHT else c.ljust(w)
            for c, w, h in zip(cells, widths, header, strict=True)
        ]
        return "  ".join(parts).rstrip()

    rule = "-" * len(line(tuple("-" * w for w in widths)))
    return "\n".join([line(header), rule, *(line(c) for c in body), rule, line(total)])
