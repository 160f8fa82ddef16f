"""Concat, Flatten, Reshape, Transpose, Gather, Squeeze, Unsqueeze, Identity, Shape
against onnxruntime. Pure data movement: results must match exactly, dtype included.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeq.engine.backends.reference.shape import gather, reshape, squeeze, unsqueeze
from tests.engine.backends.reference.ort_helpers import check_against_ort

I64 = np.int64


def _x(shape=(2, 3, 4), dtype=np.float32):
    return np.arange(int(np.prod(shape))).reshape(shape).astype(dtype)


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -3])
@pytest.mark.parametrize("dtype", [np.float32, np.int8, np.int64])
def test_concat_matches_ort(axis, dtype):
    a, b = _x((2, 3, 4), dtype), _x((2, 3, 4), dtype) + 1
    check_against_ort("Concat", [a, b, a], {"axis": axis}, opset=13)


@pytest.mark.parametrize("axis", [0, 1, 2, 3, 4, -1, -4])
def test_flatten_matches_ort(axis):
    check_against_ort("Flatten", [_x((2, 3, 4, 5))], {"axis": axis}, opset=13)


@pytest.mark.parametrize(
    "target,allowzero",
    [
        ([4, 6], 0),
        ([-1, 2], 0),
        ([0, -1], 0),
        ([2, 0, 4], 0),
        ([0, 3, 0], 0),
        ([3, 8], 1),
        ([24], 0),
        ([2, 3, 2, 2], 1),
    ],
)
def test_reshape_matches_ort(target, allowzero):
    check_against_ort("Reshape", [_x(), np.array(target, I64)], {"allowzero": allowzero}, opset=14)


def test_reshape_allowzero_keeps_a_literal_zero():
    x = np.zeros((0, 4), np.float32)
    assert reshape(x, np.array([4, 0], I64), allowzero=1).shape == (4, 0)
    assert reshape(x, np.array([0, 4], I64)).shape == (0, 4)
    with pytest.raises(ValueError):
        reshape(_x(), np.array([0, -1], I64), allowzero=1)


def test_reshape_accepts_the_old_shape_attribute():
    assert reshape(_x(), shape=[4, -1]).shape == (4, 6)


def test_reshape_rejects_impossible_shapes():
    with pytest.raises(ValueError):
        reshape(_x(), np.array([5, -1], I64))
    with pytest.raises(ValueError):
        reshape(_x(), np.array([-1, -1], I64))


@pytest.mark.parametrize("perm", [None, [0, 2, 1], [2, 0, 1]])
def test_transpose_matches_ort(perm):
    attrs = {} if perm is None else {"perm": perm}
    check_against_ort("Transpose", [_x(dtype=np.int32)], attrs, opset=13)


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize(
    "indices", [np.array([0, 2, -1], I64), np.array([[1, 0], [-2, 1]], np.int32), np.array(1, I64)]
)
def test_gather_matches_ort(axis, indices):
    check_against_ort("Gather", [_x((3, 3, 4)), indices], {"axis": axis}, opset=13)


def test_gather_index_out_of_range():
    with pytest.raises(ValueError, match="out of range"):
        gather(_x(), np.array([2], I64))


@pytest.mark.parametrize("axes", [None, [2], [0, -1], [3, 2]])
def test_squeeze_matches_ort_both_forms(axes):
    x = _x((1, 3, 1, 1))
    if axes is None:
        check_against_ort("Squeeze", [x], opset=11)
        check_against_ort("Squeeze", [x], opset=13)
    else:
        check_against_ort("Squeeze", [x], {"axes": axes}, opset=11)
        check_against_ort("Squeeze", [x, np.array(axes, I64)], opset=13)


def test_squeeze_refuses_a_non_unit_axis():
    with pytest.raises(ValueError):
        squeeze(_x((1, 3)), np.array([1], I64))


@pytest.mark.parametrize("axes", [[0], [1, 3], [-1], [0, 4, -2]])
def test_unsqueeze_matches_ort_both_forms(axes):
    x = _x((2, 3))
    check_against_ort("Unsqueeze", [x], {"axes": axes}, opset=11)
    check_against_ort("Unsqueeze", [x, np.array(axes, I64)], opset=13)


def test_unsqueeze_refuses_repeated_axes():
    with pytest.raises(ValueError):
        unsqueeze(_x((2, 3)), np.array([1, 1], I64))


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_identity_matches_ort(dtype):
    check_against_ort("Identity", [_x(dtype=dtype)], opset=13)


@pytest.mark.parametrize(
    "attrs", [{}, {"start": 1}, {"end": -1}, {"start": -2, "end": 10}, {"start": 3, "end": 1}]
)
def test_shape_matches_ort(attrs):
    check_against_ort("Shape", [_x((2, 3, 4, 5))], attrs, opset=15, out_dtypes=[I64])
