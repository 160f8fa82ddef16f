"""IR ops for third-party integer formats (NEMO, onnxruntime QDQ/QOperator, QONNX).

``RequantDiv`` (NEMO)
    ``y = clip(R((x*mul + add) / div), lo, hi)`` for any positive integer ``div``, with
    ``R`` = floor (``rounding="floor"``) or truncation toward zero (``"trunc"``, what an
    integer ``Div`` or a float->int ``Cast`` computes). Exact in int64.

``QLinearRequant`` (onnxruntime)
    ``y = clip(rint(fp32(acc) * fp32(multiplier)) + zero_point, lo, hi)`` -- the
    requantisation of onnxruntime's CPU kernels (MLAS ``MlasRequantizeOutput``): the int32
    accumulator is converted to float32 (round to nearest even above 2^24), multiplied in
    float32 by the float32 multiplier, rounded half to even, offset and saturated.

``QLinearAddOrt``, ``QLinearAvgPoolOrt``: onnxruntime's QLinearAdd and
QLinearGlobalAveragePool arithmetic (docstrings below).

``Quant``, ``BipolarQuant``, ``Trunc`` (QONNX, float carriers): the qonnx executor's
definitions (docstrings below).
"""

from __future__ import annotations

import numpy as np

from edgeq.engine.backends.reference._common import INT64_MAX, reject_unknown, widen
from edgeq.engine.backends.reference.registry import register
from edgeq.errors import IntegerOverflowError
from edgeq.numerics import narrowest_dtype, to_integers
from edgeq.numerics.requant import check_fits

ROUNDINGS = ("floor", "trunc")


def _ints(x, what):
    return to_integers(np.asarray(x), what)


@register("RequantDiv")
def requant_div(x, mul, add, *, div=1, rounding="floor", lo=None, hi=None, **extra):
    """``y = clip(R((x*mul + add) / div), lo, hi)``, exact in int64.

    Rounding ``R``: ``"floor"`` rounds toward -inf; ``"trunc"`` rounds toward zero (C
    integer division, ONNX integer ``Div``, a float->int ``Cast``). ``div`` is any
    positive integer (NEMO divides by 2^k and by 2^k - 1). Overflow: raises
    IntegerOverflowError when ``x*mul + add`` leaves int64 -- never wraps.
    """
    reject_unknown("RequantDiv", extra)
    if lo is None or hi is None or int(lo) > int(hi):
        raise ValueError(f"RequantDiv: need lo <= hi, got lo={lo}, hi={hi}")
    if int(div) < 1 or rounding not in ROUNDINGS:
        raise ValueError(f"RequantDiv: div={div} must be >= 1 and rounding in {ROUNDINGS}")
    x = _ints(x, "RequantDiv input").astype(np.int64)
    mul = _ints(mul, "RequantDiv mul").astype(np.int64)
    add = _ints(add, "RequantDiv add").astype(np.int64)
    check_fits(x, mul, add, 64, "RequantDiv")
    v = x * mul + add
    q = np.floor_divide(v, np.int64(div))
    if rounding == "trunc":  # toward zero: negative inexact quotients move up by one
        q = q + ((v < 0) & (q * np.int64(div) != v))
    lo, hi = int(lo), int(hi)
    return np.clip(q, lo, hi).astype(narrowest_dtype(lo, hi))


def _fp32_requant(acc, multiplier, zero_point, lo, hi):
    """MLAS requantisation of an int32 accumulator (see module docstring)."""
    acc = widen(np.asarray(acc), "QLinearRequant")
    if acc.size and int(np.abs(acc).max()) > 2**31 - 1:
        raise IntegerOverflowError("QLinearRequant: accumulator leaves int32")
    scaled = acc.astype(np.float32) * np.asarray(multiplier, dtype=np.float32)
    q = np.rint(scaled).astype(np.float64) + np.asarray(zero_point, dtype=np.float64)
    return np.clip(q, lo, hi).astype(np.int64)


@register("QLinearRequant")
def qlinear_requant(acc, multiplier, zero_point, *, lo=None, hi=None, **extra):
    """``y = clip(rint(fp32(acc) * fp32(multiplier)) + zero_point, lo, hi)``.

    onnxruntime's CPU requantisation (QLinearConv, QLinearMatMul, QGemm, and QDQ groups
    it fuses into them): ``acc`` is the exact int32 accumulator (bias included);
    ``fp32(acc)`` rounds to nearest even when |acc| > 2^24; the product is one float32
    multiplication (``multiplier`` = fp32(fp32(s_x*s_w)/s_y), per tensor or per output
    channel, shaped to broadcast); ``rint`` rounds half to even; the zero point is added
    after rounding and the result saturates to ``[lo, hi]`` (the output type's range).
    An accumulator outside int32 raises IntegerOverflowError (onnxruntime would wrap).
    """
    reject_unknown("QLinearRequant", extra)
    lo, hi = int(lo), int(hi)
    return _fp32_requant(acc, multiplier, zero_point, lo, hi).astype(narrowest_dtype(lo, hi))


def _scalar(a, dtype=np.float32):
    return dtype(np.ravel(np.asarray(a))[0])


def _fma32(x, y, z):
    """float32 fused multiply-add: ``x*y + z`` rounded once to float32. The exact value
    is formed in float64 (x: a small integer, y, z: float32, so the product is exact and
    the sum needs fewer than 53 bits here) and rounded to float32 once."""
    return (np.asarray(x, np.float64) * np.float64(y) + np.asarray(z, np.float64)).astype(
        np.float32)


@register("QLinearAddOrt")
def qlinear_add_ort(a, a_scale, a_zp, b, b_scale, b_zp, c_scale, c_zp, *, lo=None, hi=None,
                    u8_shift=0, **extra):
    """onnxruntime's com.microsoft.QLinearAdd (MLAS AVX2 kernel), in float32:

    ``r_a = fp32(s_a/s_c)``, ``r_b = fp32(s_b/s_c)``,
    ``f = fp32(c_zp) - fp32(r_a*a_zp + r_b*b_zp)`` (the product sum with one rounding),
    then per element ``y = clip(rint(fma(a, r_a, fma(b, r_b, f))), lo, hi)``: two fused
    multiply-adds on the raw integers, each rounded once to float32, then rounded half to
    even and saturated. ``u8_shift=128``: int8 tensors that onnxruntime moved to uint8
    (QDQ files on x86) -- values and zero points +128 before, -128 after.
    Overflow: none (float32 of 8-bit values, then saturation).
    """
    reject_unknown("QLinearAddOrt", extra)
    ra = np.float32(_scalar(a_scale) / _scalar(c_scale))
    rb = np.float32(_scalar(b_scale) / _scalar(c_scale))
    sh = int(u8_shift)
    za, zb, zc = (int(_scalar(z, np.int64)) + sh for z in (a_zp, b_zp, c_zp))
    fixed = np.float32(np.float32(zc) - _fma32(za, ra, np.float32(rb * np.float32(zb))))
    a = np.asarray(a).astype(np.int64) + sh
    b = np.asarray(b).astype(np.int64) + sh
    q = np.rint(_fma32(a, ra, _fma32(b, rb, fixed))) - sh
    lo, hi = int(lo), int(hi)
    return np.clip(q.astype(np.float64), lo, hi).astype(narrowest_dtype(lo, hi))


@register("QLinearAvgPoolOrt")
def qlinear_global_avg_ort(x, x_scale, x_zp, y_scale, y_zp, *, lo=None, hi=None, **extra):
    """onnxruntime's QLinearGlobalAveragePool (NCHW, MLAS
    ``MlasQLinearGlobalAveragePoolNchw``): per channel the exact int32 sum ``S`` of the
    N = H*W inputs, then ``y = clip(rint(fp32(S - N*x_zp) * fp32(s_x / (s_y*N))) + y_zp)``
    (float32 scale, rounded half to even). Overflow: a sum leaving int32 raises
    IntegerOverflowError (onnxruntime would wrap).
    """
    reject_unknown("QLinearAvgPoolOrt", extra)
    x = np.asarray(x, np.int64)
    n = int(np.prod(x.shape[2:]))
    s = x.reshape(x.shape[0], x.shape[1], n).sum(axis=2, keepdims=False)
    acc = s - np.int64(n) * np.int64(_scalar(x_zp, np.int64))
    scale = np.float32(_scalar(x_scale) / (_scalar(y_scale) * np.float32(n)))
    lo, hi = int(lo), int(hi)
    y = _fp32_requant(acc, scale, _scalar(y_zp, np.int64), lo, hi).astype(narrowest_dtype(lo, hi))
    return y.reshape(x.shape[:2] + (1,) * (x.ndim - 2))


# -- QONNX (float carriers) --------------------------------------------------------------
def _qonnx_round(x, mode: str):
    mode = mode.upper()
    if mode == "ROUND":
        return np.round(x)  # half to even
    if mode == "CEIL":
        return np.ceil(x)
    if mode == "FLOOR":
        return np.floor(x)
    raise ValueError(f"rounding_mode {mode!r} is not implemented (ROUND, CEIL, FLOOR)")


def qonnx_bounds(bits, signed: bool, narrow: bool):
    """Integer bounds of a qonnx ``Quant``: signed [-2^(b-1) (+1 if narrow), 2^(b-1)-1],
    unsigned [0, 2^b - 1 (-1 if narrow)]."""
    bits = np.asarray(bits, dtype=np.float64)
    if signed:
        lo = -(2.0 ** (bits - 1)) + (1.0 if narrow else 0.0)
        hi = 2.0 ** (bits - 1) - 1.0
    else:
        lo = np.zeros_like(bits)
        hi = 2.0**bits - 1.0 - (1.0 if narrow else 0.0)
    return lo, hi


@register("Quant")
def qonnx_quant(x, scale, zeropt, bitwidth, *, signed=1, narrow=0, rounding_mode="ROUND",
                **extra):
    """QONNX ``Quant``/``IntQuant`` (float carrier), as qonnx's executor computes it:
    ``q = R(clip(x/scale + zeropt, lo, hi))``, ``y = (q - zeropt) * scale``, bounds from
    :func:`qonnx_bounds`; R is half-to-even (ROUND), ceil or floor. The arithmetic is
    float32 when the inputs are float32 (qonnx runs NumPy on the model's dtype).
    Overflow: none (float arithmetic; the clip bounds the integer).
    """
    reject_unknown("Quant", extra)
    dt = np.result_type(np.asarray(x).dtype, np.float32)
    x, scale, zeropt = (np.asarray(v, dtype=dt) for v in (x, scale, zeropt))
    lo, hi = qonnx_bounds(bitwidth, bool(signed), bool(narrow))
    q = np.clip(x / scale + zeropt, lo.astype(dt), hi.astype(dt))
    q = _qonnx_round(q, rounding_mode)
    return ((q - zeropt) * scale).astype(dt)


@register("BipolarQuant")
def qonnx_bipolar(x, scale, **extra):
    """QONNX ``BipolarQuant``: ``y = (x >= 0 ? +1 : -1) * scale`` (float carrier).

    Rounding: none beyond the sign decision (0 maps to +1). Overflow: none (float).
    """
    reject_unknown("BipolarQuant", extra)
    x = np.asarray(x)
    dt = np.result_type(x.dtype, np.float32)
    return (np.where(x >= 0, 1.0, -1.0).astype(dt) * np.asarray(scale, dtype=dt)).astype(dt)


@register("Trunc")
def qonnx_trunc(x, scale, zeropt, in_bitwidth, out_bitwidth, *, rounding_mode="FLOOR",
                **extra):
    """QONNX ``Trunc`` (version 1, float carrier), as qonnx's executor computes it:
    ``q = round_half_even(x/scale + zeropt)`` (re-snap to the input grid), then
    ``q = R(q / 2^(in_bitwidth - out_bitwidth))`` with R floor (default), ceil or
    half-to-even, then ``y = (q - zeropt) * scale * 2^(in_bitwidth - out_bitwidth)``.
    Overflow: none (float arithmetic).
    """
    reject_unknown("Trunc", extra)
    dt = np.result_type(np.asarray(x).dtype, np.float32)
    x, scale, zeropt = (np.asarray(v, dtype=dt) for v in (x, scale, zeropt))
    q = np.round(x / scale + zeropt)
    k = np.asarray(2.0, dt) ** (np.asarray(in_bitwidth, dt) - np.asarray(out_bitwidth, dt))
    q = _qonnx_round(q / k, rounding_mode)
    return ((q - zeropt) * scale * k).astype(dt)


# -- the float boundary of QDQ files -------------------------------------------------------
INT_TYPE_RANGES = {"uint8": (0, 255), "int8": (-128, 127), "uint16": (0, 65535),
                   "int16": (-32768, 32767), "uint4": (0, 15), "int4": (-8, 7),
                   "int32": (-(2**31), 2**31 - 1)}


def _along(a, rank: int, axis: int):
    a = np.asarray(a)
    if a.ndim == 0 or a.size == 1:
        return a.reshape(())
    shape = [1] * rank
    shape[axis % rank] = a.size
    return a.reshape(shape)


@register("QuantizeLinear")
def quantize_linear(x, y_scale, y_zero_point=None, *, axis=1, saturate=1, block_size=0,
                    output_dtype=0, **extra):
    """ONNX QuantizeLinear as onnxruntime's MLAS computes it:
    ``y = saturate(rint(fp32(x) / fp32(scale)) + zero_point)`` -- one float32 division,
    rounded half to even, zero point added, saturated to the zero point's type (uint8
    when absent; 4-bit types are held in int8/uint8). Per-axis scales along ``axis``.
    Overflow: none, the result saturates. Blocked quantisation is not implemented.
    """
    reject_unknown("QuantizeLinear", extra)
    if block_size or output_dtype:
        raise ValueError("QuantizeLinear: block_size/output_dtype are not implemented")
    x = np.asarray(x, dtype=np.float32)
    zp = np.zeros((), np.uint8) if y_zero_point is None else np.asarray(y_zero_point)
    lo, hi = INT_TYPE_RANGES[zp.dtype.name]
    q = np.rint(x / _along(np.asarray(y_scale, np.float32), x.ndim, axis))
    q = q.astype(np.float64) + _along(zp.astype(np.float64), x.ndim, axis)
    return np.clip(q, lo, hi).astype(narrowest_dtype(lo, hi))


@register("DequantizeLinear")
def dequantize_linear(x, x_scale, x_zero_point=None, *, axis=1, block_size=0, **extra):
    """ONNX DequantizeLinear as onnxruntime computes it: ``y = fp32(x - zero_point) *
    fp32(scale)`` (exact integer difference, one float32 product, so one rounding).
    Per-axis scales along ``axis``. Overflow: none (the difference is exact in int64).
    """
    reject_unknown("DequantizeLinear", extra)
    if block_size:
        raise ValueError("DequantizeLinear: block_size is not implemented")
    x = np.asarray(x).astype(np.int64)
    zp = 0 if x_zero_point is None else _along(np.asarray(x_zero_point).astype(np.int64),
                                                x.ndim, axis)
    scale = _along(np.asarray(x_scale, np.float32), x.ndim, axis)
    return ((x - zp).astype(np.float32) * scale).astype(np.float32)


__all__ = ["INT64_MAX", "qonnx_bounds"]
