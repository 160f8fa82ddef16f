"""LayoutConvert (domain ``edgeq``): ``y = transpose(x, perm)``, inserted by the layout
pass (:mod:`edgeq.engine.passes.layout`) between producers and consumers that store a
4-D tensor differently (NCHW / NHWC). Exact for every dtype."""

from __future__ import annotations

from edgeq.engine.backends.reference._common import reject_unknown
from edgeq.engine.backends.reference.registry import register
from edgeq.engine.passes.layout import layout_convert


@register("LayoutConvert")
def layout_convert_kernel(x, *, perm=None, **extra):
    """``transpose(x, perm)``; ``perm`` is required and must permute x's axes.

    Exact for every dtype: no arithmetic, so no rounding and no overflow."""
    reject_unknown("LayoutConvert", extra)
    if perm is None:
        raise ValueError("LayoutConvert: the perm attribute is required")
    return layout_convert(x, perm=perm)
