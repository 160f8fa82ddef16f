"""The NHWC kernels of eq_nhwc.c alone, through ctypes, against the reference backend.

Built twice (test_kernels' ``lib`` fixture): -march=native (the AVX-512 VNNI tiles and
vector requantisation where the CPU has them) and -march=x86-64 (the portable loops that
aarch64 compiles too). Expected values: the NumPy reference kernels on the NCHW tensors,
transposed to NHWC. Outputs are drawn u8, s8 (the vector requantisation) or s16/s32/s64
(the scalar stores, and without requantisation the exact accumulator)."""

from __future__ import annotations

import ctypes as C

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from edgeq.engine.backends.c import generator as gen
from edgeq.engine.backends.reference.conv import conv
from edgeq.engine.backends.reference.integer import requant
from edgeq.engine.backends.reference.pool import max_pool
from tests.engine.backends.c import test_kernels
from tests.engine.backends.c.test_kernels import CODES, ConvShape, PoolShape, ptr, rq_struct

lib = test_kernels.lib  # the fixture: the kernel library built native and portable


def nhwc(a):
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


@st.composite
def clip_range(draw, out):
    """[lo, hi] inside the dtype; half the time exactly the dtype's (the kernels' fast form
    clips those by a saturating narrowing)."""
    info = np.iinfo(out)
    if draw(st.booleans()):
        return int(info.min), int(info.max)
    lo = draw(st.integers(int(info.min), int(info.max)))
    return lo, draw(st.integers(lo, int(info.max)))


@st.composite
def rq_case(draw, m):
    """Per-channel mul/add (up to 2^31: the products need int64), the output dtype."""
    out = draw(st.sampled_from([np.uint8, np.int8, np.int16]))
    lo, hi = draw(clip_range(out))
    shift = draw(st.integers(0, 40))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    mul = rng.integers(-(2**31), 2**31, m)
    add = rng.integers(-(2**40), 2**40, m)
    return (mul, add, shift, lo, hi), np.dtype(out)


def _rq(acc, rqp, axis_shape):
    mul, add, shift, lo, hi = rqp
    return requant(acc, mul.reshape(axis_shape), add.reshape(axis_shape), shift=shift, lo=lo,
                   hi=hi)


@st.composite
def conv_case(draw, depthwise):
    n = draw(st.integers(1, 2))
    c = draw(st.integers(1, 40)) if depthwise else draw(st.integers(1, 7))
    m = c if depthwise else draw(st.integers(1, 70))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    pads = [draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1)),
            draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1))]
    h = draw(st.integers((kh - 1) * dh + 1, 12))
    w = draw(st.integers((kw - 1) * dw + 1, 12))
    signed = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    x = rng.integers(-128, 128, (n, c, h, w)) if signed else rng.integers(0, 256, (n, c, h, w))
    x = x.astype(np.int8 if signed else np.uint8)
    wt = rng.integers(-128, 128, (m, 1 if depthwise else c, kh, kw)).astype(np.int8)
    b = rng.integers(-(2**20), 2**20, m).astype(np.int32)
    attrs = dict(group=c if depthwise else 1, strides=[sh, sw], dilations=[dh, dw], pads=pads)
    return x, wt, b, attrs, draw(rq_case(m))


def _shape(x, wt, attrs, y):
    return ConvShape(*x.shape, wt.shape[0], *y.shape[2:], *wt.shape[2:], *attrs["strides"],
                     *attrs["dilations"], attrs["pads"][0], attrs["pads"][1], attrs["group"])


def _row_dilated_3x3():
    """3x3 depthwise, stride 1, dilation (2, 1): must not take the column-reuse path,
    which assumes dilation 1 in both directions (found by hypothesis in CI)."""
    rng = np.random.default_rng(5)
    c = 8
    x = rng.integers(0, 256, (1, c, 8, 5)).astype(np.uint8)
    wt = rng.integers(-128, 128, (c, 1, 3, 3)).astype(np.int8)
    b = rng.integers(-(2**20), 2**20, c).astype(np.int32)
    b = (b // 64).astype(np.int32)
    # |acc| <= 2^14 + 9*255*128 < 2^19, so acc / 2^12 + 128 stays inside [0, 255]: no
    # clamp hides a wrong tap
    mul, add = np.ones(c, np.int64), np.full(c, 128 << 12, np.int64)
    attrs = dict(group=c, strides=[1, 1], dilations=[2, 1], pads=[0, 0, 0, 0])
    return x, wt, b, attrs, ((mul, add, 12, 0, 255), np.dtype(np.uint8))


@settings(max_examples=40, deadline=None)
@given(conv_case(depthwise=True))
@example(case=_row_dilated_3x3())
def test_dw_nhwc_matches_reference(lib, case):
    x, wt, b, attrs, (rqp, out_dt) = case
    acc = conv(x, wt, b, **attrs)
    expect = nhwc(_rq(acc, rqp, (1, -1, 1, 1)))
    c = x.shape[1]
    w16 = np.ascontiguousarray(wt.reshape(c, -1).T.astype(np.int16))  # [taps][c]
    s, r, xh = _shape(x, wt, attrs, acc), rq_struct(*rqp), nhwc(x)
    for threads in (1, 2):  # threads split the output rows, each with c int32 of scratch
        y = np.zeros(expect.shape, out_dt)
        scratch = np.zeros(threads * c, np.int32)
        lib.eq_dw_nhwc(C.byref(s), ptr(xh), CODES[x.dtype], ptr(w16), ptr(b), C.byref(r),
                       ptr(y), CODES[out_dt], ptr(scratch), threads)
        np.testing.assert_array_equal(y.astype(np.int64), expect)
    raw = np.zeros(expect.shape, np.int32)
    lib.eq_dw_nhwc(C.byref(s), ptr(xh), CODES[x.dtype], ptr(w16), ptr(b), None, ptr(raw),
                   CODES[raw.dtype], ptr(scratch), 1)
    np.testing.assert_array_equal(raw, nhwc(acc))


@st.composite
def dw3_case(draw):
    """3x3, stride 1 or 2, dilation 1 (the column-reuse blocks of 8 or 4 outputs, borders
    as zero-masked loads, interior blocks as plain loads); requantisation drawn on both
    sides of the fast form's conditions (mul within int32 and shift >= 32, or not)."""
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 70))
    stride = draw(st.integers(1, 2))
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 21))
    pads = [draw(st.integers(0, 2)) for _ in range(4)]
    if h + pads[0] + pads[2] < 3 or w + pads[1] + pads[3] < 3:
        pads = [1, 1, 1, 1] if h < 3 or w < 3 else pads
        h, w = max(h, 1), max(w, 1)
    signed = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    x = rng.integers(-128, 128, (n, c, h, w)) if signed else rng.integers(0, 256, (n, c, h, w))
    x = x.astype(np.int8 if signed else np.uint8)
    wt = rng.integers(-128, 128, (c, 1, 3, 3)).astype(np.int8)
    b = rng.integers(-(2**20), 2**20, c).astype(np.int32)
    out = np.dtype(draw(st.sampled_from([np.uint8, np.int8])))
    lo, hi = draw(clip_range(out))
    fast = draw(st.booleans())
    bound = 2**31 if fast else 2**40
    mul = rng.integers(-bound, bound, c)
    shift = draw(st.integers(32, 44) if fast else st.integers(0, 44))
    add = rng.integers(-(2**50), 2**50, c)
    attrs = dict(group=c, strides=[stride, stride], dilations=[1, 1], pads=pads)
    return x, wt, b, attrs, ((mul, add, shift, lo, hi), out)


@settings(max_examples=60, deadline=None)
@given(dw3_case())
def test_dw3_nhwc_matches_reference(lib, case):
    x, wt, b, attrs, (rqp, out_dt) = case
    acc = conv(x, wt, b, **attrs)
    expect = nhwc(_rq(acc, rqp, (1, -1, 1, 1)))
    c = x.shape[1]
    w16 = np.ascontiguousarray(wt.reshape(c, -1).T.astype(np.int16))
    s, r, xh = _shape(x, wt, attrs, acc), rq_struct(*rqp), nhwc(x)
    y = np.zeros(expect.shape, out_dt)
    lib.eq_dw_nhwc(C.byref(s), ptr(xh), CODES[x.dtype], ptr(w16), ptr(b), C.byref(r), ptr(y),
                   CODES[out_dt], ptr(np.zeros(c, np.int32)), 1)
    np.testing.assert_array_equal(y.astype(np.int64), expect)


def _packed_conv(wt, b, x_dt):
    """Taps (ky, kx, c), packed as the generator does; bias with the +128 correction."""
    m = wt.shape[0]
    w2 = wt.astype(np.int64).transpose(0, 2, 3, 1).reshape(m, -1)
    kp = -(-w2.shape[1] // 4) * 4
    bias = b.astype(np.int64) - (128 * w2.sum(axis=1) if x_dt == np.int8 else 0)
    return gen.pack_q8(w2, 1, kp), kp, bias.astype(np.int32)


@settings(max_examples=40, deadline=None)
@given(conv_case(depthwise=False))
def test_conv_nhwc_matches_reference(lib, case):
    x, wt, b, attrs, (rqp, out_dt) = case
    acc = conv(x, wt, b, **attrs)
    expect = nhwc(_rq(acc, rqp, (1, -1, 1, 1)))
    wp, kp, bias = _packed_conv(wt, b, x.dtype)
    s, r, xh = _shape(x, wt, attrs, acc), rq_struct(*rqp), nhwc(x)
    lib.eq_nhwc_block.restype = C.c_int
    for threads in (1, 3):
        cols = np.full(threads * lib.eq_nhwc_block(kp) * kp, 99, np.uint8)  # garbage
        y = np.zeros(expect.shape, out_dt)
        lib.eq_conv_nhwc(C.byref(s), ptr(xh), CODES[x.dtype], ptr(wp), kp, ptr(bias),
                         C.byref(r), ptr(y), CODES[out_dt], ptr(cols), threads)
        np.testing.assert_array_equal(y.astype(np.int64), expect)


@st.composite
def gemm_case(draw):
    rows, m, k = draw(st.integers(1, 21)), draw(st.integers(1, 80)), draw(st.integers(1, 70))
    signed = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    a = rng.integers(-128, 128, (rows, k)) if signed else rng.integers(0, 256, (rows, k))
    wt = rng.integers(-128, 128, (m, k, 1, 1)).astype(np.int8)
    b = rng.integers(-(2**20), 2**20, m).astype(np.int32)
    return a.astype(np.int8 if signed else np.uint8), wt, b, draw(rq_case(m))


def python_gemm(a, wt, b) -> np.ndarray:
    """acc[r][j] = b[j] + sum_k a[r][k] * w[j][k] with Python integers (wt: [m, k, 1, 1])."""
    rows, k = a.shape
    m = wt.shape[0]
    w2 = wt.reshape(m, k).tolist()
    acc = np.array([[int(b[j]) + sum(int(p) * q for p, q in zip(a[r].tolist(), w2[j], strict=True))
                     for j in range(m)] for r in range(rows)], dtype=np.int64)
    return acc


@settings(max_examples=50, deadline=None)
@given(gemm_case())
def test_gemm_nhwc_matches_python_integers(lib, case):
    a, wt, b, (rqp, out_dt) = case
    rows, k = a.shape
    m = wt.shape[0]
    acc = python_gemm(a, wt, b)
    expect = _rq(acc, rqp, (1, -1))
    wp, kp, bias = _packed_conv(wt, b, a.dtype)
    r = rq_struct(*rqp)
    for threads in (1, 2):  # rows or 16-channel blocks per thread
        y = np.zeros(expect.shape, out_dt)
        lib.eq_gemm_nhwc(rows, m, k, ptr(a), CODES[a.dtype], ptr(wp), kp, ptr(bias), C.byref(r),
                         ptr(y), CODES[out_dt], threads)
        np.testing.assert_array_equal(y.astype(np.int64), expect)
    raw = np.zeros(acc.shape, np.int64)
    lib.eq_gemm_nhwc(rows, m, k, ptr(a), CODES[a.dtype], ptr(wp), kp, ptr(bias), None,
                     ptr(raw), CODES[raw.dtype], 1)
    np.testing.assert_array_equal(raw, acc)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 2), st.integers(1, 37), st.integers(1, 3), st.integers(1, 3),
       st.integers(1, 2), st.integers(0, 1), st.booleans(), st.integers(0, 2**31))
def test_maxpool_nhwc_matches_reference(lib, n, c, k, s, d, pad, signed, seed):
    rng = np.random.default_rng(seed)
    dt = np.int8 if signed else np.uint8
    info = np.iinfo(dt)
    x = rng.integers(int(info.min), int(info.max) + 1, (n, c, 9, 8)).astype(dt)
    pad = min(pad, k - 1)
    attrs = dict(kernel_shape=[k, k], strides=[s, s], dilations=[d, d], pads=[pad] * 4)
    expect = max_pool(x, **attrs)
    expect = expect[0] if isinstance(expect, tuple) else expect
    shape = PoolShape(n, c, 9, 8, *expect.shape[2:], k, k, s, s, d, d, pad, pad)
    y = np.zeros(nhwc(expect).shape, dt)
    lib.eq_maxpool_nhwc(C.byref(shape), ptr(nhwc(x)), CODES[np.dtype(dt)], ptr(y))
    np.testing.assert_array_equal(y, nhwc(expect))


@given(st.lists(st.integers(1, 5), min_size=4, max_size=4), st.permutations([0, 1, 2, 3]),
       st.sampled_from([np.uint8, np.int16, np.int32, np.int64]))
@settings(max_examples=20, deadline=None)
def test_transpose4_is_numpy_transpose(lib, shape, perm, dt):
    x = np.arange(int(np.prod(shape)), dtype=dt).reshape(shape)
    y = np.zeros(tuple(shape[p] for p in perm), dt)
    sh, pm = (C.c_int * 4)(*shape), (C.c_int * 4)(*perm)
    lib.eq_transpose4(ptr(x), C.c_size_t(x.itemsize), sh, pm, ptr(y))
    np.testing.assert_array_equal(y, np.transpose(x, perm))


TASK = C.CFUNCTYPE(None, C.c_void_p, C.c_int, C.c_int)


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 40), st.integers(1, 4))
def test_parallel_shares_runs_each_share_once(lib, shares, threads):
    """eq_parallel_shares: every share index t < shares exactly once, each told `shares`,
    whatever the thread count (shares claimed by the caller and the pool's workers)."""
    seen = []
    task = TASK(lambda ctx, t, nt: seen.append((t, nt)))
    lib.eq_parallel_shares(task, None, shares, threads)
    assert sorted(seen) == [(t, shares) for t in range(shares)]


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 2), st.sampled_from([1, 2, 3, 4, 7]), st.integers(1, 9), st.integers(1, 9),
       st.integers(0, 2**31))
def test_transpose4_nchw_to_nhwc_bytes(lib, n, c, h, w, seed):
    """The byte fast path of eq_transpose4 (the model input's NCHW -> NHWC, RGB pass)."""
    x = np.random.default_rng(seed).integers(0, 256, (n, c, h, w)).astype(np.uint8)
    y = np.zeros((n, h, w, c), np.uint8)
    sh, pm = (C.c_int * 4)(*x.shape), (C.c_int * 4)(0, 2, 3, 1)
    lib.eq_transpose4(ptr(x), C.c_size_t(1), sh, pm, ptr(y))
    np.testing.assert_array_equal(y, np.transpose(x, (0, 2, 3, 1)))
