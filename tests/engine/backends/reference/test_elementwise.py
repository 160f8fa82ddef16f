"""Add, Sub, Mul, Div, Floor against onnxruntime; integer overflow against Python ints.

Float tolerance: rtol=1e-5, atol=1e-6 (float32). Integer results must be exact. The
kernels return int64 for integer Add/Sub/Mul (exact, never wrapped), so int32 results
are compared by value with onnxruntime on inputs where int32 does not overflow.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeq.engine.backends.reference.elementwise import abs_, add, div, floor, mul, neg, sub
from edgeq.errors import IntegerOverflowError
from tests.engine.backends.reference.ort_helpers import check_against_ort, run_ort

SHAPES = [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((2, 1, 4), (3, 1)), ((), (2, 2))]
KERNELS = {"Add": add, "Sub": sub, "Mul": mul, "Div": div, "Abs": abs_, "Neg": neg}


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize("sa,sb", SHAPES)
def test_float_matches_ort(op, sa, sb):
    rng = np.random.default_rng(0)
    a = rng.standard_normal(sa).astype(np.float32)
    b = (rng.standard_normal(sb) + 3).astype(np.float32)
    check_against_ort(op, [a, b], opset=14)


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_int_matches_ort_by_value(op, dtype):
    rng = np.random.default_rng(1)
    a = rng.integers(-5000, 5000, (4, 5)).astype(dtype)
    b = rng.integers(-50, 50, (5,)).astype(dtype)
    b[b == 0] = 7
    expected = run_ort(op, [a, b], opset=14)[0]
    got = KERNELS[op](a, b)
    assert got.dtype == dtype  # exact values fit the ONNX output type, so it is kept
    np.testing.assert_array_equal(got, expected)


def test_int_div_truncates_toward_zero():
    a = np.array([7, -7, 7, -7, 6, -6, 0], dtype=np.int32)
    b = np.array([2, 2, -2, -2, 3, 3, -5], dtype=np.int32)
    np.testing.assert_array_equal(div(a, b), [3, -3, -3, 3, 2, -2, 0])


def test_int_div_by_zero_and_overflow():
    with pytest.raises(ValueError, match="zero"):
        div(np.array([1], np.int32), np.array([0], np.int32))
    with pytest.raises(IntegerOverflowError):
        div(np.array([-(2**31)], np.int32), np.array([-1], np.int32))


def test_uint8_add_does_not_wrap():
    a = np.array([200, 255], np.uint8)
    b = np.array([100, 255], np.uint8)
    np.testing.assert_array_equal(add(a, b), [300, 510])
    np.testing.assert_array_equal(sub(b, a), [-100, 0])
    np.testing.assert_array_equal(mul(a, b), [20000, 65025])


def _exact(op, a, b):
    return {"Add": a + b, "Sub": a - b, "Mul": a * b}[op]


# Small, 32-bit and full-range int64 values, so both outcomes occur for every op.
int64 = st.one_of(
    st.integers(-100, 100), st.integers(-(2**32), 2**32), st.integers(-(2**63), 2**63 - 1)
)


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul"])
@settings(max_examples=80, deadline=None)
@given(pairs=st.lists(st.tuples(int64, int64), min_size=1, max_size=4))
def test_int64_exact_or_overflow_error(op, pairs):
    """Either the exact Python-integer result, or IntegerOverflowError if it leaves int64."""
    a = np.array([p[0] for p in pairs], dtype=np.int64)
    b = np.array([p[1] for p in pairs], dtype=np.int64)
    exact = [_exact(op, x, y) for x, y in pairs]
    if all(-(2**63) <= v < 2**63 for v in exact):
        np.testing.assert_array_equal(KERNELS[op](a, b).astype(object), exact)
    else:
        with pytest.raises(IntegerOverflowError):
            KERNELS[op](a, b)


def test_overflow_boundaries_are_exact():
    big = np.array([2**63 - 2], np.int64)
    assert add(big, np.array([1], np.int64))[0] == 2**63 - 1
    with pytest.raises(IntegerOverflowError):
        add(big, np.array([2], np.int64))
    assert mul(np.array([2**62], np.int64), np.array([-2], np.int64))[0] == -(2**63)
    with pytest.raises(IntegerOverflowError):
        mul(np.array([2**62], np.int64), np.array([2], np.int64))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_floor_float_matches_ort(dtype):
    x = (np.random.default_rng(2).standard_normal((3, 5)) * 10).astype(dtype)
    x[0, :3] = [-2.0, -0.5, 2.5]
    check_against_ort("Floor", [x], opset=13)


def test_floor_keeps_integers():
    x = np.array([-3, 0, 5], np.int16)
    y = floor(x)
    assert y.dtype == np.int16
    np.testing.assert_array_equal(y, x)


def test_mixed_int_float_computes_in_the_float_dtype():
    y = add(np.array([1, 2], np.int8), np.array([0.5, 0.25], np.float32))
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, [1.5, 2.25])


@pytest.mark.parametrize("op", ["Abs", "Neg"])
@pytest.mark.parametrize("dtype", [np.float32, np.int8, np.int32, np.int64])
def test_abs_neg_match_ort(op, dtype):
    x = np.random.default_rng(3).integers(-100, 100, (3, 7)).astype(dtype)
    if np.issubdtype(np.dtype(dtype), np.floating):
        x = x / np.float32(7.0)
    expected = run_ort(op, [x], opset=14)[0]
    got = KERNELS[op](x)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("op", ["Abs", "Neg"])
def test_abs_neg_refuse_to_wrap(op):
    with pytest.raises(IntegerOverflowError):
        KERNELS[op](np.array([-128, 5], np.int8))
