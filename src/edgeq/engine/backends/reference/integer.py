"""The IR's own integer ops (domain ``edgeq``): RequantShift and HarmonisedAdd.

Semantics are in the docstring of :mod:`edgeq.engine.ir` and DESIGN §3.3/§3.5. Inputs
may be integer arrays or float arrays carrying integers (QuantLab/DORY files); a float
holding a non-integer raises IntegralityError. Outputs use the narrowest integer dtype
holding ``[lo, hi]`` (DESIGN §3.1).
"""

from __future__ import annotations

import numpy as np

from edgeq.engine.backends.reference._common import (
    INT64_MAX,
    INT64_MIN,
    checked_add,
    reject_unknown,
)
from edgeq.engine.backends.reference.registry import register
from edgeq.numerics import narrowest_dtype, requant_shift, to_integers


def _integers(x, what):
    return to_integers(np.asarray(x), what)


def _bounds(lo, hi, op):
    if lo is None or hi is None:
        raise ValueError(f"{op}: the lo and hi attributes are required")
    lo, hi = int(lo), int(hi)
    if lo > hi:
        raise ValueError(f"{op}: lo={lo} > hi={hi}")
    return lo, hi


def _requant(x, mul, add, shift, lo, hi, where):
    """floor((x*mul + add) / 2^shift) clipped to [lo, hi], checking mul/add broadcast."""
    mul, add = _integers(mul, f"{where} mul"), _integers(add, f"{where} add")
    if np.broadcast_shapes(x.shape, mul.shape, add.shape) != x.shape:
        raise ValueError(
            f"{where}: mul {mul.shape} / add {add.shape} must broadcast to the input {x.shape}"
        )
    return requant_shift(x, mul, add, int(shift), lo, hi, where=where)


@register("RequantShift")
def requant(x, mul, add, *, shift=0, lo=None, hi=None, **extra):
    """``y = clip(floor((x*mul + add) / 2^shift), lo, hi)`` (DESIGN §3.3).

    Exact in int64. Rounding: floor, i.e. an arithmetic right shift (round half up is
    ``2^(shift-1)`` folded into ``add``). Overflow: raises IntegerOverflowError if any
    ``x*mul + add`` leaves int64 -- never wraps. ``mul``/``add`` are scalars or
    per-channel arrays already shaped to broadcast against ``x`` (NumPy rules).
    """
    reject_unknown("RequantShift", extra)
    lo, hi = _bounds(lo, hi, "RequantShift")
    y = _requant(_integers(x, "RequantShift input"), mul, add, shift, lo, hi, "RequantShift")
    return y.astype(narrowest_dtype(lo, hi))


@register("HarmonisedAdd")
def harmonised_add(
    *xs,
    in_mul=None,
    in_add=None,
    in_shift=None,
    in_rq=None,
    out_mul=1,
    out_add=0,
    out_shift=0,
    out_rq=0,
    lo=None,
    hi=None,
    **extra,
):
    """``y = clip(rq_out(sum_i rq_i(x_i)), lo, hi)`` with
    ``rq(v) = floor((v*mul + add) / 2^shift)`` where enabled (DESIGN §4).

    Per-input lists ``in_mul/in_add/in_shift/in_rq`` have one entry per input (defaults:
    ``in_rq`` all 0, mul 1, add 0, shift 0). Exact in int64; rounding is floor
    (arithmetic right shift) at every rescale; overflow of any product or of the sum
    raises IntegerOverflowError -- never wraps.
    """
    reject_unknown("HarmonisedAdd", extra)
    lo, hi = _bounds(lo, hi, "HarmonisedAdd")
    n = len(xs)
    if n == 0:
        raise ValueError("HarmonisedAdd: needs at least one input")
    lists = {
        "in_mul": _per_input(in_mul, 1, n),
        "in_add": _per_input(in_add, 0, n),
        "in_shift": _per_input(in_shift, 0, n),
        "in_rq": _per_input(in_rq, 0, n),
    }
    total = None
    for i, x in enumerate(xs):
        v = _integers(x, f"HarmonisedAdd input {i}")
        if lists["in_rq"][i]:
            v = _requant(
                v,
                lists["in_mul"][i],
                lists["in_add"][i],
                lists["in_shift"][i],
                INT64_MIN,
                INT64_MAX,
                f"HarmonisedAdd input {i}",
            )
        total = v if total is None else checked_add(total, v, "HarmonisedAdd")
    if out_rq:
        return _requant(total, out_mul, out_add, out_shift, lo, hi, "HarmonisedAdd output").astype(
            narrowest_dtype(lo, hi)
        )
    return np.clip(total, lo, hi).astype(narrowest_dtype(lo, hi))


def _per_input(values, default, n):
    if values is None:
        return [default] * n
    values = list(values)
    if len(values) != n:
        raise ValueError(f"HarmonisedAdd: {len(values)} per-input entries for {n} inputs")
    return values
