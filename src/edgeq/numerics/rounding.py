"""Rounding helpers. The project-wide rule is round half up: ``floor(x + 1/2)``.

Ties go towards +inf (2.5 -> 3, -2.5 -> -2), unlike NumPy's ``np.round`` (half to even).
This is the rule of the training quantisers (DESIGN §3.4) and of RequantShift when
``2^(d-1)`` is folded into its ``add`` (DESIGN §3.3).
"""

from __future__ import annotations

import numpy as np


def round_half_up(x: np.ndarray | float) -> np.ndarray:
    """``floor(x + 0.5)`` elementwise, as float, exact for every finite float64.

    Computing ``x + 0.5`` in floating point would itself round (0.49999999999999994 -> 1,
    2^52 + 1 -> 2^52 + 2); ``x - floor(x)`` is always exact, so compare that with 1/2.
    """
    x = np.asarray(x, dtype=np.float64)
    f = np.floor(x)
    with np.errstate(invalid="ignore"):  # inf - inf: the where keeps f = inf anyway
        return np.where(x - f >= 0.5, f + 1.0, f)


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
    # floor((x + 2^(d-1)) / 2^d) == (x >> d) + bit (d-1) of x, without the addition
    # that would wrap for x near the int64 maximum.
    half_bit = np.bitwise_and(floor_div_pow2(x, d - 1), np.int64(1))
    return floor_div_pow2(x, d) + half_bit


def to_integers(x: np.ndarray, what: str = "tensor", dtype=np.int64) -> np.ndarray:
    """Convert a float array that must hold integers; raise IntegralityError if it does not."""
    from edgeq.errors import IntegerOverflowError, IntegralityError

    a = np.asarray(x)
    if not np.issubdtype(a.dtype, np.integer):
        if not np.all(np.isfinite(a)):
            raise IntegralityError(f"{what} holds non-finite values where integers are required")
        frac = a != np.floor(a)
        if np.any(frac):
            idx = tuple(int(i) for i in np.argwhere(frac)[0])
            raise IntegralityError(
                f"{what} holds the non-integer {a[idx]!r} at index {idx} "
                "where integers are required"
            )
    if a.size:
        # astype would wrap out-of-range values silently (1e30 -> INT64_MIN). Compare as
        # Python numbers: info.max + 1 is a power of two, exact as a float.
        info = np.iinfo(dtype)
        lo, hi = a.min().item(), a.max().item()
        if lo < info.min or hi >= info.max + 1:
            bad = lo if lo < info.min else hi
            raise IntegerOverflowError(f"{what} holds {bad!r}, outside {np.dtype(dtype).name}")
    return a.astype(dtype)
