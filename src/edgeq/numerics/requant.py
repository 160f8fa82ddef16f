"""Requantisation (DESIGN §3.3): ``y = clip(floor((acc*mul + add) / 2^d), lo, hi)``.

Everything here is exact integer arithmetic in int64; overflow raises, it never wraps.

Choosing the shift ``d`` (the documented rule)
----------------------------------------------
A real multiplier ``m = eps_in * gamma / eps_out`` (scalar or per channel) becomes the
integer ``mul = round_half_up(m * 2^d)``. The rounding error of ``mul`` relative to ``m``
is at most ``2^-(d+1) / |m|``, so a larger ``d`` is more precise. :func:`choose_shift`
returns the **largest** ``d`` in ``[1, max_shift]`` such that

1. every ``|mul| <= 2^(mul_bits-1) - 1``  (``mul`` fits a signed ``mul_bits`` integer), and
2. ``acc_bound * max|mul| + max|add| <= 2^(acc_bits-1) - 1`` where ``acc_bound`` bounds
   ``|acc|`` (from the input range, the weights and the bias) and ``add`` is the integer
   offset at that shift; so ``acc*mul + add`` provably fits a signed ``acc_bits`` integer.

Defaults: ``mul_bits=32``, ``acc_bits=64`` (the reference backend); an export for a
32-bit target passes ``acc_bits=32``. With ``significant_bits=B`` the bounds are checked
on ``mul`` and ``add`` after rounding them to B significant bits (see
:func:`round_significant`): B=24 makes them exact in float32 carriers at full shift.
If no ``d >= 1`` satisfies both, the layer cannot be requantised at that width and
:class:`~edgeq.errors.IntegerOverflowError` says why.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeq.errors import IntegerOverflowError
from edgeq.numerics.rounding import round_half_up

INT64_MAX = 2**63 - 1


def _max_abs(a) -> int:
    a = np.asarray(a)
    return int(np.max(np.abs(a.astype(object)))) if a.size else 0


def check_fits(acc, mul, add, acc_bits: int = 64, where: str = "RequantShift") -> None:
    """Raise IntegerOverflowError unless every ``acc*mul + add`` fits signed ``acc_bits``."""
    limit = 2 ** (acc_bits - 1) - 1
    if _max_abs(acc) * _max_abs(mul) + _max_abs(add) <= limit:
        return
    # The cheap bound failed: check the elements exactly with Python integers.
    exact = np.asarray(acc).astype(object) * np.asarray(mul).astype(object)
    exact = exact + np.asarray(add).astype(object)
    worst = max((abs(v) for v in np.ravel(exact)), default=0)
    if worst > limit:
        raise IntegerOverflowError(
            f"{where}: |acc*mul + add| reaches {worst}, beyond the signed {acc_bits}-bit limit"
        )


def requant_shift(acc, mul, add, shift: int, lo: int, hi: int, where: str = "RequantShift"):
    """``clip(floor((acc*mul + add) / 2^shift), lo, hi)`` exactly, in int64.

    ``mul`` and ``add`` are integers broadcastable against ``acc`` (scalar or per channel).
    Rounding: floor (arithmetic right shift); round-half-up is obtained by including
    ``2^(shift-1)`` in ``add``. Overflow: raises IntegerOverflowError if any
    ``acc*mul + add`` leaves int64 -- never wraps.
    """
    if shift < 0:
        raise ValueError(f"{where}: shift must be >= 0, got {shift}")
    acc = np.asarray(acc, dtype=np.int64)
    mul = np.asarray(mul, dtype=np.int64)
    add = np.asarray(add, dtype=np.int64)
    check_fits(acc, mul, add, 64, where)
    y = np.right_shift(acc * mul + add, np.int64(shift))
    return np.clip(y, lo, hi)


@dataclass(frozen=True)
class RequantParams:
    """Integer requantisation parameters: ``clip(floor((acc*mul + add)/2^shift), lo, hi)``."""

    mul: np.ndarray
    add: np.ndarray
    shift: int
    lo: int
    hi: int


# float -> Python int, elementwise and exact (astype(int64) would wrap beyond 2^63)
_exact_int = np.frompyfunc(int, 1, 1)


def round_significant(v: int, bits: int) -> int:
    """``v`` rounded half up to ``bits`` significant bits: ``m·2^k`` with ``|m| <= 2^bits``.

    ``k = max(0, bitlen(|v|) - bits)``; ``m = floor(v/2^k + 1/2)`` (ties towards +inf, the
    project's rounding rule). Such an integer is exact in a binary float with a
    ``bits``-bit significand (24 for float32), so an integer graph carried in float32
    tensors keeps it exactly.
    """
    v = int(v)
    k = max(0, abs(v).bit_length() - bits)
    if k == 0:
        return v
    return ((v + (1 << (k - 1))) >> k) << k  # >> floors, so this is round half up


def _int_mul_add(real_mul, real_add, d: int, significant_bits: int | None = None):
    """``mul``, ``add`` at shift ``d`` as object arrays of Python ints (never wrapped)."""
    scale = float(2**d)
    mul = _exact_int(round_half_up(np.asarray(real_mul, np.float64) * scale))
    # round half up of the output: fold 2^(d-1) into add
    add = _exact_int(round_half_up(np.asarray(real_add, np.float64) * scale)) + (1 << (d - 1))
    if significant_bits is not None:
        fn = np.frompyfunc(lambda v: round_significant(v, significant_bits), 1, 1)
        mul, add = fn(mul), fn(add)
    return mul, add


def _as_int64(a, what: str) -> np.ndarray:
    if _max_abs(a) > INT64_MAX:
        raise IntegerOverflowError(f"{what} reaches {_max_abs(a)}, beyond int64")
    return np.asarray(a).astype(np.int64)


def choose_shift(
    real_mul,
    acc_bound: int,
    real_add=0.0,
    mul_bits: int = 32,
    acc_bits: int = 64,
    max_shift: int = 62,
    where: str = "requantisation",
    significant_bits: int | None = None,
) -> int:
    """The largest ``d`` in ``[1, max_shift]`` meeting the module docstring's two bounds."""
    mul_limit = 2 ** (mul_bits - 1) - 1
    acc_limit = 2 ** (acc_bits - 1) - 1
    best = None
    for d in range(1, max_shift + 1):
        mul, add = _int_mul_add(real_mul, real_add, d, significant_bits)
        if _max_abs(mul) > mul_limit or int(acc_bound) * _max_abs(mul) + _max_abs(add) > acc_limit:
            break
        best = d
    if best is None:
        raise IntegerOverflowError(
            f"{where}: no shift d >= 1 keeps mul within {mul_bits} bits and "
            f"acc*mul+add within {acc_bits} bits (|acc| <= {acc_bound}, "
            f"max|m| = {float(np.max(np.abs(real_mul))):.6g})"
        )
    return best


def make_requant(
    real_mul,
    real_add,
    acc_bound: int,
    lo: int,
    hi: int,
    shift: int | None = None,
    mul_bits: int = 32,
    acc_bits: int = 64,
    where: str = "requantisation",
    significant_bits: int | None = None,
) -> RequantParams:
    """Integer parameters approximating ``y = clip(round_half_up(acc*real_mul + real_add))``.

    ``real_add`` is in output units (already divided by eps_out). ``shift=None`` applies
    :func:`choose_shift`. ``significant_bits`` (e.g. 24) rounds ``mul`` and ``add`` to
    that many significant bits (:func:`round_significant`), so that float carriers hold
    them exactly while the shift, and so the relative precision, stays large.
    """
    if shift is None:
        shift = choose_shift(real_mul, acc_bound, real_add, mul_bits, acc_bits, where=where,
                             significant_bits=significant_bits)
    if shift < 1:
        raise ValueError(f"{where}: round-half-up requantisation needs shift >= 1")
    mul, add = _int_mul_add(real_mul, real_add, shift, significant_bits)
    mul, add = _as_int64(mul, f"{where}: mul"), _as_int64(add, f"{where}: add")
    return RequantParams(mul=mul, add=add, shift=int(shift), lo=int(lo), hi=int(hi))
