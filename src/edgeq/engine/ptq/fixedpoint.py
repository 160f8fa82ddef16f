"""Fixed point [IL.FL]: an integer tensor at ε = 2^−FL (DESIGN §3.8, §8).

A B-bit signed fixed-point tensor holds integers in [−2^(B−1), 2^(B−1) − 1] (unsigned:
[0, 2^B − 1]) at ε = 2^−FL; IL = B − FL is its integer length (sign bit included).
Quantisation rounds half up, as the engine's input rule and the training side do
(DESIGN §3.4): ``q = clip(floor(v·2^FL + 1/2), lo, hi)``.
"""

from __future__ import annotations

import math

import numpy as np

from edgeq.errors import ConfigError
from edgeq.numerics import IntRange

MIN_BITS, MAX_BITS = 2, 16
FL_SEARCH = (8, 20)  # QUENN's default FL search range


def check_bits(bits, where: str = "bits") -> int:
    """``bits`` as an int in [2, 16]; ConfigError naming ``where`` otherwise."""
    if isinstance(bits, bool) or not isinstance(bits, int | np.integer):
        raise ConfigError(f"{where}: bit width must be an integer, got {bits!r}")
    if not MIN_BITS <= bits <= MAX_BITS:
        raise ConfigError(f"{where}: bit width {bits} is outside {MIN_BITS}–{MAX_BITS}")
    return int(bits)


def int_range(bits: int, signed: bool) -> IntRange:
    return IntRange.from_bits(bits, signed)


def quantise(v: np.ndarray, fl, bits: int, signed: bool, axis: int | None = None) -> np.ndarray:
    """Integers of ``v`` at ε = 2^−fl (``fl`` an int, or one per channel along ``axis``)."""
    scale = np.exp2(_shaped(fl, np.ndim(v), axis))
    q = np.floor(np.asarray(v, dtype=np.float64) * scale + 0.5)
    rng = int_range(bits, signed)
    return np.clip(q, rng.lo, rng.hi).astype(np.int64)


def fake_quantise(v: np.ndarray, fl, bits: int, signed: bool, axis: int | None = None):
    """``quantise(v)·2^−fl`` in float64 (exact: the scale is a power of two)."""
    return quantise(v, fl, bits, signed, axis) * np.exp2(-_shaped(fl, np.ndim(v), axis))


def _shaped(fl, ndim: int, axis: int | None) -> np.ndarray:
    fl = np.asarray(fl, dtype=np.float64)
    if fl.ndim == 0:
        return fl
    shape = [1] * ndim
    shape[axis] = fl.size
    return fl.reshape(shape)


def integer_length(max_abs: float, signed: bool) -> int:
    """IL = ⌈log2 max|v|⌉, plus the sign bit for a signed tensor (0 for an all-zero one)."""
    if not max_abs > 0:
        return 1 if signed else 0
    return math.ceil(math.log2(max_abs)) + int(signed)


def initial_fl(max_abs: float, bits: int, signed: bool) -> int:
    """The dynamic fixed-point start: FL = B − IL."""
    return bits - integer_length(max_abs, signed)


def fl_candidates(fl0: int, search: tuple[int, int] = FL_SEARCH) -> range:
    """The FLs the search tries: the QUENN range, stretched to include FL0 − 1 … FL0 + 1.

    QUENN searches FL in 8–20, which suits weights below 1; activations of a larger
    magnitude need a smaller FL, so the range always reaches the analytic start.
    """
    lo, hi = search
    return range(min(lo, fl0 - 1), max(hi, fl0 + 1) + 1)


def search_fl(error_of, fl0: int, search: tuple[int, int] = FL_SEARCH,
              patience: int | None = None) -> tuple[int, float]:
    """The FL minimising ``error_of(fl)`` over :func:`fl_candidates`, tried in increasing
    order (ties: the smaller FL, which covers the wider range); returns ``(fl, error)``.

    With ``patience``, the search stops once the error has stayed above the best for that
    many FLs in a row: typically the error falls while a larger FL refines the grid and
    rises once it clips; outliers can make it rise and fall again, so this is a heuristic
    for the expensive searches only (``None``, the default, tries every candidate).
    """
    best, worse = None, 0
    for fl in fl_candidates(fl0, search):
        err = float(error_of(fl))
        if best is None or err < best[1]:
            best, worse = (fl, err), 0
        else:
            worse += 1
            if patience is not None and worse >= patience and err > best[1]:
                break
    return best
