"""Helpers shared by the reference kernels: dtype rules, exact int64 arithmetic, attrs.

Integer rule (DESIGN §3): integer operands are widened to int64 explicitly and the
result is checked, never wrapped. Float rule: a float operand keeps its dtype; integer
operands of a float computation are read as real values (float64, or the float
operand's dtype when one is present).
"""

from __future__ import annotations

import numpy as np

from edgeq.errors import IntegerOverflowError

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
# Every integer of magnitude below 2^53 is a float64, so is every sum/product of them
# that stays below 2^53: float64 BLAS on such integers is exact.
FLOAT64_EXACT = 2**53

# Attributes that annotate a node (QuantLab/DORY bit widths) without changing what it
# computes. Kernels ignore these; any other attribute they do not know is an error,
# so that e.g. a harmonised-adder `Add` is never silently run as a plain add.
ANNOTATION_ATTRS = frozenset({"weight_bits", "bias_bits", "out_bits", "mult_bits", "add_bits"})


def reject_unknown(op: str, extra: dict) -> None:
    """Raise ValueError naming attributes of ``op`` that the kernel does not implement."""
    unknown = sorted(set(extra) - ANNOTATION_ATTRS)
    if unknown:
        raise ValueError(f"{op}: attribute(s) {unknown} not supported by the reference kernel")


def is_int(a: np.ndarray) -> bool:
    """True for integer dtypes (bool is not arithmetic here)."""
    return np.issubdtype(a.dtype, np.integer)


def all_int(*arrays) -> bool:
    return all(is_int(a) for a in arrays if a is not None)


def float_dtype(*arrays) -> np.dtype:
    """Dtype of a float computation: the widest float operand, float64 if none is float."""
    floats = [a.dtype for a in arrays if a is not None and np.issubdtype(a.dtype, np.floating)]
    return np.result_type(*floats) if floats else np.dtype(np.float64)


def as_float(a: np.ndarray, dtype) -> np.ndarray:
    return np.asarray(a).astype(dtype, copy=False)


def max_abs(a: np.ndarray) -> int:
    """``max |a|`` of an integer array as a Python int (no int64 wrap at INT64_MIN)."""
    if a.size == 0:
        return 0
    return max(abs(int(a.min())), abs(int(a.max())))


def widen(a: np.ndarray, what: str = "operand") -> np.ndarray:
    """An integer array as int64, refusing uint64 values that int64 cannot hold."""
    if a.dtype == np.uint64 and a.size and int(a.max()) > INT64_MAX:
        raise IntegerOverflowError(f"{what}: uint64 value {int(a.max())} does not fit int64")
    return a.astype(np.int64, copy=False)


def check_bound(bound: int, op: str, detail: str) -> None:
    """Raise IntegerOverflowError when a static bound on |result| exceeds int64."""
    if bound > INT64_MAX:
        raise IntegerOverflowError(
            f"{op}: int64 overflow possible, |result| <= {bound} ({detail}) exceeds 2^63-1"
        )


def checked_add(a: np.ndarray, b: np.ndarray, op: str = "Add") -> np.ndarray:
    """``a + b`` in int64, exact; IntegerOverflowError where the true sum leaves int64."""
    a, b = widen(a, op), widen(b, op)
    with np.errstate(over="ignore"):
        r = a + b
    # Two's complement: overflow iff both operands differ in sign from the result.
    if np.any(((a ^ r) & (b ^ r)) < 0):
        raise IntegerOverflowError(f"{op}: int64 overflow in the exact sum")
    return r


def checked_sub(a: np.ndarray, b: np.ndarray, op: str = "Sub") -> np.ndarray:
    """``a - b`` in int64, exact; IntegerOverflowError where the true difference leaves int64."""
    a, b = widen(a, op), widen(b, op)
    with np.errstate(over="ignore"):
        r = a - b
    if np.any(((a ^ b) & (a ^ r)) < 0):
        raise IntegerOverflowError(f"{op}: int64 overflow in the exact difference")
    return r


def checked_mul(a: np.ndarray, b: np.ndarray, op: str = "Mul") -> np.ndarray:
    """``a * b`` in int64, exact; IntegerOverflowError where the true product leaves int64."""
    a, b = widen(a, op), widen(b, op)
    if max_abs(a) * max_abs(b) > INT64_MAX:
        # The cheap bound fails: check the products that come near 2^63 exactly.
        approx = np.abs(a.astype(np.float64) * b.astype(np.float64))
        near = np.broadcast_to(approx >= 2.0**62, approx.shape)
        if np.any(near):
            aa = np.broadcast_to(a, approx.shape)[near].astype(object)
            bb = np.broadcast_to(b, approx.shape)[near].astype(object)
            if any(not INT64_MIN <= int(v) <= INT64_MAX for v in aa * bb):
                raise IntegerOverflowError(f"{op}: int64 overflow in the exact product")
    with np.errstate(over="ignore"):
        return a * b


def exact_dtype(k: int, max_a: int, max_b: int, op: str):
    """Compute dtype for an exact integer dot product of length ``k``.

    The bound ``k * max|a| * max|b|`` on every partial sum must fit int64, else
    IntegerOverflowError. Below 2^53 every partial sum is an exactly representable
    float64, so float64 BLAS is exact and fast: return float64; otherwise int64.
    """
    bound = k * max_a * max_b
    check_bound(bound, op, f"K={k}, max|a|={max_a}, max|b|={max_b}")
    return np.float64 if bound < FLOAT64_EXACT else np.int64


def exact_matmul(a: np.ndarray, b: np.ndarray, op: str) -> np.ndarray:
    """``a @ b`` of integer arrays, exact, returned as int64 (NumPy matmul broadcasting).

    Rounding: none, the result is exact. Overflow: raises IntegerOverflowError unless the
    bound ``K * max|a| * max|b|`` fits int64 (float64 BLAS fast path below 2^53).
    """
    a, b = widen(a, op), widen(b, op)
    dt = exact_dtype(a.shape[-1], max_abs(a), max_abs(b), op)
    return np.matmul(a.astype(dt), b.astype(dt)).astype(np.int64, copy=False)


def norm_axis(axis: int, rank: int, op: str) -> int:
    """A possibly negative axis as an index in ``[0, rank)``; ValueError when out of range."""
    if not -rank <= axis < rank:
        raise ValueError(f"{op}: axis {axis} out of range for rank {rank}")
    return axis % rank
