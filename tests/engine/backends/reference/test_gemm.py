"""Gemm and MatMul: floats and int32/int64 against onnxruntime, big integers against
Python integers (object arrays).

Float tolerance: rtol=1e-5, atol=1e-6 (float32), on dyadic inputs (k/16) so sums are
exact whatever the summation order. Integer results must be exact.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeq.engine.backends.reference.gemm import gemm, matmul
from edgeq.errors import IntegerOverflowError
from tests.engine.backends.reference.ort_helpers import check_against_ort, dyadic, run_ort

GEMM_CASES = [
    (dict(), None),
    (dict(transA=1), (4, 5)),
    (dict(transB=1, alpha=0.5, beta=2.0), (5,)),
    (dict(transA=1, transB=1, beta=0.25), (4, 1)),
    (dict(alpha=-1.5), (1,)),
]


@pytest.mark.parametrize("attrs,cshape", GEMM_CASES)
@pytest.mark.parametrize("opset", [11, 13, 17])
def test_gemm_float_matches_ort(attrs, cshape, opset):
    rng = np.random.default_rng(0)
    a = dyadic(rng, (6, 4) if attrs.get("transA") else (4, 6))
    b = dyadic(rng, (5, 6) if attrs.get("transB") else (6, 5))
    c = None if cshape is None else dyadic(rng, cshape)
    check_against_ort("Gemm", [a, b, c], attrs, opset=opset)


MATMUL_SHAPES = [
    ((3, 4), (4, 5)),
    ((2, 3, 4), (4, 5)),
    ((2, 1, 3, 4), (3, 4, 2)),
    ((4,), (4, 3)),
    ((2, 3, 4), (4,)),
    ((4,), (4,)),
]


@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES)
def test_matmul_float_matches_ort(sa, sb):
    rng = np.random.default_rng(1)
    check_against_ort("MatMul", [dyadic(rng, sa), dyadic(rng, sb)], opset=13)


@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES[:3])
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_matmul_int_matches_ort_exactly(sa, sb, dtype):
    rng = np.random.default_rng(2)
    a = rng.integers(-1000, 1000, sa).astype(dtype)
    b = rng.integers(-1000, 1000, sb).astype(dtype)
    got = matmul(a, b)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, run_ort("MatMul", [a, b], opset=13)[0])


def test_matmul_int_exact_beyond_float64():
    """Sums above 2^53 must be exact (the float64 fast path may not be used)."""
    rng = np.random.default_rng(3)
    a = rng.integers(2**29, 2**30, (3, 7)).astype(np.int64)
    b = rng.integers(2**29, 2**30, (7, 2)).astype(np.int64)
    expected = a.astype(object) @ b.astype(object)
    assert min(expected.ravel()) > 2**53
    np.testing.assert_array_equal(matmul(a, b).astype(object), expected)


def test_matmul_int_narrow_inputs_widen_without_wrapping():
    a = np.full((2, 300), 127, dtype=np.int8)
    b = np.full((300, 2), -128, dtype=np.int8)
    np.testing.assert_array_equal(matmul(a, b), np.full((2, 2), 300 * 127 * -128))


def test_matmul_int_overflow_raises():
    a = np.full((1, 4), 2**31, dtype=np.int64)
    b = np.full((4, 1), 2**31, dtype=np.int64)
    with pytest.raises(IntegerOverflowError):
        matmul(a, b)


def test_gemm_int_exact_with_integral_alpha_beta():
    rng = np.random.default_rng(4)
    a = rng.integers(-(2**20), 2**20, (5, 3)).astype(np.int32)
    b = rng.integers(-(2**20), 2**20, (4, 3)).astype(np.int32)
    c = rng.integers(-(2**40), 2**40, (4,)).astype(np.int64)
    y = gemm(a, b, c, alpha=3.0, beta=-2.0, transB=1)
    expected = 3 * (a.astype(object) @ b.T.astype(object)) - 2 * c.astype(object)
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y.astype(object), expected)


def test_gemm_int_rejects_fractional_alpha():
    a = np.ones((2, 2), np.int32)
    with pytest.raises(ValueError, match="alpha"):
        gemm(a, a, alpha=0.5)


def test_gemm_int_scaling_overflow_raises():
    a = np.full((1, 1), 2**31, dtype=np.int64)
    with pytest.raises(IntegerOverflowError):
        gemm(a, a, alpha=4.0)
