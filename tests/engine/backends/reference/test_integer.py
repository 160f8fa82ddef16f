"""RequantShift and HarmonisedAdd against an independent Python-integer reference.

The reference uses ``fractions.Fraction`` and ``math.floor`` element by element, so it
shares no code with the kernels (which use int64 NumPy and an arithmetic right shift).
Results must be exact.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeq.engine.backends.reference.integer import harmonised_add, requant
from edgeq.errors import IntegerOverflowError, IntegralityError


def rq_ref(v: int, mul: int, add: int, shift: int) -> int:
    return math.floor(Fraction(v * mul + add, 2**shift))


def clip_ref(v: int, lo: int, hi: int) -> int:
    return min(max(v, lo), hi)


def requant_ref(x, mul, add, shift, lo, hi):
    """Elementwise with broadcasting done by NumPy on object arrays of Python ints."""
    xb, mb, ab = np.broadcast_arrays(
        x.astype(object), np.asarray(mul, dtype=object), np.asarray(add, dtype=object)
    )
    out = [
        clip_ref(rq_ref(int(v), int(m), int(a), shift), lo, hi)
        for v, m, a in zip(xb.ravel(), mb.ravel(), ab.ravel(), strict=True)
    ]
    return np.array(out, dtype=object).reshape(xb.shape)


# -- RequantShift -----------------------------------------------------------------------
def test_negative_accumulators_floor_not_truncate():
    x = np.array([-1, -2, -3, -5, 5, 3], np.int32)
    y = requant(x, np.array(1), np.array(0), shift=1, lo=-128, hi=127)
    np.testing.assert_array_equal(y, [-1, -1, -2, -3, 2, 1])  # trunc would give 0, -1, ...


def test_round_half_up_by_folding_into_add():
    x = np.array([-3, -1, 1, 3, 5], np.int64)  # x/2 = -1.5, -0.5, 0.5, 1.5, 2.5
    y = requant(x, np.array(1), np.array(1), shift=1, lo=-100, hi=100)
    np.testing.assert_array_equal(y, [-1, 0, 1, 2, 3])


@pytest.mark.parametrize(
    "lo,hi,dtype",
    [
        (0, 255, np.uint8),
        (-128, 127, np.int8),
        (-1, 1, np.int8),
        (0, 65535, np.uint16),
        (-(2**40), 2**40, np.int64),
    ],
)
def test_per_channel_and_clip_and_dtype(lo, hi, dtype):
    rng = np.random.default_rng(0)
    x = rng.integers(-(2**30), 2**30, (2, 4, 3, 3)).astype(np.int64)
    mul = rng.integers(1, 2**20, (1, 4, 1, 1)).astype(np.int64)
    add = rng.integers(-(2**30), 2**30, (1, 4, 1, 1)).astype(np.int64)
    y = requant(x, mul, add, shift=24, lo=lo, hi=hi)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y.astype(object), requant_ref(x, mul, add, 24, lo, hi))


small = st.integers(-(2**31), 2**31)


@settings(max_examples=100, deadline=None)
@given(
    xs=st.lists(st.integers(-(2**40), 2**40), min_size=3, max_size=3),
    muls=st.lists(st.integers(-(2**20), 2**20), min_size=3, max_size=3),
    add=small,
    shift=st.integers(0, 40),
    lo=st.integers(-(2**20), 0),
    width=st.integers(1, 2**21),
)
def test_requant_matches_fraction_reference(xs, muls, add, shift, lo, width):
    x = np.array([xs, xs[::-1]], np.int64)  # (2, 3): mul is per column
    mul = np.array(muls, np.int64)
    y = requant(x, mul, np.array(add), shift=shift, lo=lo, hi=lo + width)
    np.testing.assert_array_equal(y.astype(object), requant_ref(x, mul, add, shift, lo, lo + width))


def test_requant_overflow_raises():
    x = np.array([2**40], np.int64)
    with pytest.raises(IntegerOverflowError):
        requant(x, np.array(2**30), np.array(0), shift=8, lo=0, hi=255)


def test_requant_accepts_float_carried_integers_only():
    y = requant(np.array([6.0, -6.0], np.float32), np.array(1), np.array(0), shift=2, lo=-9, hi=9)
    np.testing.assert_array_equal(y, [1, -2])
    with pytest.raises(IntegralityError):
        requant(np.array([0.5]), np.array(1), np.array(0), shift=0, lo=0, hi=1)


def test_requant_rejects_params_that_expand_the_input():
    with pytest.raises(ValueError, match="broadcast"):
        requant(
            np.zeros((2, 3), np.int64),
            np.ones((4, 1, 1), np.int64),
            np.array(0),
            shift=0,
            lo=0,
            hi=1,
        )


def test_requant_needs_bounds():
    with pytest.raises(ValueError, match="lo"):
        requant(np.zeros(2, np.int64), np.array(1), np.array(0), shift=0)


# -- HarmonisedAdd ----------------------------------------------------------------------
def harmonised_ref(xs, in_mul, in_add, in_shift, in_rq, out, lo, hi):
    out_mul, out_add, out_shift, out_rq = out
    xb = np.broadcast_arrays(*[x.astype(object) for x in xs])
    result = []
    for vals in zip(*[x.ravel() for x in xb], strict=True):
        s = 0
        for i, v in enumerate(vals):
            s += rq_ref(int(v), in_mul[i], in_add[i], in_shift[i]) if in_rq[i] else int(v)
        if out_rq:
            s = rq_ref(s, out_mul, out_add, out_shift)
        result.append(clip_ref(s, lo, hi))
    return np.array(result, dtype=object).reshape(xb[0].shape)


@settings(max_examples=60, deadline=None)
@given(
    a=st.lists(st.integers(-128, 255), min_size=4, max_size=4),
    b=st.lists(st.integers(-128, 255), min_size=4, max_size=4),
    in_mul=st.lists(st.integers(-(2**20), 2**20), min_size=2, max_size=2),
    in_add=st.lists(small, min_size=2, max_size=2),
    in_shift=st.lists(st.integers(0, 24), min_size=2, max_size=2),
    in_rq=st.lists(st.integers(0, 1), min_size=2, max_size=2),
    out=st.tuples(st.integers(-(2**16), 2**16), small, st.integers(0, 20), st.integers(0, 1)),
    signed=st.booleans(),
)
def test_harmonised_add_matches_reference(a, b, in_mul, in_add, in_shift, in_rq, out, signed):
    lo, hi = (-128, 127) if signed else (0, 255)
    x1 = np.array(a, np.int16).reshape(2, 2)
    x2 = np.array(b, np.int16).reshape(2, 2)
    y = harmonised_add(
        x1,
        x2,
        in_mul=in_mul,
        in_add=in_add,
        in_shift=in_shift,
        in_rq=in_rq,
        out_mul=out[0],
        out_add=out[1],
        out_shift=out[2],
        out_rq=out[3],
        lo=lo,
        hi=hi,
    )
    assert y.dtype == (np.int8 if signed else np.uint8)
    expected = harmonised_ref([x1, x2], in_mul, in_add, in_shift, in_rq, out, lo, hi)
    np.testing.assert_array_equal(y.astype(object), expected)


def test_harmonised_add_dory_example_by_hand():
    """The Dronet adder: in1 (245015, 262144, 19), in2 (265342, 262144, 19), out plain."""
    x1, x2 = np.array([[0, 100, 255]], np.uint8), np.array([[255, 100, 0]], np.uint8)
    y = harmonised_add(
        x1,
        x2,
        in_mul=[245015, 265342],
        in_add=[262144, 262144],
        in_shift=[19, 19],
        in_rq=[1, 1],
        lo=0,
        hi=255,
    )
    by_hand = [
        (0 * 245015 + 262144) // 2**19 + (255 * 265342 + 262144) // 2**19,
        (100 * 245015 + 262144) // 2**19 + (100 * 265342 + 262144) // 2**19,
        (255 * 245015 + 262144) // 2**19 + (0 * 265342 + 262144) // 2**19,
    ]
    np.testing.assert_array_equal(y, [[min(v, 255) for v in by_hand]])


def test_harmonised_add_broadcasts_and_accepts_three_inputs():
    x = [np.full((2, 1), 5, np.int8), np.arange(3, dtype=np.int8), np.array(-1, np.int8)]
    y = harmonised_add(*x, lo=-128, hi=127)
    np.testing.assert_array_equal(y, np.full((2, 1), 5) + np.arange(3) - 1)


def test_harmonised_add_overflow_raises():
    x = np.array([2**62], np.int64)
    with pytest.raises(IntegerOverflowError):
        harmonised_add(x, x, lo=0, hi=1)
    with pytest.raises(IntegerOverflowError):
        harmonised_add(
            x, x, in_mul=[4, 1], in_add=[0, 0], in_shift=[0, 0], in_rq=[1, 0], lo=0, hi=1
        )


def test_harmonised_add_checks_per_input_lists():
    with pytest.raises(ValueError, match="per-input"):
        harmonised_add(np.zeros(2, np.int8), np.zeros(2, np.int8), in_mul=[1], lo=0, hi=1)
