"""Broadcasting elementwise arithmetic: Add, Sub, Mul, Div, Floor."""

from __future__ import annotations

import numpy as np

from edgeq.engine.backends.reference._common import (
    all_int,
    as_float,
    checked_add,
    checked_mul,
    checked_sub,
    float_dtype,
    reject_unknown,
    widen,
)
from edgeq.engine.backends.reference.registry import register
from edgeq.errors import IntegerOverflowError


def _binary(op, a, b, exact, inexact, extra):
    reject_unknown(op, extra)
    if all_int(a, b):
        return _onnx_dtype_if_fits(exact(a, b, op), np.result_type(a.dtype, b.dtype))
    dt = float_dtype(a, b)
    return inexact(as_float(a, dt), as_float(b, dt))


def _onnx_dtype_if_fits(r: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The ONNX output dtype (the inputs' common type) when every exact value fits it;
    otherwise the exact int64 result: integer arithmetic widens, it never wraps."""
    if not np.issubdtype(dtype, np.integer) or dtype == r.dtype:
        return r
    info = np.iinfo(dtype)
    if r.size == 0 or (int(r.min()) >= info.min and int(r.max()) <= info.max):
        return r.astype(dtype)
    return r


@register("Add")
def add(a, b, **extra):
    """ONNX Add with NumPy broadcasting.

    Integer: exact in int64, returned in the inputs' common dtype when every value fits
    it, else widened to int64 (never wrapped); int64 overflow raises IntegerOverflowError
    (checked per element), never wraps. Float: IEEE in the float dtype, no integer rounding.
    """
    return _binary("Add", a, b, checked_add, np.add, extra)


@register("Sub")
def sub(a, b, **extra):
    """ONNX Sub with NumPy broadcasting.

    Integer: exact in int64, returned in the inputs' common dtype when every value fits
    it, else widened to int64 (never wrapped); int64 overflow raises IntegerOverflowError
    (checked per element), never wraps. Float: IEEE in the float dtype, no integer rounding.
    """
    return _binary("Sub", a, b, checked_sub, np.subtract, extra)


@register("Mul")
def mul(a, b, **extra):
    """ONNX Mul with NumPy broadcasting.

    Integer: exact in int64, returned in the inputs' common dtype when every value fits
    it, else widened to int64 (never wrapped); int64 overflow raises IntegerOverflowError
    (cheap bound, then exact per-element check), never wraps. Float: IEEE in the float
    dtype, no integer rounding.
    """
    return _binary("Mul", a, b, checked_mul, np.multiply, extra)


@register("Div")
def div(a, b, **extra):
    """ONNX Div with NumPy broadcasting.

    Integer: rounding truncates toward zero (ONNX/C semantics, not floor), result in the
    inputs' common integer dtype; division by zero raises ValueError and an overflowing
    quotient (INT_MIN / -1) raises IntegerOverflowError. Float: IEEE division in the
    float dtype (x/0 gives inf or nan), no integer rounding.
    """
    return _binary("Div", a, b, _int_div, np.divide, extra)


def _int_div(a, b, op):
    out_dtype = np.result_type(a.dtype, b.dtype)
    if not np.issubdtype(out_dtype, np.integer):  # uint64 with a signed type
        out_dtype = np.dtype(np.int64)
    a, b = widen(a, op), widen(b, op)
    if np.any(b == 0):
        raise ValueError(f"{op}: integer division by zero")
    if np.any((a == np.iinfo(np.int64).min) & (b == -1)):
        raise IntegerOverflowError(f"{op}: int64 overflow in -2^63 / -1")
    q = np.floor_divide(a, b)
    # NumPy floors; ONNX truncates: step towards zero where the quotient is inexact
    # and negative.
    q = q + ((np.remainder(a, b) != 0) & ((a < 0) != (b < 0)))
    info = np.iinfo(out_dtype)
    if q.size and (q.min() < info.min or q.max() > info.max):
        raise IntegerOverflowError(f"{op}: quotient does not fit {out_dtype}")
    return q.astype(out_dtype)


@register("Floor")
def floor(x, **extra):
    """ONNX Floor. Float: rounds toward -inf in the float dtype (exact, IEEE).

    Integer input is already integral: returned unchanged (no rounding, no overflow).
    """
    reject_unknown("Floor", extra)
    return x if np.issubdtype(x.dtype, np.integer) else np.floor(x)


def _unary_int_checked(op: str, x: np.ndarray, fn) -> np.ndarray:
    signed = np.issubdtype(x.dtype, np.signedinteger)
    if signed and x.size and int(x.min()) == np.iinfo(x.dtype).min:
        raise IntegerOverflowError(f"{op}: {x.dtype} minimum has no {x.dtype} negation")
    return fn(x)


@register("Abs")
def abs_(x, **extra):
    """ONNX Abs. Integer: exact, same dtype; the signed minimum (no positive counterpart)
    raises IntegerOverflowError instead of wrapping. Float: IEEE, exact, no rounding."""
    reject_unknown("Abs", extra)
    return _unary_int_checked("Abs", x, np.abs)


@register("Neg")
def neg(x, **extra):
    """ONNX Neg. Integer: exact, same dtype; the signed minimum raises IntegerOverflowError
    instead of wrapping. Float: IEEE, exact, no rounding."""
    reject_unknown("Neg", extra)
    return _unary_int_checked("Neg", x, np.negative)
