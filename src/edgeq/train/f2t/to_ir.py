"""TQ network -> :class:`edgeq.engine.ir.Graph`, one IR node per TQ op.

=================  ==================================================================
TQ op              IR node
=================  ==================================================================
IntConv2d          ``Conv(x, W, B)``; W integer, annotated QuantInfo(weight range, ε_w)
IntLinear          ``Gemm(x, W, B)`` with ``transB=1``
RequantShift       ``RequantShift(x, mul, add)[shift, lo, hi]`` (domain edgeq)
IntHarmonisedAdd   ``HarmonisedAdd(x1..xn)`` with every ``in_rq = 0`` (inputs were
                   requantised by their own RequantShift nodes, which also clip them,
                   as the FQ input quantisers do), ``out_rq = 0``, ``lo``, ``hi``
IntConcat          ``Concat[axis]`` (inputs share ε and range: no clip needed)
IntSumPool         depthwise ``Conv`` with all-ones integer weights (exact window sum)
IntMaxPool         ``MaxPool``
Flatten / Reshape  ``Flatten[axis=1]`` / ``Reshape(x, [0, ...])``
=================  ==================================================================

Annotations: quantiser outputs (and the graph input, with the input rule) carry
``QuantInfo(range, ε)`` and the narrowest dtype of their range. Accumulators (conv,
linear and sum-pool outputs) have no IntRange: their ``quant`` is None, their dtype int64,
and their ε is in ``graph.meta["eps"][name]`` — a float, or a list (one per channel along
axis 1, ``graph.meta["eps_axis"][name] = 1``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgeq.engine.ir import EDGEQ_DOMAIN, Graph, Node, QuantInfo, Value
from edgeq.numerics import IntRange
from edgeq.train.f2t.tq import (
    Flatten,
    IntConcat,
    IntConv2d,
    IntHarmonisedAdd,
    IntLinear,
    IntMaxPool,
    IntOp,
    IntSumPool,
    RequantShift,
    Reshape,
    TQNetwork,
    ValueInfo,
)

BATCH = "N"  # symbolic batch dimension of every value


class _Builder:
    """Accumulates IR values, nodes and ε metadata."""

    def __init__(self, tq: TQNetwork) -> None:
        self.tq = tq
        self.values: dict[str, Value] = {}
        self.nodes: list[Node] = []
        self.eps: dict[str, float | list[float]] = {}
        self.eps_axis: dict[str, int] = {}

    def activation(self, name: str) -> None:
        """Declare a TQ value with its annotation (see the module docstring)."""
        info: ValueInfo = self.tq.values[name]
        shape = (BATCH, *info.shape[1:])
        if info.range is not None:
            quant = QuantInfo(info.range, float(info.eps))
            self.values[name] = Value(name, shape, info.range.dtype, quant)
            return
        self.values[name] = Value(name, shape, np.dtype(np.int64))
        if info.eps.dim() == 0:
            self.eps[name] = float(info.eps)
        else:
            self.eps[name] = [float(e) for e in info.eps.tolist()]
            self.eps_axis[name] = 1

    def const(self, name: str, data: np.ndarray, quant: QuantInfo | None = None) -> str:
        data = np.ascontiguousarray(data)
        self.values[name] = Value(name, tuple(data.shape), data.dtype, quant, data)
        return name

    def node(self, op: IntOp, op_type: str, inputs: list[str], domain: str = "", **attrs):
        self.nodes.append(Node(op_type, op.op_name, inputs, [op.output], attrs, domain))
        self.activation(op.output)


def _int_dtype(a: np.ndarray) -> np.dtype:
    """int32 where it holds every value (what DORY expects of biases), else int64."""
    info = np.iinfo(np.int32)
    return np.dtype(np.int32) if a.size == 0 or (
        a.min() >= info.min and a.max() <= info.max) else np.dtype(np.int64)


def _int_const(b: _Builder, name: str, t) -> str:
    a = np.asarray(t.numpy() if hasattr(t, "numpy") else t, dtype=np.int64)
    return b.const(name, a.astype(_int_dtype(a)))


def _weight(b: _Builder, op, name: str) -> list[str]:
    """W (annotated with its range and ε_w) and, if any, B."""
    eps = op.weight_eps
    eps = float(eps) if eps.dim() == 0 else tuple(float(e) for e in eps.tolist())
    quant = QuantInfo(op.weight_range, eps, None if isinstance(eps, float) else 0)
    w = op.weight.numpy().astype(op.weight_range.dtype)
    names = [b.const(f"{name}.W", w, quant)]
    if op.bias is not None:
        names.append(_int_const(b, f"{name}.B", op.bias))
    return names


def _conv(b: _Builder, op: IntConv2d) -> None:
    ins = [op.inputs[0], *_weight(b, op, op.op_name)]
    ph, pw = op.padding
    b.node(op, "Conv", ins, kernel_shape=list(op.weight.shape[2:]), strides=list(op.stride),
           pads=[ph, pw, ph, pw], dilations=list(op.dilation), group=op.groups)


def _linear(b: _Builder, op: IntLinear) -> None:
    b.node(op, "Gemm", [op.inputs[0], *_weight(b, op, op.op_name)], transB=1)


def _requant(b: _Builder, op: RequantShift) -> None:
    mul = _int_const(b, f"{op.op_name}.mul", op.mul)
    add = _int_const(b, f"{op.op_name}.add", op.add)
    b.node(op, "RequantShift", [op.inputs[0], mul, add], EDGEQ_DOMAIN, shift=op.shift,
           lo=op.lo, hi=op.hi)


def _add(b: _Builder, op: IntHarmonisedAdd) -> None:
    n = len(op.inputs)
    b.node(op, "HarmonisedAdd", list(op.inputs), EDGEQ_DOMAIN, in_mul=[1] * n, in_add=[0] * n,
           in_shift=[0] * n, in_rq=[0] * n, out_mul=1, out_add=0, out_shift=0, out_rq=0,
           lo=op.lo, hi=op.hi)


def _concat(b: _Builder, op: IntConcat) -> None:
    b.node(op, "Concat", list(op.inputs), axis=op.dim)


def _sum_pool(b: _Builder, op: IntSumPool) -> None:
    channels = b.tq.values[op.inputs[0]].shape[1]
    ones = np.ones((channels, 1, *op.kernel), dtype=np.uint8)
    w = b.const(f"{op.op_name}.ones", ones, QuantInfo(IntRange.unsigned(2), 1.0))
    ph, pw = op.padding
    b.node(op, "Conv", [op.inputs[0], w], kernel_shape=list(op.kernel),
           strides=list(op.stride), pads=[ph, pw, ph, pw], dilations=[1, 1], group=channels)


def _max_pool(b: _Builder, op: IntMaxPool) -> None:
    ph, pw = op.padding
    b.node(op, "MaxPool", [op.inputs[0]], kernel_shape=list(op.kernel), strides=list(op.stride),
           pads=[ph, pw, ph, pw], dilations=list(op.dilation), ceil_mode=int(op.ceil_mode))


def _flatten(b: _Builder, op: Flatten) -> None:
    ndim = len(b.tq.values[op.inputs[0]].shape)
    if (op.start_dim % ndim, op.end_dim % ndim) == (1, ndim - 1):
        b.node(op, "Flatten", [op.inputs[0]], axis=1)
    else:
        _reshape_to(b, op, b.tq.values[op.output].shape[1:])


def _reshape(b: _Builder, op: Reshape) -> None:
    _reshape_to(b, op, op.shape)


def _reshape_to(b: _Builder, op: IntOp, tail) -> None:
    shape = b.const(f"{op.op_name}.shape", np.array([0, *tail], dtype=np.int64))
    b.node(op, "Reshape", [op.inputs[0], shape])


_EMITTERS: dict[type, Callable] = {
    IntConv2d: _conv, IntLinear: _linear, RequantShift: _requant, IntHarmonisedAdd: _add,
    IntConcat: _concat, IntSumPool: _sum_pool, IntMaxPool: _max_pool, Flatten: _flatten,
    Reshape: _reshape,
}


def tq_to_ir(tq: TQNetwork) -> Graph:
    """The IR graph of ``tq`` (validated), runnable by ``edgeq.engine.model.Model``."""
    b = _Builder(tq)
    b.activation(tq.input_name)
    for op in tq.ops:
        _EMITTERS[type(op)](b, op)
    graph = Graph(b.nodes, b.values, [tq.input_name], [tq.output_name], name=tq.name,
                  opset=17, meta={"eps": b.eps, "eps_axis": b.eps_axis})
    graph.validate()
    return graph
