"""Sliding windows over the spatial axes of an ``N x C x D1 x ... x Dk`` tensor.

Shared by Conv and the pools: resolving ``pads``/``auto_pad``/``ceil_mode`` into an
output shape and explicit pads (ONNX rules), and a zero-copy strided view of every
window. No arithmetic happens here, so there is no rounding and no overflow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

AUTO_PADS = ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")


@dataclass(frozen=True)
class WindowGeometry:
    """Resolved geometry: kernel, strides, dilations, pads (begin, end) and output shape.

    ``overhang`` is extra padding past ``pads_end`` that ceil_mode needs so the last
    window can be sliced; it lies outside the padded input (pools ignore it).
    """

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads_begin: tuple[int, ...]
    pads_end: tuple[int, ...]
    out: tuple[int, ...]
    overhang: tuple[int, ...]

    @property
    def span(self) -> tuple[int, ...]:
        """Extent of one dilated window: ``(k - 1) * d + 1``."""
        return tuple((k - 1) * d + 1 for k, d in zip(self.kernel, self.dilations, strict=True))


def _ints(values, n: int, default: int, what: str, op: str) -> tuple[int, ...]:
    if values is None or len(values) == 0:
        return (default,) * n
    values = tuple(int(v) for v in values)
    if len(values) != n:
        raise ValueError(f"{op}: {what} has {len(values)} entries, expected {n}")
    return values


def geometry(
    op: str,
    in_shape,
    kernel,
    strides=None,
    dilations=None,
    pads=None,
    auto_pad: str = "NOTSET",
    ceil_mode: int = 0,
) -> WindowGeometry:
    """Resolve the ONNX window attributes for spatial input shape ``in_shape``."""
    n = len(in_shape)
    kernel = _ints(kernel, n, 1, "kernel_shape", op)
    strides = _ints(strides, n, 1, "strides", op)
    dilations = _ints(dilations, n, 1, "dilations", op)
    pads = _ints(pads, 2 * n, 0, "pads", op)
    if auto_pad not in AUTO_PADS:
        raise ValueError(f"{op}: auto_pad {auto_pad!r} is not one of {AUTO_PADS}")
    if min(strides) < 1 or min(dilations) < 1 or min(kernel) < 1 or min(pads) < 0:
        raise ValueError(f"{op}: kernel, strides and dilations must be >= 1 and pads >= 0")
    span = [(k - 1) * d + 1 for k, d in zip(kernel, dilations, strict=True)]
    begin, end, out = [], [], []
    for i in range(n):
        b, e, o = _axis(in_shape[i], span[i], strides[i], pads[i], pads[n + i], auto_pad, ceil_mode)
        if o < 1:
            raise ValueError(f"{op}: empty output along spatial axis {i} (input {in_shape[i]})")
        begin.append(b)
        end.append(e)
        out.append(o)
    needed = [(o - 1) * s + k for o, s, k in zip(out, strides, span, strict=True)]
    overhang = [
        max(0, need - (size + b + e))
        for need, size, b, e in zip(needed, in_shape, begin, end, strict=True)
    ]
    return WindowGeometry(
        kernel, strides, dilations, tuple(begin), tuple(end), tuple(out), tuple(overhang)
    )


def _axis(size, span, stride, pad_b, pad_e, auto_pad, ceil_mode):
    """(pad_begin, pad_end, out) along one axis."""
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out = -(-size // stride)
        total = max(0, (out - 1) * stride + span - size)
        # SAME_UPPER puts the odd extra pad at the end, SAME_LOWER at the beginning.
        small = total // 2
        return (
            (small, total - small, out) if auto_pad == "SAME_UPPER" else (total - small, small, out)
        )
    if auto_pad == "VALID":
        pad_b = pad_e = 0
    room = size + pad_b + pad_e - span
    if room < 0:
        return pad_b, pad_e, 0
    if not ceil_mode:
        return pad_b, pad_e, room // stride + 1
    out = math.ceil(room / stride) + 1
    # ceil_mode: the last window must start inside the input or its begin padding.
    if (out - 1) * stride >= size + pad_b:
        out -= 1
    return pad_b, pad_e, out


def pad_spatial(x: np.ndarray, g: WindowGeometry, fill) -> np.ndarray:
    """``x`` padded on its spatial axes with ``fill`` (pads plus ceil_mode overhang)."""
    widths = [(0, 0), (0, 0)] + [
        (b, e + o) for b, e, o in zip(g.pads_begin, g.pads_end, g.overhang, strict=True)
    ]
    if not any(b or e for b, e in widths):
        return x
    return np.pad(x, widths, mode="constant", constant_values=fill)


def windows(xp: np.ndarray, g: WindowGeometry) -> np.ndarray:
    """Zero-copy view ``(N, C, *out, *kernel)`` of the windows of padded ``xp``."""
    n = len(g.kernel)
    axes = tuple(range(2, 2 + n))
    view = np.lib.stride_tricks.sliding_window_view(xp, g.span, axis=axes)
    picks = tuple(slice(0, (o - 1) * s + 1, s) for o, s in zip(g.out, g.strides, strict=True))
    taps = tuple(slice(None, None, d) for d in g.dilations)
    return view[(slice(None), slice(None)) + picks + taps]
