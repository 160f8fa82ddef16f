"""MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool and the exact window sum.

Compared with onnxruntime; float tolerance rtol=1e-5, atol=1e-6 (float32). Integer
results (max pool, window sums) must be exact.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edgeq.engine.backends.reference.pool import (
    average_pool,
    global_average_pool,
    max_pool,
    max_pool_with_indices,
    window_sum,
)
from edgeq.errors import IntegerOverflowError
from tests.engine.backends.reference.ort_helpers import (
    assert_matches,
    check_against_ort,
    dyadic,
    run_ort,
)

CASES_2D = [
    dict(kernel_shape=[3, 3]),
    dict(kernel_shape=[2, 2], strides=[2, 2]),
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    dict(kernel_shape=[3, 2], strides=[2, 1], pads=[1, 0, 2, 1]),
    dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
    dict(kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1),
    dict(kernel_shape=[3, 2], strides=[3, 2], pads=[0, 1, 2, 0], ceil_mode=1),
    dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
    dict(kernel_shape=[2, 3], strides=[2, 2], auto_pad="SAME_LOWER"),
    dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="VALID"),
]
DILATED_2D = [
    dict(kernel_shape=[2, 2], dilations=[2, 2]),
    dict(kernel_shape=[2, 3], dilations=[2, 1], strides=[2, 2], pads=[1, 1, 1, 1]),
    dict(kernel_shape=[2, 2], dilations=[2, 2], strides=[2, 2], ceil_mode=1),
]
CASES_1D_3D = [
    ((1, 2, 11), dict(kernel_shape=[3], strides=[2], pads=[1, 1])),
    ((1, 2, 11), dict(kernel_shape=[4], strides=[3], ceil_mode=1)),
    ((1, 2, 10), dict(kernel_shape=[3], auto_pad="SAME_UPPER", strides=[3])),
    ((1, 2, 5, 6, 7), dict(kernel_shape=[2, 3, 2], strides=[2, 2, 1], pads=[1, 0, 1, 0, 1, 0])),
    ((1, 2, 5, 6, 7), dict(kernel_shape=[3, 3, 3], strides=[2, 2, 2], ceil_mode=1)),
]


def _x(shape=(2, 3, 8, 9), seed=0):
    return dyadic(np.random.default_rng(seed), shape)


@pytest.mark.parametrize("attrs", CASES_2D + DILATED_2D)
def test_max_pool_float_matches_ort(attrs):
    check_against_ort("MaxPool", [_x()], attrs, opset=12)


@pytest.mark.parametrize("shape,attrs", CASES_1D_3D)
def test_pools_1d_3d_match_ort(shape, attrs):
    check_against_ort("MaxPool", [_x(shape)], attrs, opset=12)
    for cip in (0, 1):
        check_against_ort("AveragePool", [_x(shape)], dict(attrs, count_include_pad=cip), opset=19)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
@pytest.mark.parametrize("attrs", CASES_2D[2:6])
def test_max_pool_int_matches_ort(dtype, attrs):
    info = np.iinfo(dtype)
    x = np.random.default_rng(1).integers(info.min, info.max + 1, (2, 3, 8, 9)).astype(dtype)
    check_against_ort("MaxPool", [x], attrs, opset=12)


@pytest.mark.parametrize("attrs", CASES_2D + DILATED_2D)
@pytest.mark.parametrize("count_include_pad", [0, 1])
def test_average_pool_float_matches_ort(attrs, count_include_pad):
    attrs = dict(attrs, count_include_pad=count_include_pad)
    check_against_ort("AveragePool", [_x()], attrs, opset=19)


@pytest.mark.parametrize("opset", [7, 11])
def test_average_pool_older_opsets_match_ort(opset):
    attrs = dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1)
    check_against_ort("AveragePool", [_x()], attrs, opset=opset)


def _naive_window_sum(x, k, s):
    n, c, h, w = x.shape
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    out = np.zeros((n, c, oh, ow), dtype=object)
    for i, j, r, q in itertools.product(range(n), range(c), range(oh), range(ow)):
        out[i, j, r, q] = sum(int(v) for v in x[i, j, r * s : r * s + k, q * s : q * s + k].ravel())
    return out


def test_window_sum_is_exact_int64():
    x = np.random.default_rng(3).integers(-(2**59), 2**59, (1, 2, 5, 5)).astype(np.int64)
    sums, counts = window_sum(x, kernel_shape=[3, 3], strides=[2, 2])
    assert sums.dtype == np.int64
    np.testing.assert_array_equal(sums.astype(object), _naive_window_sum(x, 3, 2))
    np.testing.assert_array_equal(counts, np.full((1, 1, 2, 2), 9))


def test_average_pool_int_input_is_float64_of_the_exact_sum():
    """onnxruntime has no float64 AveragePool: compare with exact sums divided once."""
    x = np.random.default_rng(2).integers(-(2**40), 2**40, (1, 2, 7, 7)).astype(np.int64)
    y = average_pool(x, kernel_shape=[3, 3], strides=[2, 2])
    expected = np.vectorize(lambda v: float(v) / 9.0, otypes=[np.float64])(
        _naive_window_sum(x, 3, 2)
    )
    assert_matches(y, expected, rtol=0, atol=0)


def test_window_sum_overflow_raises():
    x = np.full((1, 1, 4, 4), 2**61, dtype=np.int64)
    with pytest.raises(IntegerOverflowError):
        window_sum(x, kernel_shape=[2, 2])


@pytest.mark.parametrize(
    "attrs",
    [
        dict(kernel_shape=[2, 2], strides=[2, 2]),
        dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], storage_order=1),
        dict(kernel_shape=[3, 2], strides=[2, 1], pads=[1, 0, 1, 1], storage_order=0),
    ],
)
def test_max_pool_indices_match_ort(attrs):
    x = np.random.default_rng(4).standard_normal((2, 3, 6, 7)).astype(np.float32)
    expected = run_ort(
        "MaxPool", [x], attrs, opset=12, out_dtypes=[np.float32, np.int64], n_outputs=2
    )
    got = max_pool_with_indices(x, **attrs)
    assert_matches(got[0], expected[0])
    assert_matches(got[1], expected[1])


@pytest.mark.parametrize("shape", [(2, 3, 5), (2, 3, 4, 5), (1, 2, 3, 4, 5)])
@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
def test_global_pools_match_ort(shape, op):
    check_against_ort(op, [_x(shape)], opset=13)


def test_global_average_pool_int_exact_sum():
    x = np.full((1, 2, 3, 3), 2**55 + 1, dtype=np.int64)
    y = global_average_pool(x)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, np.float64(2**55 + 1))


def test_pool_rejects_missing_kernel_and_bad_auto_pad():
    with pytest.raises(ValueError, match="kernel_shape"):
        max_pool(_x())
    with pytest.raises(ValueError, match="auto_pad"):
        max_pool(_x(), kernel_shape=[2, 2], auto_pad="SAME")
