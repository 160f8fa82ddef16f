"""Cast and Constant against onnxruntime; results must match exactly, dtype included."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, numpy_helper

from edgeq.engine.backends.reference.tensor import cast, constant
from edgeq.errors import IntegerOverflowError
from tests.engine.backends.reference.ort_helpers import (
    assert_matches,
    check_against_ort,
    run_kernel,
    run_ort,
)

T = TensorProto
NP = {
    T.FLOAT: np.float32,
    T.DOUBLE: np.float64,
    T.FLOAT16: np.float16,
    T.INT8: np.int8,
    T.UINT8: np.uint8,
    T.INT32: np.int32,
    T.INT64: np.int64,
    T.BOOL: np.bool_,
}

CASTS = [
    (np.float32, T.INT32),
    (np.float32, T.UINT8),
    (np.float64, T.INT8),
    (np.int64, T.FLOAT),
    (np.int32, T.INT8),
    (np.uint8, T.INT64),
    (np.float32, T.BOOL),
    (np.bool_, T.FLOAT),
    (np.float32, T.FLOAT16),
    (np.float64, T.FLOAT),
    (np.int8, T.DOUBLE),
]


def _values(dtype):
    if dtype == np.bool_:
        return np.array([True, False, True])
    if np.issubdtype(dtype, np.floating):
        # halves and tenths: truncation toward zero differs from rounding and flooring
        return np.array([-100.7, -2.5, -0.3, 0.0, 0.5, 1.7, 99.9, 3.14159], dtype)
    return (
        np.array([-100, -3, 0, 1, 7, 100], dtype)
        if np.iinfo(dtype).min < 0
        else np.array([0, 1, 7, 100, 255], dtype)
    )


@pytest.mark.parametrize("src,to", CASTS)
def test_cast_matches_ort(src, to):
    x = _values(src)
    if NP[to] == np.uint8:
        x = np.abs(x)
    check_against_ort("Cast", [x], {"to": to}, opset=13, out_dtypes=[NP[to]])


@pytest.mark.parametrize(
    "x,to",
    [
        (np.array([128], np.int32), T.INT8),
        (np.array([-1], np.int64), T.UINT8),
        (np.array([3e9], np.float64), T.INT32),
        (np.array([np.nan], np.float32), T.INT64),
        (np.array([-0.5, 256.0], np.float32), T.UINT8),
    ],
)
def test_cast_out_of_range_raises_instead_of_wrapping(x, to):
    with pytest.raises(IntegerOverflowError):
        cast(x, to=to)


def test_cast_truncation_edge_stays_in_range():
    # -0.5 truncates to 0, which fits uint8: only the truncated value is range-checked
    np.testing.assert_array_equal(cast(np.array([-0.5, 255.9], np.float32), to=T.UINT8), [0, 255])


def test_cast_rejects_unsupported_types():
    with pytest.raises(ValueError, match="not supported"):
        cast(np.zeros(2, np.float32), to=T.BFLOAT16)
    with pytest.raises(ValueError, match="string"):
        cast(np.array(["1"], dtype=object), to=T.FLOAT)


@pytest.mark.parametrize(
    "attrs",
    [
        {"value_float": 1.5},
        {"value_floats": [1.0, -2.5]},
        {"value_int": 7},
        {"value_ints": [1, 2, 3]},
    ],
)
def test_constant_scalar_attributes_match_ort(attrs):
    key = next(iter(attrs))
    dtype = np.float32 if "float" in key else np.int64
    (expected,) = run_ort("Constant", [], attrs, opset=13, out_dtypes=[dtype])
    (got,) = run_kernel("Constant", [], attrs)
    assert_matches(got, expected)


@pytest.mark.parametrize(
    "value", [np.arange(6, dtype=np.int8).reshape(2, 3), np.array(2.25, np.float64)]
)
def test_constant_tensor_value_matches_ort(value):
    (expected,) = run_ort(
        "Constant",
        [],
        {"value": numpy_helper.from_array(value)},
        opset=13,
        out_dtypes=[value.dtype],
    )
    assert_matches(constant(value=value), expected)


def test_constant_needs_exactly_one_value():
    with pytest.raises(ValueError):
        constant()
    with pytest.raises(ValueError):
        constant(value_int=1, value_float=2.0)
    with pytest.raises(ValueError):
        constant(sparse_value=object())
