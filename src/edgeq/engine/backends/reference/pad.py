"""Pad: constant, edge, reflect and wrap modes, negative pads, the ``axes`` input."""

from __future__ import annotations

import numpy as np

from edgeq.engine.backends.reference._common import norm_axis, reject_unknown
from edgeq.engine.backends.reference.registry import register

MODES = ("constant", "edge", "reflect", "wrap")


@register("Pad")
def pad(data, pads=None, constant_value=None, axes=None, *, mode="constant", value=None, **extra):
    """ONNX Pad. ``pads`` is ``[b_1..b_k, e_1..e_k]`` over ``axes`` (default: all axes);
    it is an input from opset 11 and an attribute (with the fill in ``value``) before.
    Negative pads remove elements (applied before the positive ones).

    Pure data movement in the input dtype: no rounding, no overflow; the constant fill
    is cast to the input dtype. ``mode`` must be one of constant/edge/reflect/wrap;
    reflect needs every pad smaller than its axis (as onnxruntime), else ValueError.
    """
    reject_unknown("Pad", extra)
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode not in MODES:
        raise ValueError(f"Pad: mode {mode!r} is not one of {MODES}")
    if pads is None:
        raise ValueError("Pad: pads are required")
    widths = _widths(data.ndim, [int(p) for p in np.asarray(pads).reshape(-1)], axes)
    data = _crop(data, widths)
    widths = [(max(0, b), max(0, e)) for b, e in widths]
    if mode == "reflect" and any(0 < max(w) >= d for w, d in zip(widths, data.shape, strict=True)):
        raise ValueError(f"Pad: reflect pads {widths} must be smaller than the axes {data.shape}")
    if mode != "constant":
        return np.pad(data, widths, mode=mode)
    fill = constant_value if constant_value is not None else value
    fill = 0 if fill is None or np.size(fill) == 0 else np.asarray(fill).reshape(-1)[0]
    return np.pad(data, widths, mode="constant", constant_values=data.dtype.type(fill))


def _crop(data, widths):
    """Apply the negative pads: drop that many elements at either end."""
    keep = tuple(
        slice(max(0, -b), d - max(0, -e)) for (b, e), d in zip(widths, data.shape, strict=True)
    )
    return data[keep]


def _widths(rank, pads, axes):
    axes = (
        list(range(rank))
        if axes is None
        else [norm_axis(int(a), rank, "Pad") for a in np.asarray(axes).reshape(-1)]
    )
    if len(pads) != 2 * len(axes):
        raise ValueError(f"Pad: {len(pads)} pads for {len(axes)} axes (need 2 per axis)")
    widths = [(0, 0)] * rank
    for i, a in enumerate(axes):
        widths[a] = (pads[i], pads[len(axes) + i])
    return widths
