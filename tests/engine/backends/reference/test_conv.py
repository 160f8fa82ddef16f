"""Conv kernel: float32 against onnxruntime, integers against a naive Python-int loop.

Float tolerance: rtol=1e-5, atol=1e-6 (float32). Float inputs are dyadic (k/16), so
every product and partial sum is exact in float32 and the comparison does not depend on
summation order. Integer results must be exact (onnxruntime has no int64 Conv).
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from edgeq.engine.backends.reference.conv import conv
from edgeq.errors import IntegerOverflowError
from tests.engine.backends.reference.ort_helpers import check_against_ort, dyadic

CASES_2D = [
    dict(),
    dict(pads=[1, 1, 1, 1]),
    dict(pads=[0, 2, 1, 0], strides=[2, 1]),
    dict(strides=[2, 2], dilations=[2, 1]),
    dict(group=2),
    dict(group=4, pads=[1, 1, 1, 1]),  # depthwise
    dict(auto_pad="SAME_UPPER", strides=[2, 2]),
    dict(auto_pad="SAME_LOWER", strides=[2, 3]),
    dict(auto_pad="VALID", strides=[2, 2], dilations=[1, 2]),
]


@pytest.mark.parametrize("attrs", CASES_2D)
@pytest.mark.parametrize("bias", [False, True])
def test_conv2d_float_matches_ort(attrs, bias):
    rng = np.random.default_rng(0)
    group = attrs.get("group", 1)
    x = dyadic(rng, (2, 4, 9, 8))
    w = dyadic(rng, (6 if group < 4 else 4, 4 // group, 3, 2))
    b = dyadic(rng, (w.shape[0],)) if bias else None
    check_against_ort("Conv", [x, w, b], attrs)


@pytest.mark.parametrize(
    "xs,ks,attrs",
    [
        ((11,), (3,), dict(pads=[2, 1], strides=[2])),
        ((11,), (4,), dict(auto_pad="SAME_LOWER", strides=[3])),
        ((11,), (2,), dict(dilations=[3], strides=[2], pads=[0, 3])),
        ((5, 6, 4), (3, 2, 2), dict(pads=[1, 0, 1, 1, 1, 0], strides=[2, 1, 1])),
        ((5, 6, 4), (2, 3, 1), dict(auto_pad="SAME_UPPER", group=3)),
    ],
)
def test_conv_1d_3d_float_matches_ort(xs, ks, attrs):
    rng = np.random.default_rng(1)
    group = attrs.get("group", 1)
    x = dyadic(rng, (1, 3) + xs)
    w = dyadic(rng, (3, 3 // group) + ks)
    check_against_ort("Conv", [x, w, dyadic(rng, (3,))], attrs)


def naive_conv(x, w, b, strides, pads, dilations, group):
    """Direct 2-D convolution on Python numbers (object arrays), one output at a time."""
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    xp = np.zeros((n, c, h + pads[0] + pads[2], wd + pads[1] + pads[3]), dtype=object)
    xp[:, :, pads[0] : pads[0] + h, pads[1] : pads[1] + wd] = x.astype(object)
    oh = (xp.shape[2] - (kh - 1) * dilations[0] - 1) // strides[0] + 1
    ow = (xp.shape[3] - (kw - 1) * dilations[1] - 1) // strides[1] + 1
    y = np.zeros((n, m, oh, ow), dtype=object)
    w = w.astype(object)
    for i, o, r, s in itertools.product(range(n), range(m), range(oh), range(ow)):
        gi = o // (m // group)
        acc = 0 if b is None else b.astype(object)[o]
        for ci, p, q in itertools.product(range(cg), range(kh), range(kw)):
            acc += (
                xp[
                    i,
                    gi * cg + ci,
                    r * strides[0] + p * dilations[0],
                    s * strides[1] + q * dilations[1],
                ]
                * w[o, ci, p, q]
            )
        y[i, o, r, s] = acc
    return y


INT_CASES = [
    ((1, 1), (0, 0, 0, 0), (1, 1), 1),
    ((2, 1), (1, 2, 0, 1), (1, 2), 1),
    ((1, 2), (1, 1, 1, 1), (2, 1), 2),
    ((2, 2), (1, 1, 1, 1), (1, 1), 4),
]


@pytest.mark.parametrize("strides,pads,dilations,group", INT_CASES)
@pytest.mark.parametrize("xdt,wdt", [(np.uint8, np.int8), (np.int8, np.int8), (np.int16, np.int32)])
def test_conv_int_exact(strides, pads, dilations, group, xdt, wdt):
    rng = np.random.default_rng(3)
    ix, iw = np.iinfo(xdt), np.iinfo(wdt)
    x = rng.integers(max(ix.min, -1000), min(ix.max, 1000) + 1, (2, 4, 7, 6)).astype(xdt)
    w = rng.integers(max(iw.min, -1000), min(iw.max, 1000) + 1, (4, 4 // group, 3, 2)).astype(wdt)
    b = rng.integers(-(2**31), 2**31, 4).astype(np.int32)
    y = conv(
        x, w, b, strides=list(strides), pads=list(pads), dilations=list(dilations), group=group
    )
    assert y.dtype == np.int64
    np.testing.assert_array_equal(
        y.astype(object), naive_conv(x, w, b, strides, pads, dilations, group)
    )


def test_conv_float64_keeps_dtype():
    """onnxruntime has no float64 Conv: dyadic inputs make the naive loop exact."""
    rng = np.random.default_rng(2)
    x = dyadic(rng, (1, 2, 5, 5), np.float64)
    w = dyadic(rng, (3, 2, 3, 3), np.float64)
    y = conv(x, w, pads=[1, 1, 1, 1], strides=[2, 1])
    assert y.dtype == np.float64
    expected = naive_conv(x, w, None, (2, 1), (1, 1, 1, 1), (1, 1), 1).astype(np.float64)
    np.testing.assert_array_equal(y, expected)


def test_conv_int_exact_beyond_float64():
    """Partial sums above 2^53 (not exact in float64) must still be exact."""
    rng = np.random.default_rng(4)
    x = rng.integers(2**27, 2**28, (1, 3, 4, 4)).astype(np.int64)
    w = rng.integers(-(2**28), 2**28, (2, 3, 3, 3)).astype(np.int64)
    y = conv(x, w, pads=[1, 1, 1, 1])
    expected = naive_conv(x, w, None, (1, 1), (1, 1, 1, 1), (1, 1), 1)
    assert max(abs(v) for v in expected.ravel()) > 2**53
    np.testing.assert_array_equal(y.astype(object), expected)


def test_conv_int_overflow_raises():
    x = np.full((1, 8, 3, 3), 2**40, dtype=np.int64)
    w = np.full((1, 8, 3, 3), 2**22, dtype=np.int64)
    with pytest.raises(IntegerOverflowError):
        conv(x, w)


def test_conv_bias_add_overflow_raises():
    x = np.ones((1, 1, 1, 1), dtype=np.int64)
    w = np.ones((1, 1, 1, 1), dtype=np.int64)
    b = np.array([2**63 - 1], dtype=np.int64)
    with pytest.raises(IntegerOverflowError):
        conv(x, w, b)


def test_conv_rejects_bad_group_and_auto_pad():
    x = np.zeros((1, 4, 5, 5), np.float32)
    with pytest.raises(ValueError, match="group"):
        conv(x, np.zeros((3, 2, 3, 3), np.float32), group=2)
    with pytest.raises(ValueError, match="auto_pad"):
        conv(x, np.zeros((2, 4, 3, 3), np.float32), auto_pad="SAME")


MOBILENET_V1 = (
    [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)]
    + [(512, 1)] * 5
    + [(1024, 2), (1024, 1)]
)


@pytest.mark.parametrize("integer", [False, True])
def test_mobilenet_v1_convs_are_fast(integer):
    """All 27 convolutions of MobileNetV1 on 3x120x120 well under a few seconds."""
    rng = np.random.default_rng(5)
    if integer:
        x = rng.integers(0, 256, (1, 3, 120, 120)).astype(np.uint8)
        weight = lambda *s: rng.integers(-127, 128, s).astype(np.int8)  # noqa: E731
    else:
        x = rng.standard_normal((1, 3, 120, 120)).astype(np.float32)
        weight = lambda *s: (0.1 * rng.standard_normal(s)).astype(np.float32)  # noqa: E731
    start = time.perf_counter()
    y = conv(x, weight(32, 3, 3, 3), strides=[2, 2], pads=[1, 1, 1, 1])
    c = 32
    for m, s in MOBILENET_V1:
        y = np.clip(y >> 12, 0, 255).astype(np.uint8) if integer else np.maximum(y, 0)
        y = conv(y, weight(c, 1, 3, 3), strides=[s, s], pads=[1, 1, 1, 1], group=c)
        y = np.clip(y >> 12, 0, 255).astype(np.uint8) if integer else np.maximum(y, 0)
        y = conv(y, weight(m, c, 1, 1))
        c = m
    assert y.shape == (1, 1024, 4, 4)
    assert time.perf_counter() - start < 3.0
