/* Convolution: an 8-bit im2col + u8*s8 dot-product path (gcc turns the dot products
 * into AVX-512 VNNI vpdpbusd on x86, NEON widening multiplies on aarch64), a depthwise
 * path, a generic int64 path and a float path. NCHW in and out. */
#include "eq_kernels.h"
#include "eq_dot.h"

#define EQ_COLS_BYTES 65536 /* im2col block: a few dozen KiB stays in L1/L2 */

int eq_conv_block(int kp, int positions) {
    int pb = EQ_COLS_BYTES / (kp > 0 ? kp : 1);
    if (pb < 4) pb = 4;
    return pb < positions ? pb : positions;
}

/* acc[j][p] = bias[j] + cols[p] . w[j] for j < mg, p < pb; then requantise row by row.
 * Output element (channel m0 + j, position p0 + p) is at y_base + (m0+j)*ystride + p. */
static void gemm_block(const uint8_t *cols, int pb, const int8_t *w, int kp, int mg,
                       int m0, const int32_t *bias, const eq_rq *rq, void *y, int y_dt,
                       size_t y_base, size_t ystride, int32_t *acc) {
    int j = 0;
    for (; j + 4 <= mg; j += 4) {
        const int8_t *wj = w + (size_t)j * kp;
        for (int p = 0; p < pb; p++) {
            int32_t d[4];
            eq_dot4(cols + (size_t)p * kp, wj, kp, d);
            for (int t = 0; t < 4; t++) acc[t * pb + p] = d[t] + bias[m0 + j + t];
        }
        for (int t = 0; t < 4; t++)
            eq_store_row32(acc + t * pb, pb, rq, m0 + j + t, y, y_dt,
                           y_base + (size_t)(m0 + j + t) * ystride);
    }
    for (; j < mg; j++) {
        const int8_t *wj = w + (size_t)j * kp;
        for (int p = 0; p < pb; p++) acc[p] = eq_dot1(cols + (size_t)p * kp, wj, kp) + bias[m0 + j];
        eq_store_row32(acc, pb, rq, m0 + j, y, y_dt, y_base + (size_t)(m0 + j) * ystride);
    }
}

/* One im2col row per output position p in [p0, p0+pb): taps (c, ky, kx) of group gi,
 * as u8 (s8 inputs XOR 0x80 = +128), padding = the integer 0 in that encoding. */
static void im2col8(const eq_conv_shape *s, const void *x, int x_dt, int ni, int gi,
                    int p0, int pb, int kp, uint8_t *cols) {
    const int cg = s->c / s->group;
    const uint8_t flip = x_dt == EQ_S8 ? 0x80 : 0;
    const uint8_t *xb = (const uint8_t *)x + ((size_t)ni * s->c + (size_t)gi * cg) * s->h * s->w;
    const int k = cg * s->kh * s->kw;
    for (int p = 0; p < pb; p++) {
        const int oy = (p0 + p) / s->ow, ox = (p0 + p) % s->ow;
        uint8_t *col = cols + (size_t)p * kp;
        int t = 0;
        for (int c = 0; c < cg; c++) {
            const uint8_t *xc = xb + (size_t)c * s->h * s->w;
            for (int ky = 0; ky < s->kh; ky++) {
                const int iy = oy * s->sh - s->pt + ky * s->dh;
                for (int kx = 0; kx < s->kw; kx++, t++) {
                    const int ix = ox * s->sw - s->pl + kx * s->dw;
                    const int in = iy >= 0 && iy < s->h && ix >= 0 && ix < s->w;
                    col[t] = in ? (uint8_t)(xc[(size_t)iy * s->w + ix] ^ flip) : flip;
                }
            }
        }
        for (; t < kp; t++) col[t] = 0;
        (void)k;
    }
}

/* 1x1, stride 1, no padding: the im2col row of position p is the channel vector. */
static void cols_1x1(const eq_conv_shape *s, const void *x, int x_dt, int ni, int gi,
                     int p0, int pb, int kp, uint8_t *cols) {
    const int cg = s->c / s->group;
    const size_t hw = (size_t)s->h * s->w;
    const uint8_t flip = x_dt == EQ_S8 ? 0x80 : 0;
    const uint8_t *xb = (const uint8_t *)x + ((size_t)ni * s->c + (size_t)gi * cg) * hw + p0;
    for (int p = 0; p < pb; p++) {
        uint8_t *col = cols + (size_t)p * kp;
        for (int c = 0; c < cg; c++) col[c] = xb[(size_t)c * hw + p] ^ flip;
        for (int t = cg; t < kp; t++) col[t] = 0;
    }
}

void eq_conv_q8(const eq_conv_shape *s, const void *x, int x_dt, const int8_t *w, int kp,
                const int32_t *bias, const eq_rq *rq, void *y, int y_dt,
                uint8_t *cols, int32_t *acc) {
    const int positions = s->oh * s->ow, mg = s->m / s->group;
    const int pb_max = eq_conv_block(kp, positions);
    const int pointwise = s->kh == 1 && s->kw == 1 && s->sh == 1 && s->sw == 1 &&
                          s->pt == 0 && s->pl == 0 && s->oh == s->h && s->ow == s->w;
    for (int ni = 0; ni < s->n; ni++)
        for (int gi = 0; gi < s->group; gi++)
            for (int p0 = 0; p0 < positions; p0 += pb_max) {
                const int pb = positions - p0 < pb_max ? positions - p0 : pb_max;
                if (pointwise)
                    cols_1x1(s, x, x_dt, ni, gi, p0, pb, kp, cols);
                else
                    im2col8(s, x, x_dt, ni, gi, p0, pb, kp, cols);
                const size_t y_base = (size_t)ni * s->m * positions + p0;
                gemm_block(cols, pb, w + (size_t)gi * mg * kp, kp, mg, gi * mg, bias, rq,
                           y, y_dt, y_base, (size_t)positions, acc);
            }
}

/* ---- depthwise ---- */
static int pad_h(const eq_conv_shape *s) { return (s->oh - 1) * s->sh + (s->kh - 1) * s->dh + 1; }
static int pad_w(const eq_conv_shape *s) { return (s->ow - 1) * s->sw + (s->kw - 1) * s->dw + 1; }

size_t eq_dw_pad_size(const eq_conv_shape *s) { return (size_t)pad_h(s) * pad_w(s); }

/* Copy channel plane into the zero-padded int16 plane covering every tap position. */
static void pad_plane(const eq_conv_shape *s, const void *x, int x_dt, size_t off, int16_t *pad) {
    const int ph = pad_h(s), pw = pad_w(s);
    for (int r = 0; r < ph; r++) {
        const int iy = r - s->pt;
        int16_t *row = pad + (size_t)r * pw;
        if (iy < 0 || iy >= s->h) {
            for (int q = 0; q < pw; q++) row[q] = 0;
            continue;
        }
        const size_t base = off + (size_t)iy * s->w;
        for (int q = 0; q < pw; q++) {
            const int ix = q - s->pl;
            int16_t v = 0;
            if (ix >= 0 && ix < s->w)
                v = x_dt == EQ_U8 ? ((const uint8_t *)x)[base + ix] : ((const int8_t *)x)[base + ix];
            row[q] = v;
        }
    }
}

void eq_conv_dw8(const eq_conv_shape *s, const void *x, int x_dt, const int8_t *w,
                 const int32_t *bias, const eq_rq *rq, void *y, int y_dt,
                 int16_t *pad, int32_t *acc) {
    const int pw = pad_w(s), taps = s->kh * s->kw;
    const size_t hw = (size_t)s->h * s->w, ohw = (size_t)s->oh * s->ow;
    for (int ni = 0; ni < s->n; ni++)
        for (int c = 0; c < s->c; c++) {
            pad_plane(s, x, x_dt, ((size_t)ni * s->c + c) * hw, pad);
            const int8_t *wc = w + (size_t)c * taps;
            for (int oy = 0; oy < s->oh; oy++) {
                for (int ox = 0; ox < s->ow; ox++) acc[ox] = bias[c];
                for (int ky = 0; ky < s->kh; ky++) {
                    const int16_t *row = pad + (size_t)(oy * s->sh + ky * s->dh) * pw;
                    for (int kx = 0; kx < s->kw; kx++) {
                        const int32_t wv = wc[ky * s->kw + kx];
                        const int16_t *r = row + kx * s->dw;
                        if (s->sw == 1)
                            for (int ox = 0; ox < s->ow; ox++) acc[ox] += wv * r[ox];
                        else if (s->sw == 2)
                            for (int ox = 0; ox < s->ow; ox++) acc[ox] += wv * r[2 * ox];
                        else
                            for (int ox = 0; ox < s->ow; ox++) acc[ox] += wv * r[ox * s->sw];
                    }
                }
                eq_store_row32(acc, (size_t)s->ow, rq, c, y, y_dt,
                               ((size_t)ni * s->c + c) * ohw + (size_t)oy * s->ow);
            }
        }
}

/* ---- generic int64 ---- */
void eq_conv_i64(const eq_conv_shape *s, const void *x, int x_dt, const int64_t *w,
                 const int64_t *bias, const eq_rq *rq, void *y, int y_dt, int64_t *acc) {
    const int cg = s->c / s->group, mg = s->m / s->group, k = cg * s->kh * s->kw;
    const size_t hw = (size_t)s->h * s->w, ohw = (size_t)s->oh * s->ow;
    for (int ni = 0; ni < s->n; ni++)
        for (int m = 0; m < s->m; m++) {
            const int gi = m / mg;
            const int64_t *wm = w + (size_t)m * k;
            for (int oy = 0; oy < s->oh; oy++) {
                for (int ox = 0; ox < s->ow; ox++) {
                    int64_t a = bias ? bias[m] : 0;
                    int t = 0;
                    for (int c = 0; c < cg; c++) {
                        const size_t off = ((size_t)ni * s->c + (size_t)gi * cg + c) * hw;
                        for (int ky = 0; ky < s->kh; ky++)
                            for (int kx = 0; kx < s->kw; kx++, t++) {
                                const int iy = oy * s->sh - s->pt + ky * s->dh;
                                const int ix = ox * s->sw - s->pl + kx * s->dw;
                                if (iy >= 0 && iy < s->h && ix >= 0 && ix < s->w)
                                    a += wm[t] * eq_load_i(x, x_dt, off + (size_t)iy * s->w + ix);
                            }
                    }
                    acc[ox] = a;
                }
                eq_store_row64(acc, (size_t)s->ow, rq, m, y, y_dt,
                               ((size_t)ni * s->m + m) * ohw + (size_t)oy * s->ow);
            }
        }
}

/* ---- float ---- */
void eq_conv_f(const eq_conv_shape *s, const void *x, int x_dt, const float *w,
               const float *bias, void *y, int y_dt) {
    const int cg = s->c / s->group, mg = s->m / s->group, k = cg * s->kh * s->kw;
    const size_t hw = (size_t)s->h * s->w, ohw = (size_t)s->oh * s->ow;
    for (int ni = 0; ni < s->n; ni++)
        for (int m = 0; m < s->m; m++) {
            const int gi = m / mg;
            const float *wm = w + (size_t)m * k;
            for (int oy = 0; oy < s->oh; oy++)
                for (int ox = 0; ox < s->ow; ox++) {
                    float a = bias ? bias[m] : 0.0f;
                    int t = 0;
                    for (int c = 0; c < cg; c++) {
                        const size_t off = ((size_t)ni * s->c + (size_t)gi * cg + c) * hw;
                        for (int ky = 0; ky < s->kh; ky++)
                            for (int kx = 0; kx < s->kw; kx++, t++) {
                                const int iy = oy * s->sh - s->pt + ky * s->dh;
                                const int ix = ox * s->sw - s->pl + kx * s->dw;
                                if (iy >= 0 && iy < s->h && ix >= 0 && ix < s->w)
                                    a += wm[t] * (float)eq_load_f(x, x_dt, off + (size_t)iy * s->w + ix);
                            }
                    }
                    eq_store_f(y, y_dt, ((size_t)ni * s->m + m) * ohw + (size_t)oy * s->ow + ox, a);
                }
        }
}
