"""Reductions: ReduceSum and ReduceMean (what exporters emit for global pooling)."""

from __future__ import annotations

import numpy as np

from edgeq.engine.backends.reference._common import (
    check_bound,
    is_int,
    max_abs,
    norm_axis,
    reject_unknown,
    widen,
)
from edgeq.engine.backends.reference.registry import register


def _axes(x, axes, noop_with_empty_axes, op):
    """Reduced axes as a tuple; None means "leave x unchanged"."""
    axes = [] if axes is None else [int(a) for a in np.asarray(axes).reshape(-1)]
    if not axes:
        return None if noop_with_empty_axes else tuple(range(x.ndim))
    return tuple(sorted({norm_axis(a, x.ndim, op) for a in axes}))


def _exact_sum(x, axes, keepdims, op):
    x = widen(x, op)
    count = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    check_bound(count * max_abs(x), op, f"{count} terms, max|x|={max_abs(x)}")
    return x.sum(axis=axes, keepdims=bool(keepdims)), count


@register("ReduceSum")
def reduce_sum(x, axes=None, *, keepdims=1, noop_with_empty_axes=0, **extra):
    """ONNX ReduceSum; ``axes`` is an input from opset 13 and an attribute before.

    Integer: exact in int64, returned as int64; overflow raises IntegerOverflowError when
    the static bound ``count * max|x|`` exceeds int64. Float: IEEE summation in the input
    dtype (rounding to nearest, order unspecified).
    """
    reject_unknown("ReduceSum", extra)
    axes = _axes(x, axes, noop_with_empty_axes, "ReduceSum")
    if axes is None:
        return x
    if is_int(x):
        return _exact_sum(x, axes, keepdims, "ReduceSum")[0]
    return np.sum(x, axis=axes, keepdims=bool(keepdims))


@register("ReduceMean")
def reduce_mean(x, axes=None, *, keepdims=1, noop_with_empty_axes=0, **extra):
    """ONNX ReduceMean; ``axes`` is an input from opset 18 and an attribute before.

    Float: IEEE in the input dtype (round to nearest). Integer input: exact int64 sum
    (overflow raises IntegerOverflowError, static bound), converted to float64 (exact
    below 2^53) and divided once, rounding to nearest; the result is float64.
    """
    reject_unknown("ReduceMean", extra)
    axes = _axes(x, axes, noop_with_empty_axes, "ReduceMean")
    if axes is None:
        return x
    if is_int(x):
        total, count = _exact_sum(x, axes, keepdims, "ReduceMean")
        return total / np.float64(count)
    return np.mean(x, axis=axes, keepdims=bool(keepdims))
