"""The static range proof (DESIGN §3.7): every integer accumulator's bound, by intervals.

:func:`prove_ranges` walks the graph in order and propagates an interval ``[lo, hi]``
for every integer value -- per channel (axis 1) where the channel structure survives,
else one interval per tensor. It starts from the graph inputs' ``QuantInfo`` ranges and
the exact data of constants, and goes through shape no-ops, Max pooling, Concat, the
linear ops (per output channel from the actual weights: ``Σ max(w·lo, w·hi) + b``),
RequantShift (``acc·mul + add`` then the floor shift and the clip), HarmonisedAdd and
integer Add/Sub/Mul/Relu/Clip/ReduceSum.

It records ``graph.meta["bounds"][node] = NodeBounds(acc_lo, acc_hi, rq_lo, rq_hi)``
for every integer node:

- ``acc``: every partial sum of the node's accumulation, in any summation order (the
  sum of the negative parts of the terms up to the sum of the positive parts, bias
  included), so an accumulator of ``acc_bits`` never overflows mid-sum. For an input
  range containing 0 and a zero bias this is exactly ``Σ min/max(w·lo, w·hi)``. For a
  node without an accumulation (RequantShift, pools, no-ops) it is the input's range
  (RequantShift) or the output's.
- ``rq``: for a requantising node, the hull of ``acc·mul`` and ``acc·mul + add`` (for
  HarmonisedAdd, of every input and output product and of the sum); ``None`` otherwise.

A generated kernel that shifts its activations (e.g. by +128) must re-derive its own
bound; these are the bounds of the reference arithmetic. Float nodes get no entry.
:class:`~edgeq.errors.RangeError` names the node when a bound leaves int64 or cannot be
proven (an integer input without a declared range, an op without a range rule).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgeq.engine.backends.reference.fused import FUSED_OPS
from edgeq.engine.ir import Graph, Node
from edgeq.errors import RangeError

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)


def _bits(lo: int, hi: int) -> int:
    return 32 if INT32[0] <= lo and hi <= INT32[1] else 64


@dataclass(frozen=True)
class NodeBounds:
    """Proven bounds of one node: its accumulator and (if it requantises) its product."""

    acc_lo: int
    acc_hi: int
    rq_lo: int | None = None
    rq_hi: int | None = None

    @property
    def acc_bits(self) -> int:
        return _bits(self.acc_lo, self.acc_hi)

    @property
    def rq_bits(self) -> int | None:
        return None if self.rq_lo is None else _bits(self.rq_lo, self.rq_hi)

    def to_json(self) -> dict:
        return {"acc": [self.acc_lo, self.acc_hi], "rq": None if self.rq_lo is None
                else [self.rq_lo, self.rq_hi]}


@dataclass(frozen=True)
class Interval:
    """``[lo, hi]``: Python ints, or object arrays of shape (C,) (one per channel, axis 1)."""

    lo: object
    hi: object

    @property
    def per_channel(self) -> bool:
        return np.ndim(self.lo) == 1

    def hull(self) -> tuple[int, int]:
        return int(np.min(self.lo)), int(np.max(self.hi))

    def scalar(self) -> Interval:
        return Interval(*self.hull())


def _obj(v) -> np.ndarray:
    """An object array of Python ints (exact, no int64 wrap)."""
    return np.array([int(x) for x in np.ravel(v)], dtype=object).reshape(np.shape(v))


# -- the pass ----------------------------------------------------------------------------


def prove_ranges(graph: Graph) -> Graph:
    """A copy of ``graph`` with ``meta["bounds"]`` (and ``meta["value_ranges"]``) set."""
    g = graph.copy()
    env: dict[str, Interval] = {}
    bounds: dict[str, NodeBounds] = {}
    for node in g.nodes:
        outs = [o for o in node.outputs if o]
        if not outs or not all(g.values[o].is_integer for o in outs):
            continue
        prover = _RULES.get(node.op)
        if prover is None:
            raise RangeError(
                f"node '{node.name}' ({node.op}): no range rule for an integer {node.op}; "
                "cannot prove its accumulator bound")
        out, nb = prover(_Ctx(g, node, env))
        _check_int64(node, nb)
        for o in outs:
            env[o] = out
        bounds[node.name] = nb
    g.meta["bounds"] = bounds
    g.meta["value_ranges"] = {k: env[k].hull() for k in env}
    return g


def _check_int64(node: Node, nb: NodeBounds) -> None:
    for what, lo, hi in (("accumulator", nb.acc_lo, nb.acc_hi), ("product", nb.rq_lo, nb.rq_hi)):
        if lo is not None and (lo < INT64[0] or hi > INT64[1]):
            raise RangeError(
                f"node '{node.name}' ({node.op}): the {what} can reach [{lo}, {hi}], "
                "outside int64")


class _Ctx:
    """What a rule needs: the graph, the node, and intervals of its inputs."""

    def __init__(self, graph: Graph, node: Node, env: dict[str, Interval]) -> None:
        self.graph, self.node, self.env = graph, node, env

    def fail(self, why: str) -> RangeError:
        return RangeError(f"node '{self.node.name}' ({self.node.op}): {why}")

    def const(self, i: int) -> np.ndarray | None:
        ins = self.node.inputs
        return None if i >= len(ins) or not ins[i] else self.graph.const(ins[i])

    def has(self, i: int) -> bool:
        return i < len(self.node.inputs) and bool(self.node.inputs[i])

    def iv(self, i: int) -> Interval:
        """Interval of input ``i``: constant data, a proven value, or a declared input."""
        name = self.node.inputs[i]
        v = self.graph.values[name]
        if v.is_const:
            if not v.is_integer:
                raise self.fail(f"input '{name}' is a float constant in integer arithmetic")
            return Interval(*(int(v.data.min()), int(v.data.max())) if v.data.size else (0, 0))
        if name in self.env:
            return self.env[name]
        if name in self.graph.inputs and v.quant is not None:
            return Interval(v.quant.range.lo, v.quant.range.hi)
        if name in self.graph.inputs:
            raise self.fail(f"graph input '{name}' has no declared integer range; "
                            "cannot prove the bounds it feeds")
        raise self.fail(f"input '{name}' has no proven integer range")

    def shape(self, name: str):
        v = self.graph.values.get(name)
        if v is None:
            return None
        return tuple(v.data.shape) if v.is_const else v.shape


def _passthrough(ctx: _Ctx) -> tuple[Interval, NodeBounds]:
    """Output values are a subset (or a copy) of input 0's: same interval, as one range."""
    iv = ctx.iv(0).scalar()
    return iv, NodeBounds(iv.lo, iv.hi)


def _same_channels(ctx: _Ctx) -> tuple[Interval, NodeBounds]:
    """MaxPool/GlobalMaxPool/Identity: each output channel within its input channel."""
    iv = ctx.iv(0)
    return iv, NodeBounds(*iv.hull())


def _flatten(ctx: _Ctx) -> tuple[Interval, NodeBounds]:
    """Flatten of [N, C, 1, ...] at axis 1 keeps the channels on axis 1."""
    iv, shape = ctx.iv(0), ctx.shape(ctx.node.inputs[0])
    keep = ctx.node.attrs.get("axis", 1) == 1 and shape is not None and all(
        d == 1 for d in shape[2:])
    iv = iv if keep else iv.scalar()
    return iv, NodeBounds(*iv.hull())


def _concat(ctx: _Ctx) -> tuple[Interval, NodeBounds]:
    ivs = [ctx.iv(i) for i in range(len(ctx.node.inputs)) if ctx.has(i)]
    shapes = [ctx.shape(n) for n in ctx.node.inputs if n]
    axis = ctx.node.attrs.get("axis", 1)
    rank = len(shapes[0]) if shapes[0] is not None else None
    channels = [s[1] if s is not None and len(s) > 1 else None for s in shapes]
    if rank and axis % rank == 1 and all(isinstance(c, int) for c in channels):
        lo = np.concatenate([_per(iv.lo, c) for iv, c in zip(ivs, channels, strict=True)])
        hi = np.concatenate([_per(iv.hi, c) for iv, c in zip(ivs, channels, strict=True)])
        out = Interval(lo, hi)
    else:
        hulls = [iv.hull() for iv in ivs]
        out = Interval(min(h[0] for h in hulls), max(h[1] for h in hulls))
    return out, NodeBounds(*out.hull())


def _per(v, c: int) -> np.ndarray:
    """``v`` (a scalar or a (c,) array) as an object array of ``c`` channels."""
    return _obj(np.broadcast_to(np.asarray(v, dtype=object), (c,)))


# -- linear ops ---------------------------------------------------------------------------


def _terms(w: np.ndarray, xlo, xhi):
    """Elementwise ``min/max(w·xlo, w·xhi)`` exactly (int64 when provably safe)."""
    big = max(abs(int(np.min(xlo))), abs(int(np.max(xhi))), 1)
    wmax = int(np.abs(w.astype(np.int64)).max()) if w.size else 0
    if wmax * big * max(w.size, 1) < 2**62:
        w = w.astype(np.int64)
        xlo, xhi = np.asarray(xlo, dtype=np.int64), np.asarray(xhi, dtype=np.int64)
    else:
        w, xlo, xhi = _obj(w), _obj(xlo), _obj(xhi)
    a, b = w * xlo, w * xhi
    return np.minimum(a, b), np.maximum(a, b)


def _accumulate(t_lo, t_hi, axes, bias) -> tuple[Interval, tuple[int, int]]:
    """(final interval per output, hull of all partial sums) of ``Σ terms + bias``."""
    zero = np.zeros((), dtype=t_lo.dtype)
    f_lo = _obj(t_lo.sum(axis=axes)) + bias
    f_hi = _obj(t_hi.sum(axis=axes)) + bias
    p_lo = _obj(np.minimum(t_lo, zero).sum(axis=axes)) + np.minimum(bias, 0)
    p_hi = _obj(np.maximum(t_hi, zero).sum(axis=axes)) + np.maximum(bias, 0)
    return Interval(f_lo, f_hi), (int(np.min(p_lo)), int(np.max(p_hi)))


def _padded(ctx: _Ctx) -> bool:
    pads = ctx.node.attrs.get("pads") or ()
    auto = ctx.node.attrs.get("auto_pad", "NOTSET")
    return any(int(p) for p in pads) or auto not in ("NOTSET", "VALID")


def _conv_acc(ctx: _Ctx) -> tuple[Interval, tuple[int, int]]:
    w = ctx.const(1)
    if w is None:
        raise ctx.fail("the weight is not a constant; cannot bound the accumulator")
    x = ctx.iv(0)
    m, cg = w.shape[:2]
    group = int(ctx.node.attrs.get("group", 1))
    c = cg * group
    if x.per_channel and len(x.lo) == c:
        xlo, xhi = _obj(x.lo), _obj(x.hi)
    else:
        xlo, xhi = _per(x.hull()[0], c), _per(x.hull()[1], c)
    if _padded(ctx):  # a padding tap reads 0
        xlo, xhi = np.minimum(xlo, 0), np.maximum(xhi, 0)
    # input channel of weight [m, c'] is (m // (M/G)) * Cg + c'
    idx = (np.arange(m)[:, None] // (m // group)) * cg + np.arange(cg)[None, :]
    wk = w.reshape(m, cg, -1)
    t_lo, t_hi = _terms(wk, xlo[idx][:, :, None], xhi[idx][:, :, None])
    bias = _obj(ctx.const(2)) if ctx.has(2) else _obj(np.zeros(m, dtype=np.int64))
    if ctx.has(2) and ctx.const(2) is None:
        raise ctx.fail("the bias is not a constant")
    return _accumulate(t_lo, t_hi, (1, 2), bias)


def _gemm_acc(ctx: _Ctx) -> tuple[Interval, tuple[int, int]]:
    attrs = ctx.node.attrs
    trans_a, trans_b = attrs.get("transA", 0), attrs.get("transB", 0)
    b = ctx.const(1)
    a = ctx.iv(0)
    if b is None:
        return _generic_product(ctx, attrs.get("alpha", 1), attrs.get("beta", 1))
    b = b.T if trans_b else b
    k, n = b.shape
    if a.per_channel and not trans_a and len(a.lo) == k:
        xlo, xhi = _obj(a.lo), _obj(a.hi)
    else:
        xlo, xhi = _per(a.hull()[0], k), _per(a.hull()[1], k)
    t_lo, t_hi = _terms(b, xlo[:, None], xhi[:, None])
    alpha, beta = _integral(ctx, attrs.get("alpha", 1.0)), _integral(ctx, attrs.get("beta", 1.0))
    if alpha < 0:
        t_lo, t_hi = t_hi * alpha, t_lo * alpha
    elif alpha != 1:
        t_lo, t_hi = t_lo * alpha, t_hi * alpha
    bias = _obj(np.zeros(n, dtype=np.int64))
    if ctx.has(2) and beta != 0:
        c = ctx.const(2)
        if c is None:
            raise ctx.fail("C is not a constant")
        c2 = np.atleast_2d(_obj(c) * beta)
        c2 = np.broadcast_to(c2, (c2.shape[0], n))
        if c2.shape[0] != 1:  # per-row values: bound each column by its extremes
            lo_c, hi_c = _obj(c2.min(axis=0)), _obj(c2.max(axis=0))
            f, p = _accumulate(t_lo, t_hi, 0, lo_c)
            f2, p2 = _accumulate(t_lo, t_hi, 0, hi_c)
            return Interval(f.lo, f2.hi), (min(p[0], p2[0]), max(p[1], p2[1]))
        bias = _obj(c2[0])
    return _accumulate(t_lo, t_hi, 0, bias)


def _integral(ctx: _Ctx, v) -> int:
    if float(v) != int(v):
        raise ctx.fail(f"non-integral scale {v} on integers")
    return int(v)


def _matmul_acc(ctx: _Ctx) -> tuple[Interval, tuple[int, int]]:
    b = ctx.const(1)
    a = ctx.iv(0)
    a_shape = ctx.shape(ctx.node.inputs[0])
    if b is None or b.ndim != 2:
        return _generic_product(ctx, 1, 0)
    k = b.shape[0]
    two_d = a_shape is not None and len(a_shape) == 2
    if a.per_channel and two_d and len(a.lo) == k:
        xlo, xhi = _obj(a.lo), _obj(a.hi)
    else:
        xlo, xhi = _per(a.hull()[0], k), _per(a.hull()[1], k)
    t_lo, t_hi = _terms(b, xlo[:, None], xhi[:, None])
    f, p = _accumulate(t_lo, t_hi, 0, _obj(np.zeros(b.shape[1], dtype=np.int64)))
    return (f if two_d else f.scalar()), p


def _generic_product(ctx: _Ctx, alpha, beta) -> tuple[Interval, tuple[int, int]]:
    """Both operands variable: ``K`` products of the two hulls (no per-channel detail)."""
    a, b = ctx.iv(0).hull(), ctx.iv(1).hull()
    shape = ctx.shape(ctx.node.inputs[0])
    trans_a = ctx.node.attrs.get("transA", 0)
    k = None if shape is None else (shape[0] if trans_a and ctx.node.op == "Gemm" else shape[-1])
    if not isinstance(k, int):
        raise ctx.fail("the reduction length is not static")
    prods = [x * y for x in a for y in b]
    lo, hi = k * min(min(prods), 0), k * max(max(prods), 0)
    lo, hi = sorted((lo * _integral(ctx, alpha), hi * _integral(ctx, alpha)))
    if ctx.has(2) and beta:
        c = ctx.iv(2).hull()
        lo, hi = lo + min(c[0] * beta, c[1] * beta, 0), hi + max(c[0] * beta, c[1] * beta, 0)
    return Interval(lo, hi), (lo, hi)


def _linear(acc_fn):
    def rule(ctx: _Ctx) -> tuple[Interval, NodeBounds]:
        final, partial = acc_fn(ctx)
        return final, NodeBounds(*partial)

    return rule


# -- requantisation ----------------------------------------------------------------------


def _channel_vector(data: np.ndarray, rank: int):
    """A constant broadcast against a rank-``rank`` tensor: int, (C,) array, or None."""
    if data.size == 1:
        return int(data.ravel()[0])
    shape = (1,) * (rank - data.ndim) + tuple(data.shape)
    if rank >= 2 and all(d == 1 for i, d in enumerate(shape) if i != 1):
        return _obj(data.reshape(-1))
    return None


def _operand(ctx: _Ctx, i: int, rank: int):
    """(lo, hi) of a requant mul/add: per channel when it is, else its hull."""
    data = ctx.const(i)
    if data is not None:
        vec = _channel_vector(data, rank)
        if vec is not None:
            return vec, vec
    return ctx.iv(i).hull()


def _requantise(x: Interval, mul, add, shift: int, lo: int, hi: int):
    """(output interval, hull of the products) of ``clip(floor((x·mul + add)/2^d))``."""
    xlo, xhi = x.lo, x.hi
    if any(np.ndim(v) == 1 for v in (*mul, *add)) and x.per_channel:
        n = {len(v) for v in (xlo, *mul, *add) if np.ndim(v) == 1}
        if len(n) != 1:
            xlo, xhi = x.hull()
    corners = [np.asarray(xlo, dtype=object) * m for m in mul]
    corners += [np.asarray(xhi, dtype=object) * m for m in mul]
    p_lo = _reduce(np.minimum, corners)
    p_hi = _reduce(np.maximum, corners)
    r_lo, r_hi = p_lo + add[0], p_hi + add[1]
    out_lo = np.clip(_obj(r_lo) >> shift, lo, hi) if np.ndim(r_lo) else min(
        max(int(r_lo) >> shift, lo), hi)
    out_hi = np.clip(_obj(r_hi) >> shift, lo, hi) if np.ndim(r_hi) else min(
        max(int(r_hi) >> shift, lo), hi)
    prods = (min(int(np.min(p_lo)), int(np.min(r_lo))), max(int(np.max(p_hi)), int(np.max(r_hi))))
    return Interval(_tidy(out_lo), _tidy(out_hi)), prods


def _reduce(fn, arrays):
    out = arrays[0]
    for a in arrays[1:]:
        out = fn(out, a)
    return out


def _tidy(v):
    return _obj(v) if np.ndim(v) else int(v)


def _rank(ctx: _Ctx, name: str) -> int:
    shape = ctx.shape(name)
    return len(shape) if shape is not None else 1


def _requant_of(ctx: _Ctx, x: Interval, first: int) -> tuple[Interval, tuple[int, int]]:
    a = ctx.node.attrs
    rank = _rank(ctx, ctx.node.outputs[0])
    mul, add = _operand(ctx, first, rank), _operand(ctx, first + 1, rank)
    if "lo" not in a or "hi" not in a:
        raise ctx.fail("the lo and hi attributes are required")
    return _requantise(x, mul, add, int(a.get("shift", 0)), int(a["lo"]), int(a["hi"]))


def _requant_shift(ctx: _Ctx) -> tuple[Interval, NodeBounds]:
    x = ctx.iv(0)
    out, prods = _requant_of(ctx, x, 1)
    return out, NodeBounds(*x.hull(), *prods)


def _fused(acc_fn, first_rq_input: int):
    def rule(ctx: _Ctx) -> tuple[Interval, NodeBounds]:
        final, partial = acc_fn(ctx)
        out, prods = _requant_of(ctx, final, first_rq_input)
        return out, NodeBounds(*partial, *prods)

    return rule


def _harmonised_add(ctx: _Ctx) -> tuple[Interval, NodeBounds]:
    a = ctx.node.attrs
    ins = [i for i in range(len(ctx.node.inputs)) if ctx.has(i)]
    n = len(ins)

    def lst(key, default):
        v = a.get(key)
        return [default] * n if v is None else [int(x) for x in v]

    muls, adds, shifts, rqs = lst("in_mul", 1), lst("in_add", 0), lst("in_shift", 0), lst(
        "in_rq", 0)
    big = (-(2**200), 2**200)  # the reference applies no clip to the input rescales
    total, p_lo, p_hi = None, math.inf, -math.inf
    neg = pos = 0  # partial sums lie within [sum of negative parts, sum of positive parts]
    for j, i in enumerate(ins):
        iv = ctx.iv(i).scalar()
        if rqs[j]:
            iv, prods = _requantise(iv, (muls[j],), (adds[j], adds[j]), shifts[j], *big)
            p_lo, p_hi = min(p_lo, prods[0]), max(p_hi, prods[1])
        total = iv if total is None else Interval(total.lo + iv.lo, total.hi + iv.hi)
        neg, pos = neg + min(iv.lo, 0), pos + max(iv.hi, 0)
    s_lo, s_hi = total.hull()
    lo, hi = int(a["lo"]), int(a["hi"])
    if a.get("out_rq", 0):
        m, ad = int(a.get("out_mul", 1)), int(a.get("out_add", 0))
        out, prods = _requantise(total, (m,), (ad, ad), int(a.get("out_shift", 0)), lo, hi)
        p_lo, p_hi = min(p_lo, prods[0]), max(p_hi, prods[1])
    else:
        out = Interval(min(max(s_lo, lo), hi), min(max(s_hi, lo), hi))
    acc = (min(neg, s_lo), max(pos, s_hi)) if n > 1 else (s_lo, s_hi)
    if p_lo == math.inf:
        return out, NodeBounds(*acc)
    return out, NodeBounds(*acc, min(p_lo, s_lo), max(p_hi, s_hi))


# -- elementwise integer ops -----------------------------------------------------------------


def _binary(ctx: _Ctx) -> tuple[Interval, NodeBounds]:
    (a0, a1), (b0, b1) = ctx.iv(0).hull(), ctx.iv(1).hull()
    op = ctx.node.op
    if op == "Add":
        lo, hi = a0 + b0, a1 + b1
    elif op == "Sub":
        lo, hi = a0 - b1, a1 - b0
    else:
        prods = [x * y for x in (a0, a1) for y in (b0, b1)]
        lo, hi = min(prods), max(prods)
    return Interval(lo, hi), NodeBounds(lo, hi)


def _relu(ctx: _Ctx) -> tuple[Interval, NodeBounds]:
    x = ctx.iv(0)
    out = Interval(_tidy(np.maximum(x.lo, 0)), _tidy(np.maximum(x.hi, 0)))
    return out, NodeBounds(*out.hull())


def _clip(ctx: _Ctx) -> tuple[Interval, NodeBounds]:
    from edgeq.engine.passes.fusion import _clip_bounds

    b = _clip_bounds(ctx.graph, ctx.node)
    if b is None:
        raise ctx.fail("a clip bound is not a constant")
    x = ctx.iv(0).scalar()
    lo, hi = b
    out_lo = int(min(max(x.lo, lo), hi)) if hi >= lo else int(hi)
    out_hi = int(min(max(x.hi, lo), hi)) if hi >= lo else int(hi)
    return Interval(out_lo, out_hi), NodeBounds(out_lo, out_hi)


def _reduce_sum(ctx: _Ctx) -> tuple[Interval, NodeBounds]:
    shape_in, shape_out = ctx.shape(ctx.node.inputs[0]), ctx.shape(ctx.node.outputs[0])
    n_in = _count(shape_in)
    n_out = _count(shape_out)
    if n_in is None or n_out is None or n_out == 0:
        raise ctx.fail("the number of summed elements is not static")
    k = n_in // n_out
    lo, hi = ctx.iv(0).hull()
    return Interval(k * lo, k * hi), NodeBounds(min(k * lo, 0), max(k * hi, 0))


def _count(shape) -> int | None:
    # a symbolic batch dimension appears on both sides: count it as 1
    if shape is None:
        return None
    dims = [d if isinstance(d, int) else (1 if i == 0 else None) for i, d in enumerate(shape)]
    return None if None in dims else math.prod(dims)


def _pad(ctx: _Ctx) -> tuple[Interval, NodeBounds]:
    lo, hi = ctx.iv(0).hull()
    value = ctx.const(2)
    v = int(value.item()) if value is not None and value.size else int(
        ctx.node.attrs.get("value", 0))
    lo, hi = min(lo, v), max(hi, v)
    return Interval(lo, hi), NodeBounds(lo, hi)


def _cast(ctx: _Ctx) -> tuple[Interval, NodeBounds]:
    src = ctx.graph.values[ctx.node.inputs[0]]
    if not src.is_integer:
        raise ctx.fail("a float-to-integer cast has no static range")
    return _passthrough(ctx)


def _shape_op(ctx: _Ctx) -> tuple[Interval, NodeBounds]:
    """Shape/Size give dimensions: non-negative and (for any real tensor) below 2^31."""
    return Interval(0, INT32[1]), NodeBounds(0, INT32[1])


def _constant(ctx: _Ctx) -> tuple[Interval, NodeBounds]:
    a = ctx.node.attrs
    data = next((np.asarray(a[k]) for k in ("value", "value_int", "value_ints") if k in a), None)
    if data is None or data.size == 0:
        return Interval(0, 0), NodeBounds(0, 0)
    lo, hi = int(data.min()), int(data.max())
    return Interval(lo, hi), NodeBounds(lo, hi)


_RULES = {
    "Conv": _linear(_conv_acc),
    "Gemm": _linear(_gemm_acc),
    "MatMul": _linear(_matmul_acc),
    "RequantShift": _requant_shift,
    "HarmonisedAdd": _harmonised_add,
    "MaxPool": _same_channels,
    "GlobalMaxPool": _same_channels,
    "Identity": _same_channels,
    "Flatten": _flatten,
    "Concat": _concat,
    "Add": _binary,
    "Sub": _binary,
    "Mul": _binary,
    "Relu": _relu,
    "Clip": _clip,
    "ReduceSum": _reduce_sum,
    "Pad": _pad,
    "Cast": _cast,
    "Shape": _shape_op,
    "Size": _shape_op,
    "Constant": _constant,
    **{op: _passthrough for op in (
        "Reshape", "Squeeze", "Unsqueeze", "Transpose", "Gather", "Slice", "Split", "Expand",
        "Tile")},
}
_RULES.update({
    "ConvRequant": _fused(_conv_acc, 3),
    "GemmRequant": _fused(_gemm_acc, 3),
    "MatMulRequant": _fused(_matmul_acc, 2),
})
assert set(FUSED_OPS) <= set(_RULES)


# -- third-party formats (reference/thirdparty.py): onnxruntime's float32 requantisers
# saturate to their [lo, hi]; their int32 accumulators are checked here, as the reference
# raises where onnxruntime would wrap. RequantDiv is exact integer arithmetic. --------------


def _saturating(ctx: _Ctx) -> tuple[Interval, NodeBounds]:
    a = ctx.node.attrs
    if ctx.node.op == "QuantizeLinear":
        from edgeq.engine.backends.reference.thirdparty import INT_TYPE_RANGES

        zp = ctx.const(2)
        lo, hi = INT_TYPE_RANGES["uint8" if zp is None else zp.dtype.name]
    else:
        lo, hi = int(a["lo"]), int(a["hi"])
    return Interval(lo, hi), NodeBounds(lo, hi)


def _int32_acc(ctx: _Ctx, lo: int, hi: int) -> None:
    if lo < INT32[0] or hi > INT32[1]:
        raise ctx.fail(f"the int32 accumulator can reach [{lo}, {hi}]")


def _qlinear_requant(ctx: _Ctx) -> tuple[Interval, NodeBounds]:
    lo, hi = ctx.iv(0).hull()
    _int32_acc(ctx, lo, hi)
    out, _ = _saturating(ctx)
    return out, NodeBounds(lo, hi)


def _qlinear_gavg(ctx: _Ctx) -> tuple[Interval, NodeBounds]:
    shape = ctx.shape(ctx.node.inputs[0])
    n = _count(tuple(shape[2:])) if shape is not None else None
    zp = ctx.const(2)
    if n is None or zp is None:
        raise ctx.fail("the pooled element count or the zero point is not static")
    z = int(np.ravel(zp)[0])
    lo, hi = ctx.iv(0).hull()
    acc = (min(n * lo, 0) - n * z, max(n * hi, 0) - n * z)
    _int32_acc(ctx, min(acc[0], n * lo), max(acc[1], n * hi))
    out, _ = _saturating(ctx)
    return out, NodeBounds(*acc)


def _requant_div(ctx: _Ctx) -> tuple[Interval, NodeBounds]:
    a = ctx.node.attrs
    xlo, xhi = ctx.iv(0).hull()
    mul, add = ctx.const(1), ctx.const(2)
    if mul is None or add is None:
        raise ctx.fail("mul and add must be constants")
    prods = [x * int(m) for x in (xlo, xhi) for m in np.ravel(mul)]
    p_lo, p_hi = min(prods), max(prods)
    adds = [int(v) for v in np.ravel(add)]
    v_lo, v_hi = p_lo + min(adds), p_hi + max(adds)
    div, lo, hi = int(a.get("div", 1)), int(a["lo"]), int(a["hi"])
    q_lo, q_hi = v_lo // div, -((-v_hi) // div)  # every rounding lies in [floor, ceil]
    out = Interval(min(max(q_lo, lo), hi), min(max(q_hi, lo), hi))
    return out, NodeBounds(xlo, xhi, min(p_lo, v_lo), max(p_hi, v_hi))


def _cast_any(ctx: _Ctx) -> tuple[Interval, NodeBounds]:
    """Integer -> integer keeps the range; float -> integer can be any value of the
    target type (the reference raises outside it)."""
    if ctx.graph.values[ctx.node.inputs[0]].is_integer:
        return _passthrough(ctx)
    info = np.iinfo(np.dtype(ctx.graph.values[ctx.node.outputs[0]].dtype))
    lo, hi = int(info.min), int(info.max)
    return Interval(lo, hi), NodeBounds(lo, hi)


_RULES.update({
    "QLinearRequant": _qlinear_requant,
    "QLinearAddOrt": _saturating,
    "QLinearAvgPoolOrt": _qlinear_gavg,
    "QuantizeLinear": _saturating,
    "RequantDiv": _requant_div,
    "Cast": _cast_any,
})
