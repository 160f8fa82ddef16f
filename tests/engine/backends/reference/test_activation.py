"""Relu, LeakyRelu, Sigmoid, Tanh, Clip, Softmax against onnxruntime.

Float tolerance: rtol=1e-5, atol=1e-6 (float32). Integer results must be exact.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeq.engine.backends.reference.activation import clip, relu, sigmoid, softmax
from tests.engine.backends.reference.ort_helpers import check_against_ort, run_kernel


def _x(shape=(2, 3, 4), scale=3.0, seed=0, dtype=np.float32):
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(dtype)


@pytest.mark.parametrize(
    "op,attrs",
    [("Relu", {}), ("LeakyRelu", {}), ("LeakyRelu", {"alpha": 0.2}), ("Sigmoid", {}), ("Tanh", {})],
)
@pytest.mark.parametrize("opset", [6, 13])
def test_unary_float_matches_ort(op, attrs, opset):
    check_against_ort(op, [_x()], attrs, opset=opset)


def test_sigmoid_extremes_are_finite_and_exact_in_float32():
    x = np.array([-200.0, -90.0, 0.0, 90.0, 200.0], np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = sigmoid(x)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y[2:], [0.5, 1.0, 1.0])
    assert 0 <= y[0] < 1e-30


def test_relu_keeps_integers():
    y = relu(np.array([-128, -1, 0, 5, 127], np.int8))
    assert y.dtype == np.int8
    np.testing.assert_array_equal(y, [0, 0, 0, 5, 127])


@pytest.mark.parametrize("op", ["Sigmoid", "Tanh", "LeakyRelu"])
def test_float_ops_read_integers_as_float64(op):
    x = np.array([-3, 0, 2], np.int8)
    (got,) = run_kernel(op, [x])
    (ref,) = run_kernel(op, [x.astype(np.float64)])
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, ref)


# -- Clip -------------------------------------------------------------------------------
@pytest.mark.parametrize("attrs", [{}, {"min": -1.0}, {"max": 0.5}, {"min": -1.0, "max": 2.0}])
def test_clip_attribute_form_matches_ort(attrs):
    check_against_ort("Clip", [_x()], attrs, opset=6)


@pytest.mark.parametrize(
    "lo,hi", [(None, None), (-1.0, None), (None, 0.5), (-1.0, 2.0), (1.0, -1.0)]
)
@pytest.mark.parametrize("opset", [11, 13])
def test_clip_input_form_matches_ort(lo, hi, opset):
    f = lambda v: None if v is None else np.array(v, np.float32)  # noqa: E731
    check_against_ort("Clip", [_x(), f(lo), f(hi)], opset=opset)


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8])
def test_clip_int_matches_ort(dtype):
    x = np.random.default_rng(1).integers(0 if dtype == np.uint8 else -100, 100, (3, 7))
    x = x.astype(dtype)
    check_against_ort("Clip", [x, np.array(3, dtype), np.array(50, dtype)], opset=13)


def test_clip_int_with_float_attribute_bounds_rounds_inward():
    x = np.array([-128, -3, -2, 0, 3, 4, 127], np.int8)
    y = clip(x, min=-2.5, max=3.5)
    assert y.dtype == np.int8
    np.testing.assert_array_equal(y, [-2, -2, -2, 0, 3, 3, 3])
    # bounds wider than the dtype do not wrap
    np.testing.assert_array_equal(clip(x, min=-1000.0, max=1e9), x)


# -- Softmax ----------------------------------------------------------------------------
@pytest.mark.parametrize("axis", [None, 0, 1, 2, -1])
@pytest.mark.parametrize("opset", [11, 13])
def test_softmax_matches_ort(axis, opset):
    attrs = {} if axis is None else {"axis": axis}
    check_against_ort("Softmax", [_x((2, 3, 4, 5))], attrs, opset=opset)


def test_softmax_opset_changes_the_default_axis():
    x = _x((2, 3, 4))
    old = softmax(x, opset=11)  # over the flattened trailing block (axes 1 and 2)
    new = softmax(x, opset=13)  # over the last axis
    np.testing.assert_allclose(old.sum(axis=(1, 2)), 1, rtol=1e-5)
    np.testing.assert_allclose(new.sum(axis=-1), 1, rtol=1e-5)
    assert not np.allclose(old, new)


def test_softmax_large_inputs_do_not_overflow():
    x = np.array([[1000.0, 1000.0, -1000.0]], np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = softmax(x)
    np.testing.assert_array_equal(y, [[0.5, 0.5, 0.0]])
