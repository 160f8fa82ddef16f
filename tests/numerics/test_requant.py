"""RequantShift maths (DESIGN §3.3) against exact Python-integer / Fraction references."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from edgeq.errors import IntegerOverflowError
from edgeq.numerics import check_fits, choose_shift, make_requant, requant_shift

INT64_MAX = 2**63 - 1


def ref_requant(acc: int, mul: int, add: int, d: int, lo: int, hi: int) -> int:
    # Python's // is floor division on unbounded integers: the specification itself
    return min(max((acc * mul + add) // 2**d, lo), hi)


def rhu(x: Fraction) -> int:
    return math.floor(x + Fraction(1, 2))


# -- requant_shift ------------------------------------------------------------------------


def test_worked_example_floor_not_truncation():
    # (-7*3 + 0) / 4 = -5.25: floor gives -6, C-style truncation would give -5
    assert requant_shift(np.array([-7]), 3, 0, 2, -128, 127).tolist() == [-6]
    # folding 2^(d-1) = 2 into add rounds half up: (-21 + 2) / 4 = -4.75 -> -5
    assert requant_shift(np.array([-7]), 3, 2, 2, -128, 127).tolist() == [-5]
    # ties go up: (-6 + 2)/4 = -1 = round_half_up(-1.5); (-10 + 2)/4 = -2 = rhu(-2.5)
    assert requant_shift(np.array([-6, -10]), 1, 2, 2, -128, 127).tolist() == [-1, -2]


@st.composite
def per_channel_case(draw):
    c = draw(st.integers(1, 4))
    length = draw(st.integers(1, 5))
    acc = draw(
        st.lists(st.integers(-(2**40), 2**40), min_size=2 * c * length, max_size=2 * c * length)
    )
    mul = draw(st.lists(st.integers(-(2**20), 2**20), min_size=c, max_size=c))
    add = draw(st.lists(st.integers(-(2**60), 2**60), min_size=c, max_size=c))
    d = draw(st.integers(0, 63))
    lo = draw(st.integers(-(2**40), 2**40))
    hi = draw(st.integers(lo, 2**41))
    return np.array(acc, np.int64).reshape(2, c, length), mul, add, d, lo, hi


@given(per_channel_case())
def test_per_channel_matches_exact_reference(case):
    acc, mul, add, d, lo, hi = case
    c = len(mul)
    # per output channel along axis 1, as a Conv output [N, C, L] would be
    y = requant_shift(acc, np.array(mul).reshape(c, 1), np.array(add).reshape(c, 1), d, lo, hi)
    assert y.shape == acc.shape
    for (n, ch, i), a in np.ndenumerate(acc):
        assert y[n, ch, i] == ref_requant(int(a), mul[ch], add[ch], d, lo, hi)
    assert np.all((y >= lo) & (y <= hi))


@given(
    st.lists(st.integers(-(2**31), 2**31), min_size=2, max_size=30),
    st.integers(0, 2**31),
    st.integers(-(2**40), 2**40),
    st.integers(0, 40),
    st.integers(-200, 0),
    st.integers(1, 200),
)
def test_monotone_in_accumulator(accs, mul, add, d, lo, hi):
    # mul >= 0 makes y non-decreasing in acc: larger inputs never give smaller outputs
    acc = np.sort(np.array(accs, np.int64))
    y = requant_shift(acc, mul, add, d, lo, hi)
    assert np.all(np.diff(y) >= 0)


@st.composite
def overflowing(draw):
    """int64 acc, mul, add whose exact acc*mul + add leaves int64."""
    acc = draw(st.integers(2**20, 2**63 - 1)) * draw(st.sampled_from([1, -1]))
    # |mul| > 2^64 / |acc| makes |acc*mul| > 2^64, so no int64 add (|add| <= 2^63) can
    # bring the sum back into range; |acc| >= 2^20 keeps that |mul| within int64
    low = 2**64 // abs(acc) + 1
    mul = draw(st.integers(low, 2**63 - 1)) * draw(st.sampled_from([1, -1]))
    add = draw(st.integers(-(2**63), 2**63 - 1))
    assert abs(acc * mul + add) > INT64_MAX  # the premise of the test
    return acc, mul, add


@given(overflowing())
@example((2**62, 2, 0))  # exactly 2^63
@example((-(2**62), 2, -1))  # -2^63 - 1
def test_overflow_raises_not_wraps(case):
    acc, mul, add = case
    with pytest.raises(IntegerOverflowError):
        requant_shift(np.array([acc], np.int64), mul, add, 0, -(2**62), 2**62)


def test_int64_boundary_still_exact():
    # acc*mul alone wraps in int64 but acc*mul + add = 2^63 - 1 fits: result must be exact
    y = requant_shift(np.array([2**62], np.int64), 2, -1, 61, -100, 100)
    assert y.tolist() == [(2**63 - 1) // 2**61]


def test_check_fits_respects_narrow_accumulator():
    # 2^16 (2^15 - 1) + 2^16 - 1 = 2^31 - 1 exactly fits; 2^16 2^15 = 2^31 does not
    check_fits(np.array([2**16]), 2**15 - 1, 2**16 - 1, acc_bits=32)
    with pytest.raises(IntegerOverflowError, match="32-bit"):
        check_fits(np.array([2**16]), 2**15, 0, acc_bits=32)


def test_negative_shift_rejected():
    with pytest.raises(ValueError):
        requant_shift(np.array([1]), 1, 0, -1, 0, 1)


# -- choose_shift ---------------------------------------------------------------------------


def int_params(m: list[float], a: list[float], d: int) -> tuple[list[int], list[int]]:
    """mul = round_half_up(m 2^d), add = round_half_up(a 2^d) + 2^(d-1), exactly."""
    mul = [rhu(Fraction(x) * 2**d) for x in m]
    add = [rhu(Fraction(x) * 2**d) + 2 ** (d - 1) for x in a]
    return mul, add


def bounds_hold(m, a, d, acc_bound, mul_bits, acc_bits) -> bool:
    mul, add = int_params(m, a, d)
    max_mul = max(abs(x) for x in mul)
    fits_mul = max_mul <= 2 ** (mul_bits - 1) - 1
    fits_acc = acc_bound * max_mul + max(abs(x) for x in add) <= 2 ** (acc_bits - 1) - 1
    return fits_mul and fits_acc


real = st.floats(1e-7, 1e3).flatmap(lambda x: st.sampled_from([x, -x]))
shift_case = st.tuples(
    st.lists(real, min_size=1, max_size=4),
    st.lists(st.floats(-1e4, 1e4), min_size=1, max_size=4),
    st.integers(1, 2**40),
    st.sampled_from([8, 16, 32]),
    st.sampled_from([32, 64]),
)


@given(shift_case)
@example(([2.0**-24], [1024.0], 1, 32, 64))  # add passes 2^63 at d = 54: must not wrap
def test_choose_shift_is_the_largest_valid(case):
    m, a, acc_bound, mul_bits, acc_bits = case
    try:
        d = choose_shift(np.array(m), acc_bound, np.array(a), mul_bits, acc_bits)
    except IntegerOverflowError:
        # only allowed when even d = 1 breaks a bound
        assert not bounds_hold(m, a, 1, acc_bound, mul_bits, acc_bits)
        return
    assert 1 <= d <= 62
    assert bounds_hold(m, a, d, acc_bound, mul_bits, acc_bits)
    assert d == 62 or not bounds_hold(m, a, d + 1, acc_bound, mul_bits, acc_bits)


def test_choose_shift_max_shift_cap():
    # a tiny multiplier never hits the bounds before the cap
    assert choose_shift(1e-12, 1, max_shift=20) == 20


def test_choose_shift_impossible_raises():
    # |acc| up to 2^40 times m = 2^30 cannot fit 32 bits at any shift
    with pytest.raises(IntegerOverflowError, match="conv3"):
        choose_shift(2.0**30, 2**40, acc_bits=32, where="conv3")


# -- make_requant ------------------------------------------------------------------------------

make_case = st.tuples(
    st.lists(real, min_size=1, max_size=3),
    st.lists(st.floats(-300, 300), min_size=1, max_size=3),
    st.integers(1, 2**20),
    st.integers(0, 9),
)


@given(make_case, st.data())
def test_make_requant_error_bound(case, data):
    m, a, acc_bound, seed = case
    c = min(len(m), len(a))
    m, a = m[:c], a[:c]
    lo, hi = -128, 127
    p = make_requant(np.array(m), np.array(a), acc_bound, lo, hi)
    assert p.mul.dtype == np.int64 and p.add.dtype == np.int64
    accs = data.draw(st.lists(st.integers(-acc_bound, acc_bound), min_size=1, max_size=8))
    for ch in range(c):
        for acc in accs:
            y = int(requant_shift(np.array([acc]), p.mul[ch], p.add[ch], p.shift, lo, hi)[0])
            # |mul - m 2^d| <= 1/2 and |add - a 2^d - 2^(d-1)| <= 1/2, so the value inside
            # the floor is within delta = (|acc| + 1) / 2^(d+1) of acc*m + a + 1/2
            t = acc * Fraction(m[ch]) + Fraction(a[ch]) + Fraction(1, 2)
            delta = Fraction(abs(acc) + 1, 2 ** (p.shift + 1))
            low = min(max(math.floor(t - delta), lo), hi)
            high = min(max(math.floor(t + delta), lo), hi)
            assert low <= y <= high


def test_make_requant_exact_multiplier_rounds_half_up():
    # m = 1/4 is exact in binary: y must equal round_half_up(acc/4) with ties up
    p = make_requant(0.25, 0.0, 1000, -128, 127)
    acc = np.array([-6, -5, -2, 2, 6, 10])
    y = requant_shift(acc, p.mul, p.add, p.shift, p.lo, p.hi)
    assert y.tolist() == [-1, -1, 0, 1, 2, 3]  # -1.5->-1, -1.25->-1, -0.5->0, 0.5->1, ...


def test_make_requant_needs_shift_at_least_one():
    with pytest.raises(ValueError):
        make_requant(0.5, 0.0, 10, 0, 255, shift=0)


def test_make_requant_explicit_shift_too_large_raises():
    # mul = 2^63 does not fit int64: an error, not a wrapped negative multiplier
    with pytest.raises(IntegerOverflowError):
        make_requant(1.0, 0.0, 1, 0, 255, shift=63)


# -- significant-bit rounding (float32 carriers) -------------------------------------------
@given(st.integers(-(2**62), 2**62), st.integers(1, 40))
def test_round_significant_is_nearest_with_few_bits(v, bits):
    from edgeq.numerics import round_significant

    r = round_significant(v, bits)
    k = max(0, abs(v).bit_length() - bits)
    # a multiple of 2^k with `bits` significant bits (a carry may reach exactly 2^bits)
    assert r % (1 << k) == 0 and abs(r) >> k <= (1 << bits)
    assert abs(r - v) <= (1 << k) // 2  # the nearest multiple of 2^k
    if k and (v % (1 << k)) == (1 << (k - 1)):
        assert r > v  # a tie goes up, also for negative values
    if bits <= 24 and abs(r) < 2**100:
        assert int(np.float32(r)) == r  # exact in float32


def test_significant_bits_keep_full_shift_and_float32_exactness():
    m = np.array([0.000123456789, 0.0009876])
    a = np.array([-12.3456, 3.5])
    p = make_requant(m, a, acc_bound=2**20, lo=0, hi=255, significant_bits=24)
    assert p.shift > 30  # the shift is not lowered to make the constants small
    for v in np.concatenate([p.mul, p.add]):
        assert int(np.float32(v)) == int(v)
    rel = np.abs(p.mul / 2.0**p.shift - m) / m
    assert np.all(rel < 2.0**-23)


def test_round_significant_ties_go_up():
    from edgeq.numerics import round_significant

    # -5 = -2.5 * 2^1 -> -2 * 2 = -4 (half up), 5 = 2.5 * 2 -> 3 * 2 = 6
    assert round_significant(-5, 2) == -4 and round_significant(5, 2) == 6
    assert round_significant(-7, 2) == -6 and round_significant(1023, 3) == 1024  # -3.5 -> -3
