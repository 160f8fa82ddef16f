/* Elementwise ops and data movement: clip/relu, sigmoid, typed block copy (Concat),
 * Gather, broadcasting binary arithmetic. */
#include <math.h>

#include "eq_kernels.h"

void eq_clip_i(const void *x, int x_dt, size_t n, int64_t lo, int64_t hi, void *y, int y_dt) {
    if (x_dt == EQ_U8 && y_dt == EQ_U8) {
        const uint8_t *xi = (const uint8_t *)x;
        uint8_t *yo = (uint8_t *)y;
        for (size_t i = 0; i < n; i++) {
            const int64_t v = xi[i];
            yo[i] = (uint8_t)(v < lo ? lo : v > hi ? hi : v);
        }
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const int64_t v = eq_load_i(x, x_dt, i);
        eq_store_i(y, y_dt, i, v < lo ? lo : v > hi ? hi : v);
    }
}

void eq_clip_f(const void *x, int x_dt, size_t n, double lo, double hi, void *y, int y_dt) {
    for (size_t i = 0; i < n; i++) {
        const double v = eq_load_f(x, x_dt, i);
        /* NaN passes through, as np.clip/np.maximum do */
        eq_store_f(y, y_dt, i, v < lo ? lo : v > hi ? hi : v);
    }
}

void eq_sigmoid(const void *x, int x_dt, size_t n, void *y, int y_dt) {
    for (size_t i = 0; i < n; i++) {
        const double v = eq_load_f(x, x_dt, i);
        double r;
        if (y_dt == EQ_F32) {
            const float e = expf(-fabsf((float)v));
            r = v >= 0 ? 1.0f / (1.0f + e) : e / (1.0f + e);
        } else {
            const double e = exp(-fabs(v));
            r = v >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
        }
        eq_store_f(y, y_dt, i, r);
    }
}

void eq_copy_block(const void *x, int x_dt, size_t outer, size_t inner,
                   void *y, int y_dt, size_t row, size_t col) {
    const int to_float = y_dt == EQ_F32 || y_dt == EQ_F64;
    for (size_t o = 0; o < outer; o++)
        for (size_t j = 0; j < inner; j++) {
            const size_t src = o * inner + j, dst = o * row + col + j;
            if (to_float)
                eq_store_f(y, y_dt, dst, eq_load_f(x, x_dt, src));
            else
                eq_store_i(y, y_dt, dst, eq_load_i(x, x_dt, src));
        }
}

void eq_gather(const void *x, int dt, size_t outer, size_t axis_len, size_t inner,
               const int64_t *idx, size_t n_idx, void *y) {
    const size_t es = eq_dtype_size(dt);
    const unsigned char *xb = (const unsigned char *)x;
    unsigned char *yb = (unsigned char *)y;
    for (size_t o = 0; o < outer; o++)
        for (size_t t = 0; t < n_idx; t++) {
            const unsigned char *src = xb + ((o * axis_len + (size_t)idx[t]) * inner) * es;
            unsigned char *dst = yb + ((o * n_idx + t) * inner) * es;
            for (size_t b = 0; b < inner * es; b++) dst[b] = src[b];
        }
}

void eq_binary(int op, const void *a, int a_dt, const long *a_strides,
               const void *b, int b_dt, const long *b_strides,
               const long *shape, void *y, int y_dt) {
    const int to_float = y_dt == EQ_F32 || y_dt == EQ_F64;
    size_t i = 0;
    long idx[6] = {0, 0, 0, 0, 0, 0};
    long total = 1;
    for (int d = 0; d < 6; d++) total *= shape[d];
    for (long e = 0; e < total; e++, i++) {
        long ai = 0, bi = 0;
        for (int d = 0; d < 6; d++) ai += idx[d] * a_strides[d], bi += idx[d] * b_strides[d];
        if (to_float) {
            const double u = eq_load_f(a, a_dt, (size_t)ai), v = eq_load_f(b, b_dt, (size_t)bi);
            double r = op == 0 ? u + v : op == 1 ? u - v : u * v;
            if (y_dt == EQ_F32) {
                const float uf = (float)u, vf = (float)v;
                r = op == 0 ? uf + vf : op == 1 ? uf - vf : uf * vf;
            }
            eq_store_f(y, y_dt, i, r);
        } else {
            const int64_t u = eq_load_i(a, a_dt, (size_t)ai), v = eq_load_i(b, b_dt, (size_t)bi);
            eq_store_i(y, y_dt, i, op == 0 ? u + v : op == 1 ? u - v : u * v);
        }
        for (int d = 5; d >= 0; d--) {
            if (++idx[d] < shape[d]) break;
            idx[d] = 0;
        }
    }
}
