"""BatchNormalization (inference) and LRN against onnxruntime.

Float tolerance: rtol=1e-5, atol=1e-6 (float32).
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeq.engine.backends.reference.norm import batch_norm, lrn
from tests.engine.backends.reference.ort_helpers import assert_matches, check_against_ort, run_ort


def _bn_inputs(shape, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    c = shape[1]
    x = rng.standard_normal(shape).astype(dtype)
    scale, bias, mean = (rng.standard_normal(c).astype(dtype) for _ in range(3))
    var = rng.uniform(0.1, 2.0, c).astype(dtype)
    return [x, scale, bias, mean, var]


@pytest.mark.parametrize("shape", [(2, 3), (2, 3, 5), (2, 4, 3, 5), (1, 2, 2, 3, 4)])
@pytest.mark.parametrize("attrs", [{}, {"epsilon": 1e-2, "momentum": 0.5}])
@pytest.mark.parametrize("opset", [9, 15])
def test_batch_norm_matches_ort(shape, attrs, opset):
    check_against_ort("BatchNormalization", _bn_inputs(shape), attrs, opset=opset)


def test_batch_norm_float64_and_integer_input():
    ins = _bn_inputs((2, 3, 4), dtype=np.float64)
    check_against_ort("BatchNormalization", ins, opset=15)
    x_int = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    y = batch_norm(x_int, *ins[1:])
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, batch_norm(x_int.astype(np.float64), *ins[1:]))


def test_batch_norm_output_has_the_type_of_x():
    """Opset 15 allows float64 statistics with a float32 input; Y is float32.
    (onnxruntime has no mixed-type kernel: compare with its all-float32 result.)"""
    x, *params = _bn_inputs((2, 3, 4))
    (expected,) = run_ort("BatchNormalization", [x, *params], opset=15)
    assert_matches(batch_norm(x, *[p.astype(np.float64) for p in params]), expected)


def test_batch_norm_training_mode_is_refused():
    with pytest.raises(ValueError, match="training_mode"):
        batch_norm(*_bn_inputs((2, 3)), training_mode=1)


@pytest.mark.parametrize(
    "attrs",
    [
        {"size": 1},
        {"size": 3},
        {"size": 7, "alpha": 0.01, "beta": 0.5, "bias": 2.0},
        {"size": 5, "alpha": 1e-3},
    ],
)
def test_lrn_matches_ort(attrs):
    x = (3 * np.random.default_rng(1).standard_normal((2, 6, 4, 5))).astype(np.float32)
    check_against_ort("LRN", [x], attrs, opset=13)


def test_lrn_window_by_hand():
    """An even size, which onnxruntime refuses. size=2: the window is [c, c+1]
    (floor((2-1)/2) = 0 channels before, ceil((2-1)/2) = 1 after)."""
    x = np.array([1.0, 2.0, 3.0], np.float64).reshape(1, 3, 1, 1)
    y = lrn(x, size=2, alpha=2.0, beta=1.0, bias=1.0)
    sq = np.array([1 + 4, 4 + 9, 9], np.float64)
    np.testing.assert_allclose(y.ravel(), x.ravel() / (1 + 2.0 / 2 * sq), rtol=1e-15)
