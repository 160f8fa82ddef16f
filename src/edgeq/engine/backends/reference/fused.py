"""Fused integer ops (domain ``edgeq``) written by :mod:`edgeq.engine.passes.fusion`.

Each is the composition of the existing reference kernels, so it is bit-exact with the
unfused pair by construction (the tests check it against the unfused graph anyway):

- ``ConvRequant(x, w, b|"", mul, add)``: ``RequantShift(Conv(x, w, b), mul, add)``;
- ``GemmRequant(a, b, c|"", mul, add)``: ``RequantShift(Gemm(a, b, c), mul, add)``;
- ``MatMulRequant(a, b, mul, add)``: ``RequantShift(MatMul(a, b), mul, add)``.

Attributes are the linear op's plus ``shift, lo, hi`` of the requantisation. Rounding
is the RequantShift's floor; overflow raises IntegerOverflowError as in the parts.
"""

from __future__ import annotations

from edgeq.engine.backends.reference.conv import conv
from edgeq.engine.backends.reference.gemm import gemm, matmul
from edgeq.engine.backends.reference.integer import requant
from edgeq.engine.backends.reference.registry import register

# op type of the fused node -> op type of its linear part
FUSED_OPS = {"ConvRequant": "Conv", "GemmRequant": "Gemm", "MatMulRequant": "MatMul"}
REQUANT_ATTRS = ("shift", "lo", "hi")


def _split(attrs: dict) -> tuple[dict, dict]:
    """(linear op attrs, requant attrs) of a fused node's attributes."""
    rq = {k: attrs[k] for k in REQUANT_ATTRS if k in attrs}
    lin = {k: v for k, v in attrs.items() if k not in REQUANT_ATTRS}
    return lin, rq


@register("ConvRequant")
def conv_requant(x, w, b, mul, add, **attrs):
    """``RequantShift(Conv(x, w, b), mul, add)``; ``b`` may be None (omitted input).

    Exact in int64 (the parts' rules): rounding is the requantisation's floor, overflow of
    the accumulator or of ``acc*mul + add`` raises IntegerOverflowError, never wraps.
    """
    lin, rq = _split(attrs)
    return requant(conv(x, w, b, **lin), mul, add, **rq)


@register("GemmRequant")
def gemm_requant(a, b, c, mul, add, **attrs):
    """``RequantShift(Gemm(a, b, c), mul, add)``; ``c`` may be None (omitted input).

    Exact in int64 (the parts' rules): rounding is the requantisation's floor, overflow of
    the accumulator or of ``acc*mul + add`` raises IntegerOverflowError, never wraps.
    """
    lin, rq = _split(attrs)
    return requant(gemm(a, b, c, **lin), mul, add, **rq)


@register("MatMulRequant")
def matmul_requant(a, b, mul, add, **attrs):
    """``RequantShift(MatMul(a, b), mul, add)``.

    Exact in int64 (the parts' rules): rounding is the requantisation's floor, overflow of
    the accumulator or of ``acc*mul + add`` raises IntegerOverflowError, never wraps.
    """
    lin, rq = _split(attrs)
    return requant(matmul(a, b, **lin), mul, add, **rq)
