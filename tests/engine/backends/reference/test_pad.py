"""Pad against onnxruntime: every mode, negative pads, the axes input, the old attribute
form. Pure data movement: results must match exactly, dtype included.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeq.engine.backends.reference.pad import pad
from tests.engine.backends.reference.ort_helpers import check_against_ort

I64 = np.int64


def _x(shape=(2, 3, 4), dtype=np.float32):
    return (np.arange(int(np.prod(shape))).reshape(shape) - 7).astype(dtype)


PADS = [[0, 1, 2, 1, 0, 1], [1, 0, 0, 0, 2, 2], [0, 0, -1, 0, 1, -2]]


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect"])
@pytest.mark.parametrize("pads", PADS)
@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_pad_matches_ort(mode, pads, dtype):
    value = np.array(2.5 if dtype == np.float32 else -9, dtype)
    inputs = [_x(dtype=dtype), np.array(pads, I64), value if mode == "constant" else None]
    check_against_ort("Pad", inputs, {"mode": mode}, opset=13)


@pytest.mark.parametrize("pads", PADS[:2])
def test_pad_wrap_matches_ort(pads):
    check_against_ort("Pad", [_x(), np.array(pads, I64)], {"mode": "wrap"}, opset=19)


@pytest.mark.parametrize("axes", [[1], [-1, 1], [2, 0]])
@pytest.mark.parametrize("mode", ["constant", "reflect"])
def test_pad_axes_input_matches_ort(axes, mode):
    pads = np.array([1, 1, 2][: len(axes)] * 2, I64)
    inputs = [_x(), pads, None, np.array(axes, I64)]
    check_against_ort("Pad", inputs, {"mode": mode}, opset=18)


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect"])
def test_pad_attribute_form_matches_ort(mode):
    attrs = {"mode": mode, "pads": [0, 1, 1, 0, 2, 1]}
    if mode == "constant":
        attrs["value"] = 1.5
    check_against_ort("Pad", [_x()], attrs, opset=10)


def test_pad_defaults_to_zero_fill():
    y = pad(np.ones((2,), np.int8), np.array([1, 1], I64))
    assert y.dtype == np.int8
    np.testing.assert_array_equal(y, [0, 1, 1, 0])


def test_pad_rejects_unknown_mode_and_bad_pads():
    with pytest.raises(ValueError, match="mode"):
        pad(_x(), np.zeros(6, I64), mode="symmetric")
    with pytest.raises(ValueError, match="pads"):
        pad(_x(), np.zeros(4, I64))
    # onnxruntime refuses reflecting further than the axis allows; so do we
    with pytest.raises(ValueError, match="reflect"):
        pad(_x(), np.array([2, 0, 0, 0, 0, 0], I64), mode="reflect")
