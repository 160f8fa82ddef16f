"""Normalisations: BatchNormalization (inference form) and LRN."""

from __future__ import annotations

import math

import numpy as np

from edgeq.engine.backends.reference._common import as_float, float_dtype, reject_unknown
from edgeq.engine.backends.reference.registry import register


def _per_channel(v, ndim):
    return v.reshape((1, -1) + (1,) * (ndim - 2))


@register("BatchNormalization")
def batch_norm(
    x, scale, bias, mean, var, *, epsilon=1e-5, momentum=0.9, training_mode=0, spatial=1, **extra
):
    """ONNX BatchNormalization, inference form (channel axis 1):
    ``y = (x - mean) / sqrt(var + epsilon) * scale + bias``.

    Float: IEEE in the dtype of x (the parameters are cast to it); integer x is read as
    real values in float64. No integer rounding; no overflow (float). ``training_mode=1`` (batch
    statistics) and ``spatial=0`` are not supported (ValueError); ``momentum`` only
    matters in training and is ignored.
    """
    reject_unknown("BatchNormalization", extra)
    if training_mode:
        raise ValueError("BatchNormalization: training_mode=1 is not supported (inference only)")
    if not spatial:
        raise ValueError("BatchNormalization: spatial=0 is not supported")
    # Opset 15 lets scale/bias/mean/var have their own float types; Y has X's type.
    dt = float_dtype(x)
    x = as_float(x, dt)
    scale, bias, mean, var = (
        _per_channel(as_float(v, dt), x.ndim) for v in (scale, bias, mean, var)
    )
    return (x - mean) / np.sqrt(var + dt.type(epsilon)) * scale + bias


@register("LRN")
def lrn(x, *, size=None, alpha=1e-4, beta=0.75, bias=1.0, **extra):
    """ONNX LRN across channels (axis 1):
    ``y = x / (bias + alpha/size * sum_{c' near c} x[c']^2) ^ beta`` with the window
    ``[c - floor((size-1)/2), c + ceil((size-1)/2)]`` clipped to the channels.

    Float: IEEE in the input dtype; integer input is read as real values in float64.
    No integer rounding; no overflow (float).
    """
    reject_unknown("LRN", extra)
    if size is None or size < 1 or x.ndim < 2:
        raise ValueError(f"LRN: need size >= 1 and rank >= 2, got size={size}, {x.shape}")
    dt = float_dtype(x)
    x = as_float(x, dt)
    before, after = math.floor((size - 1) / 2), math.ceil((size - 1) / 2)
    sq = np.pad(x * x, [(0, 0), (before, after)] + [(0, 0)] * (x.ndim - 2))
    # Sliding channel sum as a difference of cumulative sums would cancel; sum the
    # `size` shifted copies instead (size is small).
    channels = x.shape[1]
    square_sum = sum(sq[:, i : i + channels] for i in range(size))
    t = dt.type
    return x / (t(bias) + t(alpha) / t(size) * square_sum) ** t(beta)
