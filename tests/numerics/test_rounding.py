"""Rounding helpers against exact rational / Python-integer references."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from edgeq.errors import IntegerOverflowError, IntegralityError
from edgeq.numerics import floor_div_pow2, round_div_pow2, round_half_up, to_integers

I64 = st.integers(-(2**63), 2**63 - 1)
finite = st.floats(allow_nan=False, allow_infinity=False)


def exact_round_half_up(x: float) -> int:
    return math.floor(Fraction(x) + Fraction(1, 2))


def test_ties_go_up_not_to_even():
    # np.round would give 2, -2, 0: the project rule differs on purpose
    assert round_half_up(np.array([2.5, -2.5, 0.5, -0.5, 1.5])).tolist() == [3, -2, 1, 0, 2]


@given(finite)
@example(0.49999999999999994)  # 0.49999999999999994 + 0.5 rounds to 1.0 in float64
@example(2.0**52 + 1)  # x + 0.5 is a tie in float64 and rounds to even
@example(-(2.0**52) - 1)
def test_round_half_up_exact(x):
    # Python compares float and int exactly
    assert float(round_half_up(x)) == exact_round_half_up(x)


def test_round_half_up_keeps_non_finite():
    y = round_half_up(np.array([np.inf, -np.inf, np.nan]))
    assert y[0] == np.inf and y[1] == -np.inf and np.isnan(y[2])


@given(I64, st.integers(0, 63))
def test_floor_div_pow2_is_floor(x, d):
    # Python's >> on ints is floor division by 2^d for negatives too
    assert int(floor_div_pow2(np.int64(x), d)) == x // 2**d


@given(I64, st.integers(0, 63))
@example(2**63 - 1, 1)  # x + 2^(d-1) would wrap in int64
@example(-(2**63), 63)
def test_round_div_pow2_is_round_half_up(x, d):
    assert int(round_div_pow2(np.int64(x), d)) == math.floor(Fraction(x, 2**d) + Fraction(1, 2))


def test_round_div_pow2_worked_values():
    # -5/4 = -1.25 -> -1;  -6/4 = -1.5 -> -1 (tie up);  6/4 = 1.5 -> 2
    assert round_div_pow2(np.array([-5, -6, 6]), 2).tolist() == [-1, -1, 2]


def test_negative_shift_rejected():
    with pytest.raises(ValueError):
        floor_div_pow2(np.int64(4), -1)


# -- to_integers ------------------------------------------------------------------------------


@given(st.lists(st.integers(-(2**53), 2**53), min_size=1, max_size=10))
def test_to_integers_accepts_integral_floats(xs):
    a = np.array(xs, dtype=np.float64)
    out = to_integers(a)
    assert out.dtype == np.int64 and out.tolist() == xs


def test_to_integers_names_the_non_integer():
    with pytest.raises(IntegralityError, match=r"weights.*2\.5.*\(1,\)"):
        to_integers(np.array([1.0, 2.5]), "weights")


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_to_integers_rejects_non_finite(bad):
    with pytest.raises(IntegralityError):
        to_integers(np.array([bad]))


@pytest.mark.parametrize(
    "values, dtype",
    [([1e30], np.int64), ([2.0**63], np.int64), ([300.0], np.int8), ([-1], np.uint8)],
)
def test_to_integers_refuses_to_wrap(values, dtype):
    with pytest.raises(IntegerOverflowError):
        to_integers(np.array(values), dtype=dtype)


def test_to_integers_extreme_int64_fits():
    a = np.array([-(2.0**63)])
    assert to_integers(a).tolist() == [-(2**63)]
