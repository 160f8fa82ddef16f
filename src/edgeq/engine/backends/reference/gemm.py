"""Gemm and MatMul."""

from __future__ import annotations

import numpy as np

from edgeq.engine.backends.reference._common import (
    all_int,
    as_float,
    checked_add,
    checked_mul,
    exact_matmul,
    float_dtype,
    reject_unknown,
    widen,
)
from edgeq.engine.backends.reference.registry import register


@register("MatMul")
def matmul(a, b, **extra):
    """ONNX MatMul (NumPy ``matmul`` semantics: 1-D promotion, batch broadcasting).

    Integer a, b: exact in int64, returned as int64. Overflow: raises IntegerOverflowError
    unless the static bound ``K*max|a|*max|b|`` fits int64 (float64 BLAS below 2^53,
    where that bound proves it exact). Float: IEEE in the float dtype, no integer
    rounding, summation order unspecified.
    """
    reject_unknown("MatMul", extra)
    if all_int(a, b):
        return exact_matmul(a, b, "MatMul")
    dt = float_dtype(a, b)
    return np.matmul(as_float(a, dt), as_float(b, dt))


@register("Gemm")
def gemm(a, b, c=None, *, alpha=1.0, beta=1.0, transA=0, transB=0, **extra):
    """ONNX Gemm: ``y = alpha * A' @ B' + beta * C`` (C broadcast to (M, N)).

    Integer A, B (and C): exact in int64, returned as int64; ``alpha``/``beta`` must then
    be integral (else ValueError: the result would not be an integer). Overflow: raises
    IntegerOverflowError (static bound ``K*max|A|*max|B|`` for the product, exact checks
    for the scaling and the add). Float: IEEE in the float dtype, no integer rounding.
    """
    reject_unknown("Gemm", extra)
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"Gemm: A and B must be 2-D, got {a.shape} and {b.shape}")
    a = a.T if transA else a
    b = b.T if transB else b
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"Gemm: inner dimensions differ: A' {a.shape}, B' {b.shape}")
    if c is not None and np.broadcast_shapes(c.shape, (a.shape[0], b.shape[1])) != (
        a.shape[0],
        b.shape[1],
    ):
        raise ValueError(f"Gemm: C {c.shape} does not broadcast to {(a.shape[0], b.shape[1])}")
    if all_int(a, b, c):
        return _int_gemm(a, b, c, alpha, beta)
    dt = float_dtype(a, b, c)
    y = np.matmul(as_float(a, dt), as_float(b, dt))
    if alpha != 1.0:
        y = y * dt.type(alpha)
    if c is not None and beta != 0.0:
        y = y + dt.type(beta) * as_float(c, dt)
    return y


def _int_gemm(a, b, c, alpha, beta):
    for name, v in (("alpha", alpha), ("beta", beta)):
        if float(v) != int(v):
            raise ValueError(f"Gemm: {name}={v} on integer inputs would not give integers")
    y = exact_matmul(a, b, "Gemm")
    if alpha != 1:
        y = checked_mul(y, np.int64(int(alpha)), "Gemm")
    if c is not None and beta != 0:
        bc = checked_mul(widen(c), np.int64(int(beta)), "Gemm")
        y = checked_add(y, bc, "Gemm")
    return y
