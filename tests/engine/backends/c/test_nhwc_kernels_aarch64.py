"""The NHWC GEMM/conv kernels of eq_nhwc.c compiled for cortex-a72 (the NEON tile) and
run under qemu-aarch64, against the same independent expectations as
test_nhwc_kernels.py: Python integers for the GEMM, the NumPy reference convolution.

A small static harness (nhwc_harness.c, built once per session with the target's flags)
reads a header, the tensors and the packed weights from a file and writes the output.
Skips when the cross toolchain is absent (fails under CI=true: conftest.cross_toolchain)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings

from edgeq.engine.backends.c import project
from edgeq.engine.backends.reference.conv import conv
from tests.engine.backends.c.test_kernels import CODES
from tests.engine.backends.c.test_nhwc_kernels import (
    _packed_conv,
    _rq,
    conv_case,
    gemm_case,
    nhwc,
    python_gemm,
)

HARNESS = Path(__file__).with_name("nhwc_harness.c")


@pytest.fixture(scope="session")
def a72(cross_toolchain, tmp_path_factory):
    """Path of the harness binary for cortex-a72."""
    t = project.TARGETS["cortex-a72"]
    d = tmp_path_factory.mktemp("a72_kernels")
    for name in project.KERNEL_FILES:
        (d / name).write_text(project.kernel_source(name))
    (d / "harness.c").write_text(HARNESS.read_text())
    srcs = [f for f in project.KERNEL_FILES if f.endswith(".c")] + ["harness.c"]
    subprocess.run([t.cc, "-std=c99", *t.cflags.split(), "-DEQ_THREADS", "-pthread", "-Wall",
                    "-Wextra", "-Werror", t.ldflags, "-o", "harness", *srcs, "-lm"],
                   cwd=d, check=True)
    return d / "harness"


def run(a72, op, threads, x, wp, kp, bias, rqp, out_dt, y_shape, rows=0, k=0, shape=()):
    """The kernel's output under qemu (rqp None: no requantisation, the raw accumulator)."""
    h = np.zeros(32, np.int64)
    mul, add, shift, lo, hi = rqp if rqp is not None else (None, None, 0, 0, 0)
    h[:16] = [op, threads, CODES[x.dtype], CODES[out_dt], rqp is not None, shift, lo, hi,
              x.nbytes, wp.nbytes, int(np.prod(y_shape)), out_dt.itemsize, rows, len(bias), k,
              kp]
    h[16:16 + len(shape)] = shape
    parts = [h, x, wp, bias.astype(np.int32)]
    if rqp is not None:
        parts += [np.asarray(mul, np.int64), np.asarray(add, np.int64)]
    src = a72.parent / "in.bin"
    dst = a72.parent / "out.bin"
    src.write_bytes(b"".join(np.ascontiguousarray(p).tobytes() for p in parts))
    subprocess.run([*project.TARGETS["cortex-a72"].runner, str(a72), str(src), str(dst)],
                   check=True)
    return np.frombuffer(dst.read_bytes(), out_dt).reshape(y_shape)


def _extreme_gemm(x_val, w_val, signed):
    """Every product at the int16 edge (u8 255 x s8 -128 = -32640): rows and channels
    past one tile and one 64-channel pass, a K tail."""
    rows, m, k = 7, 70, 39
    a = np.full((rows, k), x_val, np.int8 if signed else np.uint8)
    wt = np.full((m, k, 1, 1), w_val, np.int8)
    b = np.arange(m, dtype=np.int32) - 35
    mul, add = np.ones(m, np.int64), np.zeros(m, np.int64)
    return a, wt, b, ((mul, add, 0, -(2**31), 2**31 - 1), np.dtype(np.int32))


def _wide_mul_gemm():
    """One channel's mul past int32: that channel block takes the scalar requantisation."""
    rng = np.random.default_rng(3)
    rows, m, k = 5, 40, 21
    a = rng.integers(0, 256, (rows, k)).astype(np.uint8)
    wt = rng.integers(-128, 128, (m, k, 1, 1)).astype(np.int8)
    b = rng.integers(-(2**20), 2**20, m).astype(np.int32)
    mul = rng.integers(-(2**20), 2**20, m)
    mul[35] = 2**33 + 7
    add = rng.integers(-(2**40), 2**40, m)
    return a, wt, b, ((mul, add, 38, 0, 255), np.dtype(np.uint8))


@settings(max_examples=30, deadline=None)
@given(gemm_case())
@example(_extreme_gemm(255, -128, False))
@example(_extreme_gemm(255, 127, False))
@example(_extreme_gemm(127, -128, True))
@example(_wide_mul_gemm())
def test_gemm_nhwc_a72_matches_python_integers(a72, case):
    a, wt, b, (rqp, out_dt) = case
    rows, k = a.shape
    acc = python_gemm(a, wt, b)
    expect = _rq(acc, rqp, (1, -1))
    wp, kp, bias = _packed_conv(wt, b, a.dtype)
    for threads in (1, 2):  # rows or 16-channel blocks per thread
        y = run(a72, 0, threads, a, wp, kp, bias, rqp, out_dt, expect.shape, rows, k)
        np.testing.assert_array_equal(y.astype(np.int64), expect)
    raw = run(a72, 0, 1, a, wp, kp, bias, None, np.dtype(np.int64), acc.shape, rows, k)
    np.testing.assert_array_equal(raw, acc)


@settings(max_examples=20, deadline=None)
@given(conv_case(depthwise=False))
def test_conv_nhwc_a72_matches_reference(a72, case):
    x, wt, b, attrs, (rqp, out_dt) = case
    acc = conv(x, wt, b, **attrs)
    expect = nhwc(_rq(acc, rqp, (1, -1, 1, 1)))
    wp, kp, bias = _packed_conv(wt, b, x.dtype)
    shape = (*x.shape, wt.shape[0], *acc.shape[2:], *wt.shape[2:], *attrs["strides"],
             *attrs["dilations"], attrs["pads"][0], attrs["pads"][1], attrs["group"])
    for threads in (1, 3):
        y = run(a72, 1, threads, nhwc(x), wp, kp, bias, rqp, out_dt, expect.shape, shape=shape)
        np.testing.assert_array_equal(y.astype(np.int64), expect)
