/* Third-party integer formats: see eq_thirdparty.h. Build without FP contraction. */
#include <math.h>
#include <string.h>

#include "eq_kernels.h"

/* rint of a float32 product and the integer tail of onnxruntime's requantisation:
 * + zero point after rounding, saturation (in double: |q| < 2^40 here, exact). */
static int64_t eq_sat_rint(float v, int64_t zp, int64_t lo, int64_t hi) {
    double q = (double)nearbyintf(v) + (double)zp;
    if (!(q >= (double)lo))
        return lo;
    if (q > (double)hi)
        return hi;
    return (int64_t)q;
}

/* The common case: int64 accumulators (the IR's Conv/Gemm output) to 8 bits with one
 * zero point. rint, then the clip done on the float before adding the zero point
 * (clip(r + z, lo, hi) = clip(r, lo - z, hi - z) + z, exact for integer-valued r), so
 * the loop has no call and no branch and vectorises. */
#define EQ_RQ8(T, k, m)                                                                  \
    do {                                                                                 \
        float r = nearbyintf((float)x[k] * (m));                                         \
        r = r < flo ? flo : (r > fhi ? fhi : r);                                         \
        ((T *)y)[k] = (T)((int32_t)r + z);                                               \
    } while (0)
#define EQ_RQ8_LOOP(T)                                                                   \
    if (inner == 1) /* NHWC: channels innermost */                                       \
        for (size_t o = 0; o < outer; o++)                                               \
            for (int c = 0; c < channels; c++)                                           \
                EQ_RQ8(T, o * (size_t)channels + (size_t)c, mult[c]);                    \
    else                                                                                 \
        for (size_t o = 0; o < outer; o++)                                               \
            for (int c = 0; c < channels; c++) {                                         \
                const size_t base = (o * (size_t)channels + (size_t)c) * inner;          \
                for (size_t j = 0; j < inner; j++)                                       \
                    EQ_RQ8(T, base + j, mult[c]);                                        \
            }

static void eq_qlinear_requant_s64_8(const int64_t *x, size_t outer, int channels,
                                     size_t inner, const float *mult, int32_t z,
                                     int64_t lo, int64_t hi, void *y, int y_dt) {
    const float flo = (float)(lo - z), fhi = (float)(hi - z);
    if (y_dt == EQ_U8) {
        EQ_RQ8_LOOP(uint8_t)
    } else {
        EQ_RQ8_LOOP(int8_t)
    }
}

static int eq_one_zero_point(const int64_t *zp, int channels) {
    for (int c = 1; c < channels; c++)
        if (zp[c] != zp[0])
            return 0;
    return zp[0] > -1024 && zp[0] < 1024;
}

void eq_qlinear_requant(const void *x, int x_dt, size_t outer, int channels, size_t inner,
                        const float *mult, const int64_t *zp, int64_t lo, int64_t hi,
                        void *y, int y_dt) {
    if (x_dt == EQ_S64 && (y_dt == EQ_U8 || y_dt == EQ_S8) && channels > 0 &&
        eq_one_zero_point(zp, channels) && lo >= -128 && hi <= 255) {
        eq_qlinear_requant_s64_8((const int64_t *)x, outer, channels, inner, mult,
                                 (int32_t)zp[0], lo, hi, y, y_dt);
        return;
    }
    size_t i = 0;
    for (size_t o = 0; o < outer; o++)
        for (int c = 0; c < channels; c++) {
            const float m = mult[c];
            const int64_t z = zp[c];
            for (size_t j = 0; j < inner; j++, i++) {
                const float a = (float)eq_load_i(x, x_dt, i); /* nearest even above 2^24 */
                eq_store_i(y, y_dt, i, eq_sat_rint(a * m, z, lo, hi));
            }
        }
}

void eq_qlinear_add_ort(const void *a, int a_dt, const void *b, int b_dt, size_t n,
                        float sa, int64_t za, float sb, int64_t zb, float sc, int64_t zc,
                        int u8_shift, int64_t lo, int64_t hi, void *y, int y_dt) {
    const float ra = sa / sc, rb = sb / sc;
    const float fza = (float)(za + u8_shift), fzb = (float)(zb + u8_shift);
    /* onnxruntime folds the zero points into one float32 constant: one FMA */
    const float fixed = (float)(zc + u8_shift) - fmaf(fza, ra, rb * fzb);
    for (size_t i = 0; i < n; i++) {
        const float va = (float)(eq_load_i(a, a_dt, i) + u8_shift);
        const float vb = (float)(eq_load_i(b, b_dt, i) + u8_shift);
        const float v = fmaf(va, ra, fmaf(vb, rb, fixed));
        eq_store_i(y, y_dt, i, eq_sat_rint(v, -u8_shift, lo, hi));
    }
}

void eq_qlinear_gavg_ort(const void *x, int x_dt, size_t nc, size_t hw, float sx, int64_t xzp,
                         float sy, int64_t yzp, int64_t lo, int64_t hi, void *y, int y_dt) {
    const float scale = sx / (sy * (float)hw);
    for (size_t p = 0; p < nc; p++) {
        int64_t s = 0;
        for (size_t j = 0; j < hw; j++)
            s += eq_load_i(x, x_dt, p * hw + j);
        const float acc = (float)(s - (int64_t)hw * xzp);
        eq_store_i(y, y_dt, p, eq_sat_rint(acc * scale, yzp, lo, hi));
    }
}

void eq_quantize_linear(const void *x, int x_dt, size_t outer, int channels, size_t inner,
                        const float *scale, const int64_t *zp, int64_t lo, int64_t hi,
                        void *y, int y_dt) {
    size_t i = 0;
    for (size_t o = 0; o < outer; o++)
        for (int c = 0; c < channels; c++) {
            const float s = scale[c];
            if (x_dt == EQ_F32 && y_dt == EQ_U8) { /* the input of every QDQ file */
                const float *xf = (const float *)x;
                for (size_t j = 0; j < inner; j++, i++)
                    ((uint8_t *)y)[i] = (uint8_t)eq_sat_rint(xf[i] / s, zp[c], lo, hi);
                continue;
            }
            for (size_t j = 0; j < inner; j++, i++) {
                const float v = (float)eq_load_f(x, x_dt, i);
                eq_store_i(y, y_dt, i, eq_sat_rint(v / s, zp[c], lo, hi));
            }
        }
}

void eq_dequantize_linear(const void *x, int x_dt, size_t outer, int channels, size_t inner,
                          const float *scale, const int64_t *zp, float *y) {
    size_t i = 0;
    for (size_t o = 0; o < outer; o++)
        for (int c = 0; c < channels; c++)
            for (size_t j = 0; j < inner; j++, i++)
                y[i] = (float)(eq_load_i(x, x_dt, i) - zp[c]) * scale[c];
}

static int64_t eq_div_round(int64_t v, int64_t div, int rounding) {
    int64_t q = v / div, r = v % div;
    if (r < 0) { /* C truncates: move to floor, 0 <= r < div */
        q -= 1;
        r += div;
    }
    if (rounding == EQ_DIV_TRUNC)
        q += (v < 0 && r != 0);
    else if (rounding == EQ_DIV_HALF_EVEN)
        q += (r > div - r) || (r == div - r && (q & 1));
    return q;
}

void eq_requant_div(const void *x, int x_dt, size_t outer, int channels, size_t inner,
                    const int64_t *mul, const int64_t *add, int64_t div, int rounding,
                    int64_t lo, int64_t hi, void *y, int y_dt) {
    size_t i = 0;
    for (size_t o = 0; o < outer; o++)
        for (int c = 0; c < channels; c++)
            for (size_t j = 0; j < inner; j++, i++) {
                int64_t q = eq_div_round(eq_load_i(x, x_dt, i) * mul[c] + add[c], div, rounding);
                eq_store_i(y, y_dt, i, q < lo ? lo : (q > hi ? hi : q));
            }
}

static float eq_sign(float v) {
    return (float)((v > 0.0f) - (v < 0.0f));
}

static float eq_qround(float v, int mode) {
    switch (mode) {
    case EQ_QR_CEIL: return ceilf(v);
    case EQ_QR_FLOOR: return floorf(v);
    case EQ_QR_DOWN: return truncf(v);
    case EQ_QR_UP: return eq_sign(v) * ceilf(fabsf(v));
    case EQ_QR_HALF_UP: return eq_sign(v) * floorf(fabsf(v) + 0.5f);
    case EQ_QR_HALF_DOWN: return eq_sign(v) * ceilf(fabsf(v) - 0.5f);
    default: return nearbyintf(v);
    }
}

static float eq_fclamp(float v, float lo, float hi) {
    v = v > hi ? hi : v; /* NaN passes through, as np.where(y > hi, ...) */
    return v < lo ? lo : v;
}

void eq_qonnx_quant(const float *x, size_t outer, int channels, size_t inner,
                    const float *scale, const float *zp, float qlo, float qhi, int bipolar,
                    int mode, float *y) {
    size_t i = 0;
    for (size_t o = 0; o < outer; o++)
        for (int c = 0; c < channels; c++)
            for (size_t j = 0; j < inner; j++, i++) {
                float v = x[i] / scale[c];
                v = v + zp[c];
                if (bipolar)
                    v = v >= 0.0f ? 1.0f : -1.0f;
                else
                    v = eq_qround(eq_fclamp(v, qlo, qhi), mode);
                y[i] = (v - zp[c]) * scale[c];
            }
}

void eq_qonnx_bipolar(const float *x, size_t outer, int channels, size_t inner,
                      const float *scale, float *y) {
    size_t i = 0;
    for (size_t o = 0; o < outer; o++)
        for (int c = 0; c < channels; c++)
            for (size_t j = 0; j < inner; j++, i++)
                y[i] = (x[i] >= 0.0f ? 1.0f : -1.0f) * scale[c];
}

void eq_qonnx_trunc(const float *x, size_t n, float scale, float zp, float k, int clamp,
                    float qlo, float qhi, int mode, float out_zp, float out_scale, float *y) {
    for (size_t i = 0; i < n; i++) {
        float v = x[i] / scale;
        v = nearbyintf(v + zp);
        v = v / k;
        if (clamp)
            v = eq_fclamp(v, qlo, qhi);
        v = eq_qround(v, mode);
        y[i] = (v - out_zp) * out_scale;
    }
}

void eq_cast(const void *x, int x_dt, size_t n, void *y, int y_dt) {
    const int to_float = y_dt == EQ_F32 || y_dt == EQ_F64;
    const int from_float = x_dt == EQ_F32 || x_dt == EQ_F64;
    for (size_t i = 0; i < n; i++) {
        if (to_float && !from_float && y_dt == EQ_F32)
            ((float *)y)[i] = (float)eq_load_i(x, x_dt, i); /* one rounding */
        else if (to_float)
            eq_store_f(y, y_dt, i, eq_load_f(x, x_dt, i));
        else
            eq_store_i(y, y_dt, i, eq_load_i(x, x_dt, i));
    }
}

void eq_pad_const(const void *x, int dt, size_t planes, int h, int w, int pt, int pl, int pb,
                  int pr, int64_t value, void *y) {
    const size_t es = eq_dtype_size(dt);
    const int oh = h + pt + pb, ow = w + pl + pr;
    uint8_t fill[8];
    eq_store_i(fill, dt, 0, value);
    uint8_t *out = (uint8_t *)y;
    const uint8_t *in = (const uint8_t *)x;
    for (size_t p = 0; p < planes; p++)
        for (int r = 0; r < oh; r++) {
            uint8_t *row = out + ((p * oh + r) * (size_t)ow) * es;
            const int ir = r - pt;
            for (int c = 0; c < ow; c++)
                if (ir < 0 || ir >= h || c < pl || c >= pl + w)
                    memcpy(row + (size_t)c * es, fill, es);
            if (ir >= 0 && ir < h)
                memcpy(row + (size_t)pl * es, in + ((p * h + ir) * (size_t)w) * es, (size_t)w * es);
        }
}
