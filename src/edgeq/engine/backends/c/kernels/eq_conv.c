/* Convolution: an 8-bit im2col + u8*s8 dot-product path (gcc turns the dot products
 * into AVX-512 VNNI vpdpbusd on x86, NEON widening multiplies on aarch64), a depthwise
 * path, a generic int64 path and a float path. NCHW in and out. */
#include "eq_kernels.h"
#include <string.h>

#define EQ_COLS_BYTES 65536 /* im2col block: a few dozen KiB stays in L1/L2 */

int eq_conv_block(int kp, int positions) {
    int pb = EQ_COLS_BYTES / (kp > 0 ? kp : 1);
    if (pb < 4) pb = 4;
    return pb < positions ? pb : positions;
}

/* The 8-bit GEMM core. Weights are packed per block of 16 output channels as
 * [kp/4][16][4] int8 (eq_pack layout: 4 consecutive taps of one channel side by side),
 * so one step multiplies 4 u8 taps of a column, broadcast, with 16 channels at once and
 * sums into 16 int32 lanes: vpdpbusd on AVX512-VNNI, a plain loop elsewhere. */
#if defined(__AVX512VNNI__) && defined(__AVX512F__)
#include <immintrin.h>
#define EQ_VNNI 1
#endif

/* acc[j*pb + p] = cols[p] . w_block[j] for 16 channels j of one packed block. */
static void block16(const uint8_t *cols, int pb, const int8_t *wb, int kp, int32_t *acc) {
    const int k4n = kp / 4;
#ifdef EQ_VNNI
    int p = 0;
    for (; p + 4 <= pb; p += 4) {
        const uint8_t *c0 = cols + (size_t)p * kp, *c1 = c0 + kp, *c2 = c1 + kp, *c3 = c2 + kp;
        __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
        for (int k4 = 0; k4 < k4n; k4++) {
            const __m512i wv = _mm512_loadu_si512((const void *)(wb + (size_t)k4 * 64));
            int32_t v0, v1, v2, v3;
            memcpy(&v0, c0 + 4 * k4, 4);
            memcpy(&v1, c1 + 4 * k4, 4);
            memcpy(&v2, c2 + 4 * k4, 4);
            memcpy(&v3, c3 + 4 * k4, 4);
            a0 = _mm512_dpbusd_epi32(a0, _mm512_set1_epi32(v0), wv);
            a1 = _mm512_dpbusd_epi32(a1, _mm512_set1_epi32(v1), wv);
            a2 = _mm512_dpbusd_epi32(a2, _mm512_set1_epi32(v2), wv);
            a3 = _mm512_dpbusd_epi32(a3, _mm512_set1_epi32(v3), wv);
        }
        int32_t t[4][16];
        _mm512_storeu_si512((void *)t[0], a0);
        _mm512_storeu_si512((void *)t[1], a1);
        _mm512_storeu_si512((void *)t[2], a2);
        _mm512_storeu_si512((void *)t[3], a3);
        for (int j = 0; j < 16; j++)
            for (int q = 0; q < 4; q++) acc[(size_t)j * pb + p + q] = t[q][j];
    }
    for (; p < pb; p++) {
        const uint8_t *c0 = cols + (size_t)p * kp;
        __m512i a0 = _mm512_setzero_si512();
        for (int k4 = 0; k4 < k4n; k4++) {
            int32_t v0;
            memcpy(&v0, c0 + 4 * k4, 4);
            a0 = _mm512_dpbusd_epi32(a0, _mm512_set1_epi32(v0),
                                     _mm512_loadu_si512((const void *)(wb + (size_t)k4 * 64)));
        }
        int32_t t[16];
        _mm512_storeu_si512((void *)t, a0);
        for (int j = 0; j < 16; j++) acc[(size_t)j * pb + p] = t[j];
    }
#else
    for (int p = 0; p < pb; p++) {
        const uint8_t *c0 = cols + (size_t)p * kp;
        int32_t t[16] = {0};
        for (int k4 = 0; k4 < k4n; k4++) {
            const int8_t *wk = wb + (size_t)k4 * 64;
            const int32_t x0 = c0[4 * k4], x1 = c0[4 * k4 + 1], x2 = c0[4 * k4 + 2],
                          x3 = c0[4 * k4 + 3];
            for (int j = 0; j < 16; j++)
                t[j] += x0 * wk[4 * j] + x1 * wk[4 * j + 1] + x2 * wk[4 * j + 2] + x3 * wk[4 * j + 3];
        }
        for (int j = 0; j < 16; j++) acc[(size_t)j * pb + p] = t[j];
    }
#endif
}

int eq_packed_size(int m, int kp) { return ((m + 15) / 16) * 16 * kp; }

/* Output element (channel m0 + j, position p0 + p) is at y_base + (m0+j)*ystride + p*pstride. */
static void gemm_block(const uint8_t *cols, int pb, const int8_t *w, int kp, int mg,
                       int m0, const int32_t *bias, const eq_rq *rq, void *y, int y_dt,
                       size_t y_base, size_t ystride, size_t pstride, int32_t *acc) {
    for (int j0 = 0; j0 < mg; j0 += 16) {
        block16(cols, pb, w + (size_t)j0 * kp, kp, acc);
        const int nj = mg - j0 < 16 ? mg - j0 : 16;
        for (int j = 0; j < nj; j++) {
            int32_t *row = acc + (size_t)j * pb;
            const int32_t b = bias[m0 + j0 + j];
            for (int p = 0; p < pb; p++) row[p] += b;
            const size_t off = y_base + (size_t)(m0 + j0 + j) * ystride;
            if (pstride == 1)
                eq_store_row32(row, (size_t)pb, rq, m0 + j0 + j, y, y_dt, off);
            else
                for (int p = 0; p < pb; p++)
                    eq_store_row32(row + p, 1, rq, m0 + j0 + j, y, y_dt, off + (size_t)p * pstride);
        }
    }
}

/* One im2col row per output position p in [p0, p0+pb): taps (c, ky, kx) of group gi,
 * as u8 (s8 inputs XOR 0x80 = +128), padding = the integer 0 in that encoding. */
static void im2col8(const eq_conv_shape *s, const void *x, int x_dt, int ni, int gi,
                    int p0, int pb, int kp, uint8_t *cols) {
    const int cg = s->c / s->group, H = s->h, W = s->w, OW = s->ow, KH = s->kh, KW = s->kw;
    const int SH = s->sh, SW = s->sw, DH = s->dh, DW = s->dw, PT = s->pt, PL = s->pl;
    const uint8_t flip = x_dt == EQ_S8 ? 0x80 : 0;
    const uint8_t *xb = (const uint8_t *)x + ((size_t)ni * s->c + (size_t)gi * cg) * H * W;
    int oy = p0 / OW, ox = p0 % OW;
    for (int p = 0; p < pb; p++) {
        uint8_t *col = cols + (size_t)p * kp;
        int t = 0;
        const int iy0 = oy * SH - PT, ix0 = ox * SW - PL;
        for (int c = 0; c < cg; c++) {
            const uint8_t *xc = xb + (size_t)c * H * W;
            for (int ky = 0; ky < KH; ky++) {
                const int iy = iy0 + ky * DH;
                if (iy < 0 || iy >= H) {
                    for (int kx = 0; kx < KW; kx++) col[t++] = flip;
                    continue;
                }
                const uint8_t *xr = xc + (size_t)iy * W;
                for (int kx = 0; kx < KW; kx++) {
                    const int ix = ix0 + kx * DW;
                    col[t++] = ix >= 0 && ix < W ? (uint8_t)(xr[ix] ^ flip) : flip;
                }
            }
        }
        for (; t < kp; t++) col[t] = 0;
        if (++ox == OW) ox = 0, oy++;
    }
}

/* 1x1, stride 1, no padding: the im2col row of position p is the channel vector. */
static void cols_1x1(const eq_conv_shape *s, const void *x, int x_dt, int ni, int gi,
                     int p0, int pb, int kp, uint8_t *cols) {
    const int cg = s->c / s->group;
    const size_t hw = (size_t)s->h * s->w;
    const uint8_t flip = x_dt == EQ_S8 ? 0x80 : 0;
    const uint8_t *xb = (const uint8_t *)x + ((size_t)ni * s->c + (size_t)gi * cg) * hw + p0;
    for (int c = 0; c < cg; c++) {
        const uint8_t *xc = xb + (size_t)c * hw;
        for (int p = 0; p < pb; p++) cols[(size_t)p * kp + c] = xc[p] ^ flip;
    }
    for (int p = 0; p < pb; p++)
        for (int t = cg; t < kp; t++) cols[(size_t)p * kp + t] = 0;
}

typedef struct {
    const eq_conv_shape *s;
    const void *x;
    int x_dt, kp, pb_max, pointwise;
    const int8_t *w;
    const int32_t *bias;
    const eq_rq *rq;
    void *y;
    int y_dt;
    uint8_t *cols;
    int32_t *acc;
} q8_ctx;

/* Thread t of nt: blocks of output positions i with i % nt == t. */
static void q8_task(void *arg, int t, int nt) {
    const q8_ctx *q = (const q8_ctx *)arg;
    const eq_conv_shape *s = q->s;
    const int positions = s->oh * s->ow, mg = s->m / s->group, kp = q->kp, pb_max = q->pb_max;
    const int nblocks = (positions + pb_max - 1) / pb_max;
    const size_t wg = (size_t)eq_packed_size(mg, kp), m = (size_t)s->m;
    uint8_t *cols = q->cols + (size_t)t * pb_max * kp;
    int32_t *acc = q->acc + (size_t)t * 16 * pb_max;
    const int total = s->n * s->group * nblocks;
    for (int i = t; i < total; i += nt) {
        const int ni = i / (s->group * nblocks), gi = (i / nblocks) % s->group;
        const int p0 = (i % nblocks) * pb_max;
        const int pb = positions - p0 < pb_max ? positions - p0 : pb_max;
        if (q->pointwise)
            cols_1x1(s, q->x, q->x_dt, ni, gi, p0, pb, kp, cols);
        else
            im2col8(s, q->x, q->x_dt, ni, gi, p0, pb, kp, cols);
        const size_t y_base = (size_t)ni * m * positions + p0;
        gemm_block(cols, pb, q->w + (size_t)gi * wg, kp, mg, gi * mg, q->bias, q->rq,
                   q->y, q->y_dt, y_base, (size_t)positions, 1, acc);
    }
}

void eq_conv_q8(const eq_conv_shape *s, const void *x, int x_dt, const int8_t *w, int kp,
                const int32_t *bias, const eq_rq *rq, void *y, int y_dt,
                uint8_t *cols, int32_t *acc, int threads) {
    const int positions = s->oh * s->ow;
    int pb_max = eq_conv_block(kp, positions);
    if (threads > 1 && s->n * s->group * ((positions + pb_max - 1) / pb_max) < threads) {
        /* smaller blocks so that every thread has one (a multiple of 4 positions) */
        const int share = (positions + threads - 1) / threads;
        pb_max = share < 4 ? 4 : (share + 3) / 4 * 4;
        if (pb_max > eq_conv_block(kp, positions)) pb_max = eq_conv_block(kp, positions);
    }
    const q8_ctx q = {s, x, x_dt, kp, pb_max,
                      s->kh == 1 && s->kw == 1 && s->sh == 1 && s->sw == 1 && s->pt == 0 &&
                          s->pl == 0 && s->oh == s->h && s->ow == s->w,
                      w, bias, rq, y, y_dt, cols, acc};
    eq_parallel(q8_task, (void *)&q, threads < 1 ? 1 : threads);
}

void eq_gemm_q8(int rows, int cols, int k, const void *a, int a_dt, const int8_t *w,
                int kp, const int32_t *bias, const eq_rq *rq, void *y, int y_dt,
                uint8_t *cols_buf, int32_t *acc) {
    const uint8_t flip = a_dt == EQ_S8 ? 0x80 : 0;
    const uint8_t *ab = (const uint8_t *)a;
    const int pb_max = eq_conv_block(kp, rows);
    for (int r0 = 0; r0 < rows; r0 += pb_max) {
        const int pb = rows - r0 < pb_max ? rows - r0 : pb_max;
        for (int p = 0; p < pb; p++) {
            uint8_t *col = cols_buf + (size_t)p * kp;
            for (int t = 0; t < k; t++) col[t] = ab[(size_t)(r0 + p) * k + t] ^ flip;
            for (int t = k; t < kp; t++) col[t] = 0;
        }
        gemm_block(cols_buf, pb, w, kp, cols, 0, bias, rq, y, y_dt, (size_t)r0 * cols, 1,
                   (size_t)cols, acc);
    }
}

/* ---- depthwise ---- */
static int pad_h(const eq_conv_shape *s) { return (s->oh - 1) * s->sh + (s->kh - 1) * s->dh + 1; }
static int pad_w(const eq_conv_shape *s) { return (s->ow - 1) * s->sw + (s->kw - 1) * s->dw + 1; }

/* the padded plane, plus slack for the flat stride-1 loop reading past the last row */
size_t eq_dw_pad_size(const eq_conv_shape *s) {
    return (size_t)pad_h(s) * pad_w(s) + (size_t)(s->kw - 1) * s->dw;
}

size_t eq_dw_acc_size(const eq_conv_shape *s) { return (size_t)s->oh * pad_w(s); }

/* Copy one channel plane into the zero-padded plane covering every tap position
 * (bytes: rows by memcpy, borders by memset; the integer 0 is the byte 0 in u8 and s8). */
static void pad_plane(const eq_conv_shape *s, const uint8_t *x, size_t off, uint8_t *pad) {
    const int ph = pad_h(s), pw = pad_w(s), H = s->h, W = s->w, PT = s->pt, PL = s->pl;
    const int q1 = PL + W < pw ? PL + W : pw; /* columns [PL, q1) hold input */
    const int ncopy = q1 > PL ? q1 - PL : 0;
    for (int r = 0; r < ph; r++) {
        const int iy = r - PT;
        uint8_t *row = pad + (size_t)r * pw;
        if (iy < 0 || iy >= H || ncopy == 0) {
            memset(row, 0, (size_t)pw);
            continue;
        }
        if (PL > 0) memset(row, 0, (size_t)(PL < pw ? PL : pw));
        memcpy(row + PL, x + off + (size_t)iy * W, (size_t)ncopy);
        if (q1 < pw) memset(row + q1, 0, (size_t)(pw - q1));
    }
    memset(pad + (size_t)ph * pw, 0, (size_t)(s->kw - 1) * s->dw);
}

/* The multiply-accumulate loops of one channel, for input element type T. */
#define DW_CHANNEL(T)                                                                     \
    {                                                                                     \
        const T *pl = (const T *)pad;                                                     \
        if (SH == 1 && SW == 1) {                                                         \
            /* stride 1: one flat loop per tap over OH rows of the padded width; the     \
             * columns past OW are computed and dropped */                                \
            const size_t len = (size_t)OH * pw;                                           \
            for (size_t i = 0; i < len; i++) acc[i] = b;                                  \
            for (int ky = 0; ky < KH; ky++)                                               \
                for (int kx = 0; kx < KW; kx++) {                                         \
                    const int32_t wv = wc[ky * KW + kx];                                  \
                    const T *r = pl + (size_t)ky * DH * pw + (size_t)kx * DW;             \
                    for (size_t i = 0; i < len; i++) acc[i] += wv * r[i];                 \
                }                                                                         \
            for (int oy = 1; oy < OH; oy++) /* compact rows: dst <= src, forward */       \
                memmove(acc + (size_t)oy * OW, acc + (size_t)oy * pw, sizeof(int32_t) * OW); \
        } else {                                                                          \
            for (int oy = 0; oy < OH; oy++) {                                             \
                int32_t *ar = acc + (size_t)oy * OW;                                      \
                for (int ox = 0; ox < OW; ox++) ar[ox] = b;                               \
                for (int ky = 0; ky < KH; ky++) {                                         \
                    const T *row = pl + (size_t)(oy * SH + ky * DH) * pw;                 \
                    for (int kx = 0; kx < KW; kx++) {                                     \
                        const int32_t wv = wc[ky * KW + kx];                              \
                        const T *r = row + kx * DW;                                       \
                        if (SW == 2)                                                      \
                            for (int ox = 0; ox < OW; ox++) ar[ox] += wv * r[2 * ox];     \
                        else                                                              \
                            for (int ox = 0; ox < OW; ox++) ar[ox] += wv * r[ox * SW];    \
                    }                                                                     \
                }                                                                         \
            }                                                                             \
        }                                                                                 \
    }

typedef struct {
    const eq_conv_shape *s;
    const void *x;
    int x_dt;
    const int8_t *w;
    const int32_t *bias;
    const eq_rq *rq;
    void *y;
    int y_dt;
    uint8_t *pad;
    int32_t *acc;
} dw_ctx;

/* Thread t of nt: channels ci with ci % nt == t. */
static void dw_task(void *arg, int t, int nt) {
    const dw_ctx *d = (const dw_ctx *)arg;
    const eq_conv_shape *s = d->s;
    const int pw = pad_w(s), KH = s->kh, KW = s->kw, taps = KH * KW;
    const int OH = s->oh, OW = s->ow, SH = s->sh, SW = s->sw, DH = s->dh, DW = s->dw;
    const int n = s->n, c = s->c, x_dt = d->x_dt;
    const size_t hw = (size_t)s->h * s->w, ohw = (size_t)OH * OW;
    uint8_t *pad = d->pad + (size_t)t * eq_dw_pad_size(s);
    int32_t *acc = d->acc + (size_t)t * eq_dw_acc_size(s);
    for (int ni = 0; ni < n; ni++)
        for (int ci = t; ci < c; ci += nt) {
            pad_plane(s, (const uint8_t *)d->x, ((size_t)ni * c + ci) * hw, pad);
            const int8_t *wc = d->w + (size_t)ci * taps;
            const int32_t b = d->bias[ci];
            if (x_dt == EQ_U8)
                DW_CHANNEL(uint8_t)
            else
                DW_CHANNEL(int8_t)
            eq_store_row32(acc, ohw, d->rq, ci, d->y, d->y_dt, ((size_t)ni * c + ci) * ohw);
        }
}

void eq_conv_dw8(const eq_conv_shape *s, const void *x, int x_dt, const int8_t *w,
                 const int32_t *bias, const eq_rq *rq, void *y, int y_dt,
                 uint8_t *pad, int32_t *acc, int threads) {
    const dw_ctx d = {s, x, x_dt, w, bias, rq, y, y_dt, pad, acc};
    eq_parallel(dw_task, (void *)&d, threads < 1 ? 1 : threads);
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
