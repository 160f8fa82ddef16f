"""The C kernels alone, through ctypes, against the reference backend's kernels.

The kernel library is compiled once into a shared object (gcc -O3 -march=native, as the
host target). Hypothesis draws shapes, strides, pads, dilations, groups and values; the
expected result is the NumPy reference kernel's (the specification), bit for bit.
"""

from __future__ import annotations

import ctypes as C
import shutil
import subprocess

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeq.engine.backends.c import project
from edgeq.engine.backends.reference.conv import conv
from edgeq.engine.backends.reference.gemm import gemm
from edgeq.engine.backends.reference.integer import harmonised_add, requant
from edgeq.engine.backends.reference.pool import max_pool

CODES = {np.dtype(k): i for i, k in enumerate(
    [np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.int64, np.float32,
     np.float64])}
I64P = C.POINTER(C.c_int64)


class Rq(C.Structure):
    _fields_ = [("mul", I64P), ("add", I64P), ("shift", C.c_int), ("lo", C.c_int64),
                ("hi", C.c_int64)]


class ConvShape(C.Structure):
    _fields_ = [(k, C.c_int) for k in ("n", "c", "h", "w", "m", "oh", "ow", "kh", "kw", "sh",
                                       "sw", "dh", "dw", "pt", "pl", "group")]


class PoolShape(C.Structure):
    _fields_ = [(k, C.c_int) for k in ("n", "c", "h", "w", "oh", "ow", "kh", "kw", "sh", "sw",
                                       "dh", "dw", "pt", "pl")]


class Hadd(C.Structure):
    _fields_ = [("n_in", C.c_int), ("x", C.POINTER(C.c_void_p)), ("x_dt", C.POINTER(C.c_int)),
                ("in_mul", I64P), ("in_add", I64P), ("in_shift", C.POINTER(C.c_int)),
                ("in_rq", C.POINTER(C.c_int)), ("out_mul", C.c_int64), ("out_add", C.c_int64),
                ("out_shift", C.c_int), ("out_rq", C.c_int), ("lo", C.c_int64), ("hi", C.c_int64)]


# native: the host target (VNNI intrinsics where the CPU has them); portable: the plain C
# loops every other target (e.g. the Cortex-A72) compiles.
@pytest.fixture(scope="module", params=["-march=native", "-march=x86-64"])
def lib(request, tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.skip("gcc not found")
    d = tmp_path_factory.mktemp("kernels")
    for name in project.KERNEL_FILES:
        (d / name).write_text(project.kernel_source(name))
    srcs = [f for f in project.KERNEL_FILES if f.endswith(".c")]
    subprocess.run(["gcc", "-std=c99", "-O3", request.param, "-DEQ_THREADS", "-pthread", "-Wall",
                    "-Wextra", "-Werror", "-shared", "-fPIC", "-o", "libeq.so", *srcs, "-lm"],
                   cwd=d, check=True)
    return C.CDLL(str(d / "libeq.so"))


def ptr(a: np.ndarray):
    return a.ctypes.data_as(C.c_void_p)


def rq_struct(mul, add, shift, lo, hi):
    mul, add = np.ascontiguousarray(mul, np.int64), np.ascontiguousarray(add, np.int64)
    s = Rq(mul.ctypes.data_as(I64P), add.ctypes.data_as(I64P), shift, lo, hi)
    s._keep = (mul, add)
    return s


def requant_params(draw, m, acc_bound):
    """Per-channel mul/add and a shift that keep (acc*mul + add) well inside int64."""
    shift = draw(st.integers(0, 20))
    mul = np.array(draw(st.lists(st.integers(-(2**12), 2**12), min_size=m, max_size=m)))
    add = np.array(draw(st.lists(st.integers(-(2**30), 2**30), min_size=m, max_size=m)))
    lo = draw(st.integers(-300, 0))
    hi = draw(st.integers(lo, 300))
    return mul, add, shift, lo, hi


@st.composite
def conv_case(draw, depthwise=False):
    n = draw(st.integers(1, 2))
    group = draw(st.integers(1, 3))
    cg = 1 if depthwise else draw(st.integers(1, 4))
    mg = 1 if depthwise else draw(st.integers(1, 20))
    c, m = cg * group, mg * group
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    pads = [draw(st.integers(0, 2)) for _ in range(4)]
    h = draw(st.integers((kh - 1) * dh + 1, 9))
    w = draw(st.integers((kw - 1) * dw + 1, 9))
    signed = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    x = rng.integers(-128, 128, (n, c, h, w)) if signed else rng.integers(0, 256, (n, c, h, w))
    x = x.astype(np.int8 if signed else np.uint8)
    wt = rng.integers(-128, 128, (m, cg, kh, kw)).astype(np.int8)
    b = rng.integers(-(2**20), 2**20, m).astype(np.int32)
    attrs = dict(group=group, strides=[sh, sw], dilations=[dh, dw], pads=pads)
    return x, wt, b, attrs, requant_params(draw, m, None)


def packed(w2d: np.ndarray, group: int, kp: int) -> np.ndarray:
    """The documented layout, written with loops: per group, per 16-channel block,
    [kp/4][16][4]; zero channels and taps pad it."""
    m, k = w2d.shape
    mg = m // group
    blocks = -(-mg // 16)
    out = np.zeros(group * blocks * 16 * kp, np.int8)
    i = 0
    for g in range(group):
        for blk in range(blocks):
            for k4 in range(kp // 4):
                for j in range(16):
                    for t in range(4):
                        ch, tap = blk * 16 + j, 4 * k4 + t
                        if ch < mg and tap < k:
                            out[i] = w2d[g * mg + ch, tap]
                        i += 1
    return out


def _shape(x, wt, attrs, y):
    return ConvShape(*x.shape, wt.shape[0], *y.shape[2:], *wt.shape[2:], *attrs["strides"],
                     *attrs["dilations"], attrs["pads"][0], attrs["pads"][1], attrs["group"])


def _expected(x, wt, b, attrs, rqp):
    acc = conv(x, wt, b, **attrs)
    mul, add, shift, lo, hi = rqp
    y = requant(acc, mul.reshape(1, -1, 1, 1), add.reshape(1, -1, 1, 1), shift=shift, lo=lo, hi=hi)
    return acc, y.astype(np.int16)


@settings(max_examples=60, deadline=None)
@given(conv_case())
def test_conv_q8_matches_reference(lib, case):
    x, wt, b, attrs, rqp = case
    acc, expect = _expected(x, wt, b, attrs, rqp)
    m = wt.shape[0]
    k = wt[0].size
    kp = -(-k // 4) * 4
    wp = packed(wt.reshape(m, k), attrs["group"], kp)
    assert wp.size == attrs["group"] * lib.eq_packed_size(m // attrs["group"], kp)
    bias = b.astype(np.int64)
    if x.dtype == np.int8:  # the +128 encoding: fold -128 * sum(w) into the bias
        bias = bias - 128 * wt.reshape(m, k).astype(np.int64).sum(axis=1)
    bias = bias.astype(np.int32)
    s = _shape(x, wt, attrs, acc)
    positions = acc.shape[2] * acc.shape[3]
    pb = lib.eq_conv_block(kp, positions)
    r = rq_struct(*rqp)
    for threads in (1, 3):  # threads split the output positions, each with its scratch
        cols = np.zeros(threads * pb * kp, np.uint8)
        accbuf = np.zeros(threads * 16 * pb, np.int32)
        y = np.zeros(expect.shape, np.int16)
        lib.eq_conv_q8(C.byref(s), ptr(x), CODES[x.dtype], ptr(wp), kp, ptr(bias), C.byref(r),
                       ptr(y), CODES[y.dtype], ptr(cols), ptr(accbuf), threads)
        np.testing.assert_array_equal(y, expect)
    # without requantisation the kernel stores the exact accumulator
    raw = np.zeros(acc.shape, np.int64)
    lib.eq_conv_q8(C.byref(s), ptr(x), CODES[x.dtype], ptr(wp), kp, ptr(bias), None,
                   ptr(raw), CODES[raw.dtype], ptr(cols), ptr(accbuf), 1)
    np.testing.assert_array_equal(raw, acc)


@settings(max_examples=40, deadline=None)
@given(conv_case(depthwise=True))
def test_conv_dw8_matches_reference(lib, case):
    x, wt, b, attrs, rqp = case
    acc, expect = _expected(x, wt, b, attrs, rqp)
    if attrs["group"] != x.shape[1]:
        attrs = {**attrs, "group": x.shape[1]}
        acc, expect = _expected(x, wt, b, attrs, rqp)
    s = _shape(x, wt, attrs, acc)
    ph = (acc.shape[2] - 1) * attrs["strides"][0] + (wt.shape[2] - 1) * attrs["dilations"][0] + 1
    pw = (acc.shape[3] - 1) * attrs["strides"][1] + (wt.shape[3] - 1) * attrs["dilations"][1] + 1
    slack = (wt.shape[3] - 1) * attrs["dilations"][1]
    lib.eq_dw_pad_size.restype = lib.eq_dw_acc_size.restype = C.c_size_t
    assert lib.eq_dw_pad_size(C.byref(s)) == ph * pw + slack
    assert lib.eq_dw_acc_size(C.byref(s)) == acc.shape[2] * pw
    r = rq_struct(*rqp)
    for threads in (1, 2):  # threads split the channels, each with its scratch
        pad = np.full(threads * (ph * pw + slack), 77, np.uint8)  # garbage: must be zeroed
        accbuf = np.zeros(threads * acc.shape[2] * pw, np.int32)
        y = np.zeros(expect.shape, np.int16)
        lib.eq_conv_dw8(C.byref(s), ptr(x), CODES[x.dtype], ptr(np.ascontiguousarray(wt)),
                        ptr(b), C.byref(r), ptr(y), CODES[y.dtype], ptr(pad), ptr(accbuf),
                        threads)
        np.testing.assert_array_equal(y, expect)


@settings(max_examples=30, deadline=None)
@given(conv_case(), st.integers(0, 2**31))
def test_conv_i64_matches_reference_on_wide_values(lib, case, seed):
    x, wt, b, attrs, _ = case
    rng = np.random.default_rng(seed)
    x = rng.integers(-(2**15), 2**15, x.shape).astype(np.int16)
    wt = rng.integers(-(2**20), 2**20, wt.shape).astype(np.int32)
    b = rng.integers(-(2**40), 2**40, b.shape).astype(np.int64)
    acc = conv(x, wt, b, **attrs)
    s = _shape(x, wt, attrs, acc)
    w64 = np.ascontiguousarray(wt.reshape(wt.shape[0], -1), np.int64)
    y = np.zeros(acc.shape, np.int64)
    buf = np.zeros(acc.shape[3], np.int64)
    lib.eq_conv_i64(C.byref(s), ptr(x), CODES[x.dtype], ptr(w64), ptr(b), None, ptr(y),
                    CODES[y.dtype], ptr(buf))
    np.testing.assert_array_equal(y, acc)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 7), st.integers(1, 70), st.integers(1, 40), st.booleans(),
       st.integers(0, 2**31), st.data())
def test_gemm_q8_matches_reference(lib, rows, k, cols, signed, seed, data):
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, (rows, k)) if signed else rng.integers(0, 256, (rows, k))
    a = a.astype(np.int8 if signed else np.uint8)
    w = rng.integers(-128, 128, (cols, k)).astype(np.int8)
    c = rng.integers(-(2**20), 2**20, cols).astype(np.int32)
    mul, add, shift, lo, hi = requant_params(data.draw, cols, None)
    expect = requant(gemm(a, w, c, transB=1), mul, add, shift=shift, lo=lo, hi=hi)
    kp = -(-k // 4) * 4
    wp = packed(w, 1, kp)
    bias = c.astype(np.int64) - (128 * w.astype(np.int64).sum(axis=1) if signed else 0)
    bias = bias.astype(np.int32)
    y = np.zeros((rows, cols), np.int16)
    r = rq_struct(mul, add, shift, lo, hi)
    pb = lib.eq_conv_block(kp, rows)
    lib.eq_gemm_q8(rows, cols, k, ptr(a), CODES[a.dtype], ptr(wp), kp, ptr(bias), C.byref(r),
                   ptr(y), CODES[y.dtype], ptr(np.zeros(pb * kp, np.uint8)),
                   ptr(np.zeros(16 * pb, np.int32)))
    np.testing.assert_array_equal(y, expect)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(2, 70), st.integers(1, 20),
       st.sampled_from([np.int16, np.int32, np.int64, np.uint16]), st.integers(0, 2**31), st.data())
def test_gemm_i32_matches_reference(lib, rows, k, cols, dtype, seed, data):
    """Accumulators that fit int32 while partial sums do not (the first two terms are
    +-2^31-ish and cancel): the modulo-2^32 sums give the exact result."""
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    a = rng.integers(max(info.min, -(2**15)), min(info.max, 2**15), (rows, k)).astype(dtype)
    w = rng.integers(-8, 8, (cols, k)).astype(np.int64)
    big = min(info.max, 2**15) - 1
    a[:, 0] = a[:, 1] = big
    w[:, 0], w[:, 1] = 2**31 // big, -(2**31 // big)
    c = rng.integers(-(2**20), 2**20, cols).astype(np.int64)
    acc = gemm(a, w, c, transB=1)
    assert np.abs(acc).max() < 2**31 and big * w[0, 0] >= 2**30
    mul, add, shift, lo, hi = requant_params(data.draw, cols, None)
    y = np.zeros((rows, cols), np.int16)
    r = rq_struct(mul, add, shift, lo, hi)
    w32, c32 = w.astype(np.int32), c.astype(np.int32)
    lib.eq_gemm_i32(rows, cols, k, ptr(a), CODES[a.dtype], ptr(w32), ptr(c32), C.byref(r),
                    ptr(y), CODES[y.dtype], ptr(np.zeros(k, np.int32)))
    np.testing.assert_array_equal(y, requant(acc, mul, add, shift=shift, lo=lo, hi=hi))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.integers(1, 5), st.integers(1, 7), st.integers(0, 2**31), st.data())
def test_requant_in_place_matches_reference(lib, outer, ch, inner, seed, data):
    """Output over the input's own bytes (the planner's in-place case), narrowing."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-(2**40), 2**40, (outer, ch, inner)).astype(np.int64)
    mul, add, shift, lo, hi = requant_params(data.draw, ch, None)
    mul = mul // 2**8  # keep |x*mul| < 2^63
    shift += 20
    expect = requant(x, mul.reshape(1, -1, 1), add.reshape(1, -1, 1), shift=shift, lo=lo, hi=hi)
    buf = x.copy()
    r = rq_struct(mul, add, shift, lo, hi)
    lib.eq_requant(ptr(buf), CODES[buf.dtype], outer, ch, inner, C.byref(r), ptr(buf),
                   CODES[np.dtype(np.int16)])
    got = np.frombuffer(buf.tobytes(), np.int16)[: x.size].reshape(x.shape)
    np.testing.assert_array_equal(got, expect)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.integers(1, 40), st.integers(0, 2**31), st.data())
def test_harmonised_add_matches_reference(lib, n_in, numel, seed, data):
    rng = np.random.default_rng(seed)
    xs = [rng.integers(-128, 128, numel).astype(np.int8) if i % 2 else
          rng.integers(0, 256, numel).astype(np.uint8) for i in range(n_in)]
    d = data.draw
    attrs = dict(in_mul=[d(st.integers(-500, 500)) for _ in xs],
                 in_add=[d(st.integers(-5000, 5000)) for _ in xs],
                 in_shift=[d(st.integers(0, 12)) for _ in xs],
                 in_rq=[d(st.integers(0, 1)) for _ in xs],
                 out_mul=d(st.integers(-50, 50)), out_add=d(st.integers(-99, 99)),
                 out_shift=d(st.integers(0, 6)), out_rq=d(st.integers(0, 1)),
                 lo=d(st.integers(-200, 0)), hi=d(st.integers(0, 200)))
    expect = harmonised_add(*xs, **attrs)
    arr = (C.c_void_p * n_in)(*[x.ctypes.data for x in xs])
    dts = (C.c_int * n_in)(*[CODES[x.dtype] for x in xs])
    im = np.array(attrs["in_mul"], np.int64)
    ia = np.array(attrs["in_add"], np.int64)
    ish = (C.c_int * n_in)(*attrs["in_shift"])
    irq = (C.c_int * n_in)(*attrs["in_rq"])
    p = Hadd(n_in, arr, dts, im.ctypes.data_as(I64P), ia.ctypes.data_as(I64P), ish, irq,
             attrs["out_mul"], attrs["out_add"], attrs["out_shift"], attrs["out_rq"],
             attrs["lo"], attrs["hi"])
    y = np.zeros(numel, np.int16)
    lib.eq_harmonised_add(C.byref(p), numel, ptr(y), CODES[y.dtype])
    np.testing.assert_array_equal(y, expect)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 2),
       st.integers(0, 1), st.sampled_from([np.uint8, np.int8, np.int16, np.float32]),
       st.integers(0, 2**31))
def test_maxpool_matches_reference(lib, kh, kw, s, d, p, dtype, seed):
    rng = np.random.default_rng(seed)
    h, w = (kh - 1) * d + 1 + 4, (kw - 1) * d + 1 + 3
    x = (rng.normal(0, 50, (2, 3, h, w)) if dtype == np.float32 else
         rng.integers(np.iinfo(dtype).min, np.iinfo(dtype).max + 1, (2, 3, h, w))).astype(dtype)
    pads = [p, p, p, p] if p < kh and p < kw else [0, 0, 0, 0]
    expect = max_pool(x, kernel_shape=[kh, kw], strides=[s, s], dilations=[d, d], pads=pads)
    shape = PoolShape(*x.shape, *expect.shape[2:], kh, kw, s, s, d, d, pads[0], pads[1])
    y = np.zeros(expect.shape, dtype)
    lib.eq_maxpool(C.byref(shape), ptr(x), CODES[x.dtype], ptr(y))
    np.testing.assert_array_equal(y, expect)
