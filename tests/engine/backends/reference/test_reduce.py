"""ReduceSum and ReduceMean against onnxruntime, both the attribute and the input form of
``axes``. Float tolerance: rtol=1e-5, atol=1e-6 (float32); integer sums must be exact.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeq.engine.backends.reference.reduce import reduce_mean, reduce_sum
from edgeq.errors import IntegerOverflowError
from tests.engine.backends.reference.ort_helpers import check_against_ort, dyadic, run_ort

AXES = [None, [1], [-1, 2], [0, 2, 3]]


@pytest.mark.parametrize("axes", AXES)
@pytest.mark.parametrize("keepdims", [0, 1])
def test_reduce_mean_matches_ort_both_forms(axes, keepdims):
    x = dyadic(np.random.default_rng(0), (2, 3, 4, 5))
    attrs = {"keepdims": keepdims}
    check_against_ort("ReduceMean", [x], dict(attrs, **({"axes": axes} if axes else {})), opset=13)
    axes_in = None if axes is None else np.array(axes, np.int64)
    check_against_ort("ReduceMean", [x, axes_in], attrs, opset=18)


@pytest.mark.parametrize("axes", AXES)
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.int64])
def test_reduce_sum_matches_ort(axes, dtype):
    x = np.random.default_rng(1).integers(-1000, 1000, (2, 3, 4, 5)).astype(dtype)
    axes_in = None if axes is None else np.array(axes, np.int64)
    if dtype == np.float32:
        check_against_ort("ReduceSum", [x, axes_in], opset=13)
        return
    # integers: the kernel widens to int64, onnxruntime keeps the input type; these
    # values cannot overflow int32, so compare by value
    got = reduce_sum(x, axes_in)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, run_ort("ReduceSum", [x, axes_in], opset=13)[0])


def test_noop_with_empty_axes_returns_the_input():
    x = np.ones((2, 3), np.float32)
    assert reduce_sum(x, np.zeros(0, np.int64), noop_with_empty_axes=1) is x
    assert reduce_mean(x, noop_with_empty_axes=1) is x


def test_integer_reductions_are_exact_and_checked():
    x = np.full((4, 3), 2**60 + 1, np.int64)
    assert reduce_sum(x, np.array([0], np.int64), keepdims=0).tolist() == [2**62 + 4] * 3
    assert reduce_mean(np.array([[1, 2], [3, 5]], np.int8)).tolist() == [[2.75]]
    with pytest.raises(IntegerOverflowError):
        reduce_sum(np.full((8,), 2**61, np.int64))
