"""Activations: Relu, LeakyRelu, Sigmoid, Tanh, Clip, Softmax."""

from __future__ import annotations

import math

import numpy as np

from edgeq.engine.backends.reference._common import (
    as_float,
    float_dtype,
    is_int,
    norm_axis,
    reject_unknown,
)
from edgeq.engine.backends.reference.registry import register

LATEST_OPSET = 21


def _real(x):
    """Float view of ``x`` for a float op: integers become float64 real values."""
    return as_float(x, float_dtype(x))


@register("Relu")
def relu(x, **extra):
    """ONNX Relu ``max(x, 0)`` in the input dtype: exact for integers and floats.

    No rounding; no overflow possible.
    """
    reject_unknown("Relu", extra)
    return np.maximum(x, x.dtype.type(0))


@register("LeakyRelu")
def leaky_relu(x, *, alpha=0.01, **extra):
    """ONNX LeakyRelu ``x if x >= 0 else alpha*x``.

    Float: IEEE in the input dtype (alpha cast to it); integer input is read as real
    values in float64. No integer rounding; no overflow (float).
    """
    reject_unknown("LeakyRelu", extra)
    x = _real(x)
    return np.where(x < 0, x * x.dtype.type(alpha), x)


@register("Sigmoid")
def sigmoid(x, **extra):
    """ONNX Sigmoid ``1 / (1 + exp(-x))``, in a form that cannot overflow exp.

    Float: IEEE in the input dtype; integer input is read as real values in float64.
    No integer rounding; no overflow (exp only sees non-positive arguments).
    """
    reject_unknown("Sigmoid", extra)
    x = _real(x)
    e = np.exp(-np.abs(x))  # in (0, 1]
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


@register("Tanh")
def tanh(x, **extra):
    """ONNX Tanh. Float: IEEE in the input dtype; integers read as float64 real values.

    No integer rounding; no overflow (tanh saturates).
    """
    reject_unknown("Tanh", extra)
    return np.tanh(_real(x))


@register("Clip")
def clip(x, lo=None, hi=None, *, min=None, max=None, **extra):
    """ONNX Clip: bounds are attributes ``min``/``max`` before opset 11, inputs from 11.

    Both forms are accepted at any opset. A missing bound does not clip. When
    ``min > max`` every value becomes ``max`` (ONNX rule). Integer input stays in its
    dtype: a float bound is rounded inward (ceil of min, floor of max) and clamped to the
    dtype's range, so there is no rounding of data and no overflow. Float: exact
    comparisons in the input dtype.
    """
    reject_unknown("Clip", extra)
    lo = min if lo is None else lo
    hi = max if hi is None else hi
    if is_int(x):
        return _clip_int(x, lo, hi)
    t = x.dtype.type
    lo = None if lo is None else t(np.asarray(lo).item())
    hi = None if hi is None else t(np.asarray(hi).item())
    if lo is None and hi is None:
        return x
    return np.clip(x, lo, hi)


def _clip_int(x, lo, hi):
    info = np.iinfo(x.dtype)
    if lo is not None:
        lo = np.asarray(lo).item()
        lo = x.dtype.type(_clamp(math.ceil(lo) if np.isfinite(lo) else lo, info))
    if hi is not None:
        hi = np.asarray(hi).item()
        hi = x.dtype.type(_clamp(math.floor(hi) if np.isfinite(hi) else hi, info))
    if lo is None and hi is None:
        return x
    return np.clip(x, lo, hi)


def _clamp(v, info):
    return int(info.min) if v < info.min else int(info.max) if v > info.max else int(v)


@register("Softmax", opset_aware=True)
def softmax(x, *, opset=LATEST_OPSET, axis=None, **extra):
    """ONNX Softmax. Before opset 13: x is flattened to 2-D at ``axis`` (default 1) and
    normalised over the trailing block; from 13: over the single ``axis`` (default -1).

    Float: IEEE in the input dtype (max subtracted first, so exp cannot overflow);
    integer input is read as real values in float64. No integer rounding.
    """
    reject_unknown("Softmax", extra)
    x = _real(x)
    if opset < 13:
        axis = norm_axis(1 if axis is None else axis, max(x.ndim, 1), "Softmax")
        flat = x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1)
        return _softmax(flat, 1).reshape(x.shape)
    return _softmax(x, norm_axis(-1 if axis is None else axis, x.ndim, "Softmax"))


def _softmax(x, axis):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)
