"""The armcl backend's own C (im2col with the +128 encoding, row copies, the
requantisation of S32 results) on the host through ctypes, against NumPy and Python
integers; hypothesis draws the shapes, pads, strides and values."""

from __future__ import annotations

import ctypes as C
import shutil
import subprocess

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeq.engine.backends.armcl.project import ARMCL_FILES, armcl_source
from edgeq.engine.backends.c import project as cproj

I64P = C.POINTER(C.c_int64)


class Rq(C.Structure):
    _fields_ = [("mul", I64P), ("add", I64P), ("shift", C.c_int), ("lo", C.c_int64),
                ("hi", C.c_int64)]


class Geo(C.Structure):
    _fields_ = [(k, C.c_int) for k in ("c", "h", "w", "oh", "ow", "kh", "kw", "sh", "sw",
                                       "dh", "dw", "pt", "pl")]


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.skip("gcc not found")
    d = tmp_path_factory.mktemp("eqa")
    for name in cproj.KERNEL_FILES:
        (d / name).write_text(cproj.kernel_source(name))
    for name in ARMCL_FILES:
        (d / name).write_text(armcl_source(name))
    srcs = [f for f in cproj.KERNEL_FILES if f.endswith(".c")] + ["eqa_kernels.c"]
    subprocess.run(["gcc", "-std=c99", "-O2", "-DEQ_THREADS", "-pthread", "-Wall", "-Wextra",
                    "-Werror", "-shared", "-fPIC", "-o", "libeqa.so", *srcs, "-lm"], cwd=d,
                   check=True)
    return C.CDLL(str(d / "libeqa.so"))


def _ptr(a):
    return a.ctypes.data_as(C.c_void_p)


def _im2col_ref(x, signed, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow):
    """rows[p][(ky*kw+kx)*c + ch] of one NCHW image, values +128 if signed, pad = zero."""
    c, h, w = x.shape
    enc = x.astype(np.int64) + (128 if signed else 0)
    zero = 128 if signed else 0
    rows = np.full((oh * ow, kh * kw * c), zero, dtype=np.int64)
    for oy in range(oh):
        for ox in range(ow):
            for ky in range(kh):
                for kx in range(kw):
                    iy, ix = oy * sh - pt + ky * dh, ox * sw - pl + kx * dw
                    if 0 <= iy < h and 0 <= ix < w:
                        t = ky * kw + kx
                        rows[oy * ow + ox, t * c:(t + 1) * c] = enc[:, iy, ix]
    return rows


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), c=st.integers(1, 5), h=st.integers(1, 7),
       w=st.integers(1, 7), k=st.integers(1, 3), s=st.integers(1, 2), d=st.integers(1, 2),
       pads=st.tuples(*[st.integers(0, 2)] * 4), signed=st.booleans(), nhwc=st.booleans(),
       extra=st.integers(0, 9))
def test_im2col_matches_numpy(lib, seed, c, h, w, k, s, d, pads, signed, nhwc, extra):
    pt, pl, pb, pr = pads
    oh = (h + pt + pb - (k - 1) * d - 1) // s + 1
    ow = (w + pl + pr - (k - 1) * d - 1) // s + 1
    if oh < 1 or ow < 1:
        return
    rng = np.random.default_rng(seed)
    dt = np.int8 if signed else np.uint8
    x = rng.integers(np.iinfo(dt).min, np.iinfo(dt).max + 1, (c, h, w)).astype(dt)
    kk = k * k * c
    stride = kk + extra  # ACL's padded row stride
    rows = np.full((oh * ow, stride), 77, dtype=np.uint8)
    src = np.ascontiguousarray(x.transpose(1, 2, 0)) if nhwc else x
    geo = Geo(c, h, w, oh, ow, k, k, s, s, d, d, pt, pl)
    lib.eqa_im2col(_ptr(src), int(signed), int(nhwc), C.byref(geo), _ptr(rows),
                   C.c_size_t(stride))
    want = _im2col_ref(x, signed, k, k, s, s, d, d, pt, pl, oh, ow)
    np.testing.assert_array_equal(rows[:, :kk].astype(np.int64), want)
    assert (rows[:, kk:] == 77).all()  # the row padding is left alone


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), imgs=st.integers(1, 2), positions=st.integers(1, 6),
       ch=st.integers(1, 5), shift=st.integers(0, 40), nhwc=st.booleans(),
       out=st.sampled_from(["u8", "s8", "s32"]))
def test_requant_matches_python_integers(lib, seed, imgs, positions, ch, shift, nhwc, out):
    rng = np.random.default_rng(seed)
    stride = ch + 3
    acc = rng.integers(-(2**31), 2**31, (imgs * positions, stride)).astype(np.int32)
    mul = rng.integers(-(2**20), 2**20, ch).astype(np.int64)
    add = rng.integers(-(2**50), 2**50, ch).astype(np.int64)
    dt = {"u8": np.uint8, "s8": np.int8, "s32": np.int32}[out]
    lo, hi = int(np.iinfo(dt).min), int(np.iinfo(dt).max)
    rq = Rq(mul.ctypes.data_as(I64P), add.ctypes.data_as(I64P), shift, lo, hi)
    y = np.zeros(imgs * positions * ch, dtype=dt)
    code = {"u8": 0, "s8": 1, "s32": 5}[out]
    lib.eqa_requant(_ptr(acc), C.c_size_t(stride), C.c_size_t(imgs), C.c_size_t(positions),
                    ch, C.byref(rq), int(nhwc), _ptr(y), code)
    for i in range(imgs):
        for p in range(positions):
            for c in range(ch):
                v = (int(acc[i * positions + p, c]) * int(mul[c]) + int(add[c])) >> shift
                v = min(max(v, lo), hi)
                o = (i * positions + p) * ch + c if nhwc else (i * ch + c) * positions + p
                assert int(y[o]) == v


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), m=st.integers(1, 5), k=st.integers(1, 9),
       signed=st.booleans())
def test_copy_rows_encodes_signed_values(lib, seed, m, k, signed):
    rng = np.random.default_rng(seed)
    dt = np.int8 if signed else np.uint8
    x = rng.integers(np.iinfo(dt).min, np.iinfo(dt).max + 1, (m, k)).astype(dt)
    rows = np.zeros((m, k + 2), dtype=np.uint8)
    lib.eqa_copy_rows(_ptr(x), int(signed), C.c_size_t(m), C.c_size_t(k), _ptr(rows),
                      C.c_size_t(k + 2))
    np.testing.assert_array_equal(rows[:, :k].astype(np.int64),
                                  x.astype(np.int64) + (128 if signed else 0))
