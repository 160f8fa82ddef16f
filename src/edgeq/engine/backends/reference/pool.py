"""Pooling: MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool, and the exact sum pool.

Windows follow the ONNX rules for pads, strides, dilations, auto_pad and ceil_mode
(see ``_window.py``). Padding never wins a max and, for the average, counts towards the
divisor only when ``count_include_pad=1``; positions past the padded input (ceil_mode
overhang) never count.
"""

from __future__ import annotations

import numpy as np

from edgeq.engine.backends.reference._common import (
    as_float,
    check_bound,
    float_dtype,
    is_int,
    max_abs,
    reject_unknown,
    widen,
)
from edgeq.engine.backends.reference._window import WindowGeometry, geometry, pad_spatial, windows
from edgeq.engine.backends.reference.registry import register


def _geometry(op, x, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode):
    if kernel_shape is None:
        raise ValueError(f"{op}: the kernel_shape attribute is required")
    if x.ndim < 3 or len(kernel_shape) != x.ndim - 2:
        raise ValueError(f"{op}: kernel_shape {list(kernel_shape)} does not fit input {x.shape}")
    return geometry(op, x.shape[2:], kernel_shape, strides, dilations, pads, auto_pad, ceil_mode)


def _taps_axes(g: WindowGeometry) -> tuple[int, ...]:
    n = len(g.kernel)
    return tuple(range(2 + n, 2 + 2 * n))


def _lowest(dtype):
    return -np.inf if np.issubdtype(dtype, np.floating) else np.iinfo(dtype).min


@register("MaxPool")
def max_pool(
    x,
    *,
    auto_pad="NOTSET",
    ceil_mode=0,
    dilations=None,
    kernel_shape=None,
    pads=None,
    storage_order=0,
    strides=None,
    **extra,
):
    """ONNX MaxPool (output Y only; see :func:`max_pool_with_indices` for Indices).

    Exact in the input dtype (integers stay integers): no rounding, no overflow.
    """
    reject_unknown("MaxPool", extra)
    g = _geometry("MaxPool", x, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode)
    return windows(pad_spatial(x, g, _lowest(x.dtype)), g).max(axis=_taps_axes(g))


def max_pool_with_indices(x, *, storage_order=0, **attrs):
    """MaxPool's two outputs ``(Y, Indices)``; Indices are flat int64 offsets into ``x``.

    The offset is row-major over (N, C, *spatial), or with the spatial axes in
    column-major order when ``storage_order=1``; ties go to the first window tap.
    Exact: no rounding, no overflow.
    """
    y = max_pool(x, **attrs)
    g = _geometry(
        "MaxPool",
        x,
        attrs.get("kernel_shape"),
        attrs.get("strides"),
        attrs.get("dilations"),
        attrs.get("pads"),
        attrs.get("auto_pad", "NOTSET"),
        attrs.get("ceil_mode", 0),
    )
    view = windows(pad_spatial(x, g, _lowest(x.dtype)), g)
    flat = view.reshape(view.shape[: 2 + len(g.out)] + (-1,))
    taps = np.unravel_index(np.argmax(flat, axis=-1), g.kernel)
    n, c = x.shape[:2]
    spatial = x.shape[2:]
    coords = []
    for i, tap in enumerate(taps):
        pos = np.arange(g.out[i]) * g.strides[i] - g.pads_begin[i]
        pos = pos.reshape((-1,) + (1,) * (len(g.out) - 1 - i))
        coords.append(pos + tap * g.dilations[i])
    dims = spatial
    if storage_order:
        coords, dims = coords[::-1], spatial[::-1]
    offset = np.ravel_multi_index(tuple(coords), dims)
    base = (np.arange(n)[:, None] * c + np.arange(c)[None, :]) * int(np.prod(spatial))
    return y, (base.reshape(base.shape + (1,) * len(g.out)) + offset).astype(np.int64)


def window_sum(
    x,
    *,
    auto_pad="NOTSET",
    ceil_mode=0,
    dilations=None,
    kernel_shape=None,
    pads=None,
    strides=None,
):
    """Sum of each pooling window, and the number of input elements in it.

    Integer x: the sum is exact in int64 (the integer average pool of DESIGN §3.6 is this
    sum followed by a RequantShift); overflow raises IntegerOverflowError when the static
    bound ``prod(kernel) * max|x|`` exceeds int64. Float: IEEE summation in the input
    dtype, no integer rounding. Returns ``(sums, counts)`` with counts of shape
    ``(1, 1, *out)`` (padding is zero and not counted).
    """
    g = _geometry("SumPool", x, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode)
    axes = _taps_axes(g)
    if is_int(x):
        x = widen(x, "SumPool")
        taps = int(np.prod(g.kernel))
        check_bound(taps * max_abs(x), "SumPool", f"{taps} taps, max|x|={max_abs(x)}")
    sums = windows(pad_spatial(x, g, 0), g).sum(axis=axes)
    return sums, _counts(x.shape[2:], g, include_pad=False)


def _counts(spatial, g: WindowGeometry, include_pad: bool):
    """Per-window divisor: taps on the input, plus taps on explicit padding if included."""
    ones = np.ones((1, 1) + tuple(spatial), dtype=np.int64)
    if include_pad:
        widths = [(0, 0), (0, 0)] + list(zip(g.pads_begin, g.pads_end, strict=True))
        ones = np.pad(ones, widths, constant_values=1)
        g = WindowGeometry(
            g.kernel,
            g.strides,
            g.dilations,
            (0,) * len(spatial),
            (0,) * len(spatial),
            g.out,
            g.overhang,
        )
    return windows(pad_spatial(ones, g, 0), g).sum(axis=_taps_axes(g))


@register("AveragePool")
def average_pool(
    x,
    *,
    auto_pad="NOTSET",
    ceil_mode=0,
    count_include_pad=0,
    dilations=None,
    kernel_shape=None,
    pads=None,
    strides=None,
    **extra,
):
    """ONNX AveragePool: window sum divided by the window's element count.

    Float: IEEE in the input dtype (sum, then one division, round to nearest). Integer
    input: the sum is exact in int64 (overflow raises IntegerOverflowError, static bound)
    and is then converted to float64 (exact below 2^53) and divided once, rounding to
    nearest; the result is float64. Integer pipelines use :func:`window_sum` +
    RequantShift instead (DESIGN §3.6).
    """
    reject_unknown("AveragePool", extra)
    attrs = dict(
        auto_pad=auto_pad,
        ceil_mode=ceil_mode,
        dilations=dilations,
        kernel_shape=kernel_shape,
        pads=pads,
        strides=strides,
    )
    sums, counts = window_sum(x, **attrs)
    if count_include_pad:
        g = _geometry("AveragePool", x, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode)
        counts = _counts(x.shape[2:], g, include_pad=True)
    dt = float_dtype(x)
    return as_float(sums, dt) / as_float(counts, dt)


@register("GlobalAveragePool")
def global_average_pool(x, **extra):
    """ONNX GlobalAveragePool: mean over all spatial axes, kept as size-1 axes.

    Float: IEEE in the input dtype (round to nearest). Integer input: exact int64 sum
    (overflow raises IntegerOverflowError, static bound), converted to float64 (exact
    below 2^53) and divided once, rounding to nearest; the result is float64.
    """
    reject_unknown("GlobalAveragePool", extra)
    axes = tuple(range(2, x.ndim))
    count = int(np.prod(x.shape[2:], dtype=np.int64))
    if is_int(x):
        x = widen(x, "GlobalAveragePool")
        check_bound(count * max_abs(x), "GlobalAveragePool", f"{count} elements")
        return x.sum(axis=axes, keepdims=True) / np.float64(count)
    return np.mean(x, axis=axes, keepdims=True)


@register("GlobalMaxPool")
def global_max_pool(x, **extra):
    """ONNX GlobalMaxPool: max over all spatial axes. Exact in the input dtype.

    No rounding, no overflow.
    """
    reject_unknown("GlobalMaxPool", extra)
    return np.max(x, axis=tuple(range(2, x.ndim)), keepdims=True)
