/* edgeq C kernels for the third-party integer formats (NEMO, onnxruntime QDQ/QOperator,
 * QONNX): the C twins of the reference backend's ops in
 * edgeq/engine/backends/reference/thirdparty.py (the specification, bit for bit).
 *
 * Layout: every kernel reads and writes NCHW (or any row-major tensor seen as
 * [outer][channels][inner], per-channel constants along the middle axis).
 *
 * onnxruntime's requantisation is float32 arithmetic: these kernels compute in float
 * (never double), round half to even with nearbyintf under the default rounding mode,
 * and call fmaf exactly where onnxruntime's kernels fuse a multiply-add. They must be
 * compiled without floating-point contraction (-ffp-contract=off, the default of
 * gcc -std=c99), so that no other a*b+c becomes an FMA.
 */
#ifndef EQ_THIRDPARTY_H
#define EQ_THIRDPARTY_H

#include <stddef.h>
#include <stdint.h>

/* RequantDiv rounding codes (reference: "floor", "trunc", "half_even"). */
enum eq_div_rounding { EQ_DIV_FLOOR, EQ_DIV_TRUNC, EQ_DIV_HALF_EVEN };

/* QONNX rounding_mode codes (reference: qonnx_round). */
enum eq_qonnx_round {
    EQ_QR_HALF_EVEN, EQ_QR_CEIL, EQ_QR_FLOOR, EQ_QR_DOWN, EQ_QR_UP, EQ_QR_HALF_UP,
    EQ_QR_HALF_DOWN
};

/* QLinearRequant: y = clip(rint(fp32(x) * mult[c]) + zp[c], lo, hi); x int (|x| < 2^31,
 * proven by the generator's range proof). */
void eq_qlinear_requant(const void *x, int x_dt, size_t outer, int channels, size_t inner,
                        const float *mult, const int64_t *zp, int64_t lo, int64_t hi,
                        void *y, int y_dt);

/* QLinearAddOrt on two tensors of n elements each (same shape); u8_shift is 0 or 128. */
void eq_qlinear_add_ort(const void *a, int a_dt, const void *b, int b_dt, size_t n,
                        float sa, int64_t za, float sb, int64_t zb, float sc, int64_t zc,
                        int u8_shift, int64_t lo, int64_t hi, void *y, int y_dt);

/* QLinearAvgPoolOrt (global average, NCHW): nc planes of hw elements -> nc outputs. */
void eq_qlinear_gavg_ort(const void *x, int x_dt, size_t nc, size_t hw, float sx, int64_t xzp,
                         float sy, int64_t yzp, int64_t lo, int64_t hi, void *y, int y_dt);

/* QuantizeLinear: y = clip(rint(fp32(x) / scale[c]) + zp[c], lo, hi). */
void eq_quantize_linear(const void *x, int x_dt, size_t outer, int channels, size_t inner,
                        const float *scale, const int64_t *zp, int64_t lo, int64_t hi,
                        void *y, int y_dt);

/* DequantizeLinear: y = fp32(x - zp[c]) * scale[c] (y float32). */
void eq_dequantize_linear(const void *x, int x_dt, size_t outer, int channels, size_t inner,
                          const float *scale, const int64_t *zp, float *y);

/* RequantDiv: y = clip(R((x*mul[c] + add[c]) / div), lo, hi), exact in int64 (the range
 * proof bounds x*mul + add); div >= 1. */
void eq_requant_div(const void *x, int x_dt, size_t outer, int channels, size_t inner,
                    const int64_t *mul, const int64_t *add, int64_t div, int rounding,
                    int64_t lo, int64_t hi, void *y, int y_dt);

/* QONNX Quant (float32 carrier): v = x/scale[c] + zp[c]; bipolar ? (v >= 0 ? 1 : -1)
 * : R(clamp(v, qlo, qhi)); y = (v - zp[c]) * scale[c]. */
void eq_qonnx_quant(const float *x, size_t outer, int channels, size_t inner,
                    const float *scale, const float *zp, float qlo, float qhi, int bipolar,
                    int mode, float *y);

/* QONNX BipolarQuant: y = (x >= 0 ? 1 : -1) * scale[c]. */
void eq_qonnx_bipolar(const float *x, size_t outer, int channels, size_t inner,
                      const float *scale, float *y);

/* QONNX Trunc (both versions, per-tensor constants): v = rint(x/scale + zp) / k;
 * clamp to [qlo, qhi] if clamp; v = R(v); y = (v - out_zp) * out_scale. */
void eq_qonnx_trunc(const float *x, size_t n, float scale, float zp, float k, int clamp,
                    float qlo, float qhi, int mode, float out_zp, float out_scale, float *y);

/* ONNX Cast between numeric types: to an integer, floats truncate toward zero (the range
 * proof or the graph guarantees the value fits); to a float, nearest. */
void eq_cast(const void *x, int x_dt, size_t n, void *y, int y_dt);

/* Constant Pad of the two spatial axes of NCHW planes (planes = n*c): y is
 * [planes][h+pt+pb][w+pl+pr], the border holds value (the input's zero point). */
void eq_pad_const(const void *x, int dt, size_t planes, int h, int w, int pt, int pl, int pb,
                  int pr, int64_t value, void *y);

#endif
