"""Rounding helpers. The project-wide rule is round half up: ``floor(x + 1/2)``.

Ties go towards +inf (2.5 -> 3, -2.5 -> -2), unlike NumPy's ``np.round`` (half to even).
This is the rule of the training quantisers (DESIGN §3.4) and of RequantShift when
``2^(d-1)`` is folded into its ``add`` (DESIGN §3.3).
"""

from __future__ import annotations

import numpy as np


def round_half_up(x: np.ndarray | float) -> np.ndarray:
    """``floor(x + 0.5)`` elementwise, as float (exact for |x| < 2^52)."""
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5)


def floor_div_pow2(x: np.ndarray, d: int) -> np.ndarray:
    """``floor(x / 2^d)`` for int64 ``x``: an arithmetic right shift, exact."""
    if d < 0:
        raise ValueError(f"shift must be >= 0, got {d}")
    return np.right_shift(np.asarray(x, dtype=np.int64), np.int64(d))


def round_div_pow2(x: np.ndarray, d: int) -> np.ndarray:
    """``floor(x / 2^d + 1/2)`` for int64 ``x`` (round half up), exact; d=0 is identity."""
    x = np.asarray(x, dtype=np.int64)
    if d == 0:
        return x
    return floor_div_pow2(x + np.int64(1 << (d - 1)), d)


def to_integers(x: np.ndarray, what: str = "tensor", dtype=np.int64) -> np.ndarray:
    """Convert a float array that must hold integers; raise IntegralityError if it does not."""
    from edgeq.errors import IntegralityError

    a = np.asarray(x)
    if np.issubdtype(a.dtype, np.integer):
        return a.astype(dtype)
    if not np.all(np.isfinite(a)):
        raise IntegralityError(f"{what} holds non-finite values where integers are required")
    frac = a != np.floor(a)
    if np.any(frac):
        idx = tuple(int(i) for i in np.argwhere(frac)[0])
        raise IntegralityError(
            f"{what} holds the non-integer {a[idx]!r} at index {idx} where integers are required"
        )
    return a.astype(dtype)
