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

ROUNDINGS = ("floor", "trunc", "half_even")


def _ints(x, what):
    return to_integers(np.asarray(x), what)


@register("RequantDiv")
def requant_div(x, mul, add, *, div=1, rounding="floor", lo=None, hi=None, **extra):
    """``y = clip(R((x*mul + add) / div), lo, hi)``, exact in int64.

    Rounding ``R``: ``"floor"`` rounds toward -inf; ``"trunc"`` rounds toward zero (C
    integer division, ONNX integer ``Div``, a float->int ``Cast``); ``"half_even"`` rounds
    to nearest, ties to even (QONNX ``ROUND``). ``div`` is any
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
    r = v - q * np.int64(div)  # 0 <= r < div
    if rounding == "trunc":  # toward zero: negative inexact quotients move up by one
        q = q + ((v < 0) & (r != 0))
    elif rounding == "half_even":
        q = q + ((2 * r > div) | ((2 * r == div) & (q % 2 == 1)))
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
# Semantics read from qonnx 1.0.0 (src/qonnx/custom_op/general/{intquant,bipolar_quant,
# trunc}.py): NumPy on the tensors' own dtype (float32 for Brevitas exports), in this order.
QONNX_ROUNDING = ("ROUND", "HALF_EVEN", "CEIL", "FLOOR", "UP", "DOWN", "HALF_UP", "HALF_DOWN")


def qonnx_round(x, mode: str):
    """qonnx's ``resolve_rounding_mode``: ROUND/HALF_EVEN half to even, CEIL, FLOOR, UP
    (away from zero), DOWN (toward zero), HALF_UP / HALF_DOWN (ties away from / toward
    zero)."""
    m = str(mode).upper()
    if m in ("ROUND", "HALF_EVEN"):
        return np.round(x)
    if m in ("CEIL", "FLOOR", "DOWN"):
        return {"CEIL": np.ceil, "FLOOR": np.floor, "DOWN": np.fix}[m](x)
    if m == "UP":
        return np.sign(x) * np.ceil(np.abs(x))
    if m == "HALF_UP":
        return np.sign(x) * np.floor(np.abs(x) + 0.5)
    if m == "HALF_DOWN":
        return np.sign(x) * np.ceil(np.abs(x) - 0.5)
    raise ValueError(f"rounding_mode {mode!r} is not one of {QONNX_ROUNDING}")


def qonnx_bounds(signed: bool, narrow: bool, bits):
    """qonnx ``min_int``/``max_int``: signed [-2^(b-1) (+1 if narrow), 2^(b-1) - 1];
    unsigned [0, 2^b - 1 (-1 if narrow)]."""
    bits = np.asarray(bits)
    if signed:
        lo = -(2 ** (bits - 1)) + (1 if narrow else 0)
        return lo, 2 ** (bits - 1) - 1
    return 0 * bits, 2**bits - 1 - (1 if narrow else 0)


def _clamp(y, lo, hi):
    y = np.where(y > hi, np.asarray(hi).astype(y.dtype), y)
    return np.where(y < lo, np.asarray(lo).astype(y.dtype), y)


def _carrier(x, *others):
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    return (x,) + tuple(np.asarray(o) for o in others)


@register("Quant")
def qonnx_quant(x, scale, zeropt, bitwidth, *, signed=1, narrow=1, rounding_mode="ROUND",
                **extra):
    """QONNX ``Quant`` (= ``IntQuant``), float carrier, as qonnx's executor computes it:
    ``y = x/scale + zeropt``; a 1-bit signed quantiser gives ±1 by ``y >= 0``; otherwise
    ``y`` is clamped to :func:`qonnx_bounds` and rounded (:func:`qonnx_round`, default
    ROUND = half to even); the output is ``(y - zeropt) * scale``. Missing attributes take
    qonnx 1.0.0's defaults (signed=1, narrow=1, ROUND). Overflow: none (float carrier).
    """
    reject_unknown("Quant", extra)
    x, scale, zeropt, bitwidth = _carrier(x, scale, zeropt, bitwidth)
    y = x / scale
    y = y + zeropt
    if np.all(bitwidth == 1) and signed:
        ones = np.ones(y.shape, dtype=y.dtype)
        y = np.where(y >= 0.0, ones, -ones)
    else:
        y = qonnx_round(_clamp(y, *qonnx_bounds(bool(signed), bool(narrow), bitwidth)),
                        rounding_mode)
    return (y - zeropt) * scale


register("IntQuant")(qonnx_quant)


@register("BipolarQuant")
def qonnx_bipolar(x, scale, **extra):
    """QONNX ``BipolarQuant``: ``y = (x >= 0 ? +1 : -1) * scale`` (float carrier).

    Rounding: none beyond the sign decision (0 maps to +1). Overflow: none (float).
    """
    reject_unknown("BipolarQuant", extra)
    x, scale = _carrier(x, scale)
    ones = np.ones(x.shape, dtype=x.dtype)
    return np.where(x >= 0.0, ones, -ones) * scale


@register("Trunc")
def qonnx_trunc(x, scale, zeropt, in_bitwidth, *rest, rounding_mode="FLOOR", signed=None,
                narrow=None, **extra):
    """QONNX ``Trunc`` (float carrier), as qonnx's executor computes it.

    Version 1 (inputs ``x, scale, zeropt, in_bits, out_bits``): ``y = round(x/scale +
    zeropt)`` (half to even), ``y = R(y / 2^(in_bits - out_bits))``, output
    ``(y - zeropt) * scale`` -- qonnx keeps the *input* scale and zero point.
    Version 2 (inputs ``…, out_scale, out_bits``, attributes ``signed``/``narrow``): the
    divisor is ``2^round(log2(out_scale/scale))``, ``y`` is clamped to the output bit width
    before ``R``, and the output is ``(y - zeropt/divisor) * out_scale``.
    ``R`` is :func:`qonnx_round` of ``rounding_mode`` (default FLOOR). Overflow: none.
    """
    reject_unknown("Trunc", extra)
    x, scale, zeropt, in_bitwidth = _carrier(x, scale, zeropt, in_bitwidth)
    y = np.round(x / scale + zeropt)
    if len(rest) == 1:  # version 1
        if signed is not None or narrow is not None:
            raise ValueError("Trunc: signed/narrow belong to version 2 (six inputs)")
        y = qonnx_round(y / 2.0 ** (in_bitwidth - np.asarray(rest[0])), rounding_mode)
        return (y - zeropt) * scale
    if len(rest) != 2:
        raise ValueError(f"Trunc: {4 + len(rest)} inputs; version 1 takes 5, version 2 six")
    out_scale, out_bits = (np.asarray(r) for r in rest)
    k = 2 ** np.round(np.log2(out_scale / scale))
    y = y / k
    y = _clamp(y, *qonnx_bounds(bool(1 if signed is None else signed), bool(narrow or 0),
                                out_bits))
    y = qonnx_round(y, rounding_mode)
    return (y - zeropt / k) * out_scale


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
