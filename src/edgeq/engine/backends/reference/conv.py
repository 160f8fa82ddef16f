"""Conv: N-D grouped convolution (1-D/2-D/3-D, strides, pads, dilations, auto_pad).

Computed as im2col over a strided window view followed by one batched matmul per group.
"""

from __future__ import annotations

import numpy as np

from edgeq.engine.backends.reference._common import (
    all_int,
    as_float,
    checked_add,
    exact_dtype,
    float_dtype,
    max_abs,
    reject_unknown,
    widen,
)
from edgeq.engine.backends.reference._window import geometry, pad_spatial, windows
from edgeq.engine.backends.reference.registry import register


@register("Conv")
def conv(
    x,
    w,
    b=None,
    *,
    auto_pad="NOTSET",
    dilations=None,
    group=1,
    kernel_shape=None,
    pads=None,
    strides=None,
    **extra,
):
    """ONNX Conv: ``y[n, m] = sum_{c, k} x[n, g(m)*Cg + c, s*o + d*k] * w[m, c, k] + b[m]``.

    Integer x, w (and b): exact in int64, returned as int64. Overflow: raises
    IntegerOverflowError unless the static bound ``Cg*prod(kernel)*max|x|*max|w|`` fits
    int64 (the bias add is checked exactly); below 2^53 the sum runs in float64 BLAS,
    which that bound proves exact. Float: IEEE arithmetic in the float dtype, no integer
    rounding, summation order unspecified.
    """
    reject_unknown("Conv", extra)
    _check_shapes(x, w, b, group, kernel_shape)
    g = geometry("Conv", x.shape[2:], w.shape[2:], strides, dilations, pads, auto_pad)
    if all_int(x, w, b):
        taps = w.shape[1] * int(np.prod(w.shape[2:], dtype=np.int64))
        dt = exact_dtype(taps, max_abs(widen(x)), max_abs(widen(w)), "Conv")
        y = _conv(x.astype(dt), w.astype(dt), g, group).astype(np.int64, copy=False)
        return y if b is None else checked_add(y, _per_channel(widen(b), y.ndim), "Conv")
    dt = float_dtype(x, w, b)
    y = _conv(as_float(x, dt), as_float(w, dt), g, group)
    return y if b is None else y + _per_channel(as_float(b, dt), y.ndim)


def _check_shapes(x, w, b, group, kernel_shape):
    if x.ndim < 3 or w.ndim != x.ndim:
        raise ValueError(f"Conv: need x and w of equal rank >= 3, got {x.shape} and {w.shape}")
    m, cg = w.shape[:2]
    if group < 1 or x.shape[1] != cg * group or m % group:
        raise ValueError(
            f"Conv: {x.shape[1]} input channels, weight {w.shape} and group={group} disagree"
        )
    if kernel_shape is not None and tuple(kernel_shape) != tuple(w.shape[2:]):
        raise ValueError(f"Conv: kernel_shape {list(kernel_shape)} != weight shape {w.shape}")
    if b is not None and b.shape != (m,):
        raise ValueError(f"Conv: bias shape {b.shape} != ({m},)")


def _per_channel(v, ndim):
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def _conv(x, w, g, group):
    """Grouped im2col convolution in the dtype of ``x`` and ``w``."""
    n, c = x.shape[:2]
    m = w.shape[0]
    nsp = x.ndim - 2
    view = windows(pad_spatial(x, g, 0), g)  # (N, C, *out, *k)
    cg = c // group
    view = view.reshape((n, group, cg) + view.shape[2:])
    # -> (N, G, *out, Cg, *k): rows are output positions, columns the window taps.
    order = (0, 1) + tuple(range(3, 3 + nsp)) + (2,) + tuple(range(3 + nsp, 3 + 2 * nsp))
    positions = int(np.prod(g.out, dtype=np.int64))
    cols = view.transpose(order).reshape(n, group, positions, -1)
    wk = w.reshape(group, m // group, -1).transpose(0, 2, 1)  # (G, Cg*K, Mg)
    y = np.matmul(cols, wk)  # (N, G, P, Mg)
    return y.transpose(0, 1, 3, 2).reshape((n, m) + g.out)
