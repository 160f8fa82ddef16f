"""eq_thirdparty.c alone, through ctypes, against the reference backend's third-party ops.

The expected values are the reference kernels' (reference/thirdparty.py, themselves
checked bit for bit against onnxruntime and the qonnx executor in tests/engine/onnx).
Hypothesis draws shapes, per-channel constants and values, with ties (x.5 after scaling)
forced in, since rounding is where float32 kernels differ.
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
from edgeq.engine.backends.reference import thirdparty as ref
from edgeq.engine.backends.reference.tensor import cast as ref_cast

CODES = {np.dtype(k): i for i, k in enumerate(
    [np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.int64, np.float32,
     np.float64])}
F, I64, SZ = C.c_float, C.c_int64, C.c_size_t
EXAMPLES = dict(max_examples=60, deadline=None)


@pytest.fixture(scope="module", params=["-march=native", "-march=x86-64"])
def lib(request, tmp_path_factory):
    """The kernel library as a shared object: the host target's flags, and the plain
    x86-64 build (no hardware FMA: fmaf is libm's, still exactly rounded)."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc not found")
    d = tmp_path_factory.mktemp("tp")
    for name in project.KERNEL_FILES:
        (d / name).write_text(project.kernel_source(name))
    subprocess.run(["gcc", "-std=c99", "-O3", request.param, "-Wall", "-Wextra", "-Werror",
                    "-shared", "-fPIC", "-o", "libtp.so", "eq_common.c", "eq_thirdparty.c",
                    "-lm"], cwd=d, check=True)
    return C.CDLL(str(d / "libtp.so"))


def p(a: np.ndarray):
    return a.ctypes.data_as(C.c_void_p)


def f32(v) -> np.ndarray:
    return np.ascontiguousarray(v, dtype=np.float32)


def i64(v) -> np.ndarray:
    return np.ascontiguousarray(v, dtype=np.int64)


def out_like(expected: np.ndarray) -> np.ndarray:
    return np.zeros(expected.shape, expected.dtype)


@st.composite
def split(draw):
    """(outer, channels, inner) of a tensor with per-channel constants on the middle axis."""
    return draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 6))


def _rng(draw):
    return np.random.default_rng(draw(st.integers(0, 2**32 - 1)))


OUT_RANGES = [(0, 255), (-128, 127), (-32768, 32767)]


@settings(**EXAMPLES)
@given(split(), st.data())
def test_qlinear_requant(lib, shp, data):
    outer, ch, inner = shp
    rng = _rng(data.draw)
    tie = data.draw(st.booleans())
    if tie:  # a power-of-two multiplier and odd accumulators: every product is x.5
        e = rng.integers(1, 4, ch)
        mult = 2.0 ** -e
        acc = (2 * rng.integers(-2**20, 2**20, (outer, ch, inner)) + 1) * (2 ** (e - 1)).reshape(
            1, ch, 1)
    else:
        mult = rng.uniform(1e-6, 2.0, ch)
        acc = rng.integers(-(2**31) + 1, 2**31, (outer, ch, inner))
    # one zero point (onnxruntime's case, the kernel's vector path) or one per channel
    zp = rng.integers(-128, 128, ch) if data.draw(st.booleans()) else np.full(ch, 7)
    lo, hi = data.draw(st.sampled_from(OUT_RANGES))
    want = ref.qlinear_requant(acc, f32(mult).reshape(1, ch, 1), zp.reshape(1, ch, 1), lo=lo,
                               hi=hi)
    x, y = i64(acc), out_like(want)
    lib.eq_qlinear_requant(p(x), CODES[x.dtype], SZ(outer), ch, SZ(inner), p(f32(mult)),
                           p(i64(zp)), I64(lo), I64(hi), p(y), CODES[y.dtype])
    np.testing.assert_array_equal(y, want)


@settings(**EXAMPLES)
@given(st.integers(1, 40), st.sampled_from([np.uint8, np.int8]), st.booleans(), st.data())
def test_qlinear_add_ort(lib, n, dtype, shift, data):
    rng = _rng(data.draw)
    lo, hi = (0, 255) if dtype == np.uint8 else (-128, 127)
    a, b = (rng.integers(lo, hi + 1, n).astype(dtype) for _ in range(2))
    z = rng.integers(lo, hi + 1, 3)
    if data.draw(st.booleans()):  # ratios 0.5 / 0.25: ties
        sc = np.float32(rng.uniform(0.01, 0.1))
        sa, sb = sc * np.float32(0.5), sc * np.float32(0.25)
    else:
        sa, sb, sc = (np.float32(v) for v in rng.uniform(0.001, 0.2, 3))
    sh = 128 if shift and dtype == np.int8 else 0
    want = ref.qlinear_add_ort(a, sa, dtype(z[0]), b, sb, dtype(z[1]), sc, dtype(z[2]), lo=lo,
                               hi=hi, u8_shift=sh)
    y = out_like(want)
    lib.eq_qlinear_add_ort(p(a), CODES[a.dtype], p(b), CODES[b.dtype], SZ(n), F(sa), I64(z[0]),
                           F(sb), I64(z[1]), F(sc), I64(z[2]), sh, I64(lo), I64(hi), p(y),
                           CODES[y.dtype])
    np.testing.assert_array_equal(y, want)


@settings(**EXAMPLES)
@given(st.integers(1, 2), st.integers(1, 5), st.integers(1, 7), st.integers(1, 7),
       st.sampled_from([np.uint8, np.int8]), st.data())
def test_qlinear_global_average_pool_ort(lib, n, c, h, w, dtype, data):
    rng = _rng(data.draw)
    lo, hi = (0, 255) if dtype == np.uint8 else (-128, 127)
    x = rng.integers(lo, hi + 1, (n, c, h, w)).astype(dtype)
    zx, zy = (dtype(v) for v in rng.integers(lo, hi + 1, 2))
    sx = np.float32(rng.uniform(0.01, 0.1))
    # s_y = s_x / 2: scale = 1 / (2N) rounded, so odd window sums sit near or on ties
    sy = np.float32(sx / 2) if data.draw(st.booleans()) else np.float32(rng.uniform(0.01, 0.1))
    want = ref.qlinear_global_avg_ort(x, sx, zx, sy, zy, lo=lo, hi=hi)
    y = out_like(want)
    lib.eq_qlinear_gavg_ort(p(x), CODES[x.dtype], SZ(n * c), SZ(h * w), F(sx), I64(int(zx)),
                            F(sy), I64(int(zy)), I64(lo), I64(hi), p(y), CODES[y.dtype])
    np.testing.assert_array_equal(y, want)


@settings(**EXAMPLES)
@given(split(), st.sampled_from([np.uint8, np.int8, np.int16]), st.data())
def test_quantize_linear(lib, shp, zdt, data):
    outer, ch, inner = shp
    rng = _rng(data.draw)
    info = np.iinfo(zdt)
    per_channel = data.draw(st.booleans())
    k = ch if per_channel else 1
    scale = f32(2.0 ** rng.integers(-6, 2, k) * rng.choice([1.0, 0.75, 0.1], k))
    zp = rng.integers(max(info.min, -200), min(info.max, 200) + 1, k).astype(zdt)
    halves = (rng.integers(-300, 300, (outer, ch, inner)) + 0.5).astype(np.float32)
    x = np.where(rng.random((outer, ch, inner)) < 0.5,
                 halves * scale.reshape(1, -1, 1).astype(np.float32),
                 rng.normal(0, 20, (outer, ch, inner))).astype(np.float32)
    want = ref.quantize_linear(x, scale if per_channel else scale[0],
                               zp if per_channel else zp[0], axis=1)
    y = out_like(want)
    lo, hi = ref.INT_TYPE_RANGES[np.dtype(zdt).name]
    lib.eq_quantize_linear(p(x), CODES[x.dtype], SZ(outer), ch, SZ(inner),
                           p(f32(np.broadcast_to(scale, ch))), p(i64(np.broadcast_to(zp, ch))),
                           I64(lo), I64(hi), p(y), CODES[y.dtype])
    np.testing.assert_array_equal(y, want)


@settings(**EXAMPLES)
@given(split(), st.sampled_from([np.uint8, np.int8, np.int32]), st.data())
def test_dequantize_linear(lib, shp, dtype, data):
    outer, ch, inner = shp
    rng = _rng(data.draw)
    info = np.iinfo(dtype)
    x = rng.integers(info.min, int(info.max) + 1, (outer, ch, inner)).astype(dtype)
    scale = f32(rng.uniform(1e-4, 1.0, ch))
    zp = rng.integers(max(info.min, -100), min(info.max, 100), ch).astype(dtype)
    want = ref.dequantize_linear(x, scale, zp, axis=1)
    y = out_like(want)
    lib.eq_dequantize_linear(p(x), CODES[x.dtype], SZ(outer), ch, SZ(inner), p(scale),
                             p(i64(zp)), p(y))
    np.testing.assert_array_equal(y, want)


@settings(**EXAMPLES)
@given(split(), st.sampled_from(["floor", "trunc", "half_even"]), st.data())
def test_requant_div(lib, shp, rounding, data):
    outer, ch, inner = shp
    rng = _rng(data.draw)
    div = int(data.draw(st.sampled_from([1, 2, 3, 4095, 4096, 768, 2**20 + 1])))
    x = rng.integers(-2**30, 2**30, (outer, ch, inner))
    mul, add = rng.integers(-2**10, 2**10, ch), rng.integers(-2**20, 2**20, ch)
    if data.draw(st.booleans()):  # exact halves of div: ties for half_even
        x = (rng.integers(-1000, 1000, (outer, ch, inner)) * div + div // 2)
        mul, add = np.ones(ch, np.int64), np.zeros(ch, np.int64)
    lo, hi = data.draw(st.sampled_from(OUT_RANGES + [(-2**40, 2**40)]))
    want = ref.requant_div(x, mul.reshape(1, ch, 1), add.reshape(1, ch, 1), div=div,
                           rounding=rounding, lo=lo, hi=hi)
    xi, y = i64(x), out_like(want)
    lib.eq_requant_div(p(xi), CODES[xi.dtype], SZ(outer), ch, SZ(inner), p(i64(mul)), p(i64(add)),
                       I64(div), {"floor": 0, "trunc": 1, "half_even": 2}[rounding], I64(lo),
                       I64(hi), p(y), CODES[y.dtype])
    np.testing.assert_array_equal(y, want)


MODES = ["ROUND", "HALF_EVEN", "CEIL", "FLOOR", "DOWN", "UP", "HALF_UP", "HALF_DOWN"]
MODE_CODE = {"ROUND": 0, "HALF_EVEN": 0, "CEIL": 1, "FLOOR": 2, "DOWN": 3, "UP": 4,
             "HALF_UP": 5, "HALF_DOWN": 6}


def _carrier(rng, shape, scale):
    """float32 values, half of them exact ties (k + 0.5) * scale."""
    halves = (rng.integers(-200, 200, shape) + 0.5) * scale
    return np.where(rng.random(shape) < 0.5, halves, rng.normal(0, 3, shape)).astype(np.float32)


@settings(**EXAMPLES)
@given(split(), st.sampled_from(MODES), st.integers(1, 8), st.booleans(), st.booleans(),
       st.data())
def test_qonnx_quant(lib, shp, mode, bits, signed, narrow, data):
    outer, ch, inner = shp
    rng = _rng(data.draw)
    scale = f32(2.0 ** rng.integers(-4, 1, ch) * rng.choice([1.0, 0.3], ch))
    zp = f32(rng.integers(-2, 3, ch)) if data.draw(st.booleans()) else f32(np.zeros(ch))
    x = _carrier(rng, (outer, ch, inner), scale.reshape(1, ch, 1))
    b = np.float32(bits)
    want = ref.qonnx_quant(x, scale.reshape(1, ch, 1), zp.reshape(1, ch, 1), b, signed=signed,
                           narrow=narrow, rounding_mode=mode)
    lo, hi = (np.float32(v) for v in ref.qonnx_bounds(signed, narrow, b))
    y = out_like(want)
    lib.eq_qonnx_quant(p(x), SZ(outer), ch, SZ(inner), p(scale), p(zp), F(lo), F(hi),
                       int(bits == 1 and signed), MODE_CODE[mode], p(y))
    np.testing.assert_array_equal(y, want)


@settings(**EXAMPLES)
@given(split(), st.data())
def test_qonnx_bipolar(lib, shp, data):
    outer, ch, inner = shp
    rng = _rng(data.draw)
    scale = f32(rng.uniform(0.1, 2.0, ch))
    x = rng.normal(0, 1, (outer, ch, inner)).astype(np.float32)
    x.ravel()[::3] = 0.0  # 0 maps to +1
    want = ref.qonnx_bipolar(x, scale.reshape(1, ch, 1))
    y = out_like(want)
    lib.eq_qonnx_bipolar(p(x), SZ(outer), ch, SZ(inner), p(scale), p(y))
    np.testing.assert_array_equal(y, want)


@settings(**EXAMPLES)
@given(st.integers(1, 50), st.sampled_from(MODES), st.integers(1, 2), st.integers(4, 10),
       st.integers(1, 4), st.data())
def test_qonnx_trunc(lib, n, mode, version, in_bits, drop, data):
    """Both versions; the kernel's constants are computed as the generator does."""
    rng = _rng(data.draw)
    scale, zp = np.float32(2.0 ** -rng.integers(1, 5)), np.float32(rng.integers(-2, 3))
    ib, ob = np.float32(in_bits), np.float32(max(in_bits - drop, 1))
    x = _carrier(rng, (n,), scale)
    if version == 1:
        want = ref.qonnx_trunc(x, scale, zp, ib, ob, rounding_mode=mode)
        k, clamp, lo, hi, ozp, osc = 2.0 ** (ib - ob), 0, 0.0, 0.0, zp, scale
    else:
        out_scale = np.float32(scale * np.float32(2.0 ** drop))
        signed = data.draw(st.booleans())
        want = ref.qonnx_trunc(x, scale, zp, ib, out_scale, ob, rounding_mode=mode,
                               signed=int(signed), narrow=0)
        k = 2 ** np.round(np.log2(out_scale / scale))
        lo, hi = ref.qonnx_bounds(signed, False, ob)
        clamp, ozp, osc = 1, zp / k, out_scale
    y = out_like(want)
    lib.eq_qonnx_trunc(p(x), SZ(n), F(scale), F(zp), F(k), clamp, F(lo), F(hi), MODE_CODE[mode],
                       F(ozp), F(osc), p(y))
    np.testing.assert_array_equal(y, want)


@pytest.mark.parametrize("src, dst, to", [(np.float32, np.int32, 6), (np.float32, np.int64, 7),
                                          (np.int32, np.float32, 1), (np.uint8, np.int16, 5)])
def test_cast(lib, src, dst, to):
    rng = np.random.default_rng(0)
    x = (rng.normal(0, 1000, 64) if np.dtype(src).kind == "f"
         else rng.integers(0, 255, 64)).astype(src)
    x[:4] = np.array([2.5, -2.5, 0.99, -0.99]).astype(src) if np.dtype(src).kind == "f" else x[:4]
    want = ref_cast(x, to=to)
    y = out_like(want)
    lib.eq_cast(p(x), CODES[x.dtype], SZ(x.size), p(y), CODES[y.dtype])
    np.testing.assert_array_equal(y, want)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_qlinear_add_ort_every_pair_needs_the_fused_multiply_adds(lib, dtype):
    """All 65536 (a, b) pairs for a few scales: equal to the reference, and the test has
    the power to see a kernel without FMA (the unfused float32 reading differs)."""
    lo, hi = (0, 255) if dtype == np.uint8 else (-128, 127)
    grid = np.arange(lo, hi + 1)
    a = np.repeat(grid, 256).astype(dtype)
    b = np.tile(grid, 256).astype(dtype)
    unfused_differs = False
    for seed in (0, 4, 10, 20):  # seed 4: one pair where fusing decides the rounding
        rng = np.random.default_rng(seed)
        sa, sb, sc = (np.float32(v) for v in rng.uniform(0.003, 0.2, 3))
        za, zb, zc = (int(v) for v in rng.integers(lo, hi + 1, 3))
        want = ref.qlinear_add_ort(a, sa, dtype(za), b, sb, dtype(zb), sc, dtype(zc), lo=lo,
                                   hi=hi)
        y = out_like(want)
        lib.eq_qlinear_add_ort(p(a), CODES[a.dtype], p(b), CODES[b.dtype], SZ(a.size), F(sa),
                               I64(za), F(sb), I64(zb), F(sc), I64(zc), 0, I64(lo), I64(hi),
                               p(y), CODES[y.dtype])
        np.testing.assert_array_equal(y, want)
        ra, rb = np.float32(sa / sc), np.float32(sb / sc)
        fixed = np.float32(zc) - (np.float32(ra * np.float32(za)) + np.float32(rb * np.float32(zb)))
        plain = np.rint(a.astype(np.float32) * ra + (b.astype(np.float32) * rb + fixed))
        unfused_differs |= bool((np.clip(plain, lo, hi) != want).any())
    assert unfused_differs


@settings(**EXAMPLES)
@given(st.integers(1, 4), st.integers(1, 5), st.integers(1, 5),
       st.lists(st.integers(0, 2), min_size=4, max_size=4),
       st.sampled_from([np.uint8, np.int8, np.int16, np.float32]), st.data())
def test_pad_const(lib, planes, h, w, pads, dtype, data):
    from edgeq.engine.backends.reference.pad import pad

    rng = _rng(data.draw)
    x = rng.integers(-100, 100, (1, planes, h, w)).astype(dtype)
    value = int(rng.integers(0, 100))
    pt, pl, pb, pr = pads
    want = pad(x, np.array([0, 0, pt, pl, 0, 0, pb, pr]), np.array(value, dtype))
    y = out_like(want)
    lib.eq_pad_const(p(x), CODES[x.dtype], SZ(planes), h, w, pt, pl, pb, pr, I64(value), p(y))
    np.testing.assert_array_equal(y, want)
