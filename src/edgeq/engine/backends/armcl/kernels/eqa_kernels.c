/* im2col, row copies and requantisation around the ACL GEMMs (see eqa_kernels.h). */
#include "eqa_kernels.h"

void eqa_im2col(const void *x, int x_signed, int nhwc, const eqa_conv *g, uint8_t *rows,
                size_t stride) {
    const uint8_t *xb = (const uint8_t *)x;
    const uint8_t flip = x_signed ? 0x80 : 0, zero = flip;
    const size_t hw = (size_t)g->h * g->w;
    for (int oy = 0; oy < g->oh; oy++)
        for (int ox = 0; ox < g->ow; ox++) {
            uint8_t *r = rows + ((size_t)oy * g->ow + ox) * stride;
            for (int ky = 0; ky < g->kh; ky++) {
                const int iy = oy * g->sh - g->pt + ky * g->dh;
                for (int kx = 0; kx < g->kw; kx++, r += g->c) {
                    const int ix = ox * g->sw - g->pl + kx * g->dw;
                    if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w) {
                        for (int ch = 0; ch < g->c; ch++) r[ch] = zero;
                    } else if (nhwc) {
                        const uint8_t *p = xb + ((size_t)iy * g->w + ix) * g->c;
                        for (int ch = 0; ch < g->c; ch++) r[ch] = p[ch] ^ flip;
                    } else {
                        const uint8_t *p = xb + (size_t)iy * g->w + ix;
                        for (int ch = 0; ch < g->c; ch++) r[ch] = p[ch * hw] ^ flip;
                    }
                }
            }
        }
}

void eqa_copy_rows(const void *x, int x_signed, size_t m, size_t k, uint8_t *rows,
                   size_t stride) {
    const uint8_t *xb = (const uint8_t *)x;
    const uint8_t flip = x_signed ? 0x80 : 0;
    for (size_t r = 0; r < m; r++)
        for (size_t j = 0; j < k; j++) rows[r * stride + j] = xb[r * k + j] ^ flip;
}

/* floor((v·mul + add) / 2^shift): an arithmetic shift of a signed int64 (gcc). */
static inline int64_t rq1(int64_t v, int64_t mul, int64_t add, int shift) {
    return (v * mul + add) >> shift;
}

static inline int64_t clip(int64_t v, int64_t lo, int64_t hi) {
    return v < lo ? lo : v > hi ? hi : v;
}

void eqa_requant(const int32_t *acc, size_t stride, size_t imgs, size_t positions,
                 int channels, const eq_rq *rq, int nhwc, void *y, int y_dt) {
    for (size_t i = 0; i < imgs; i++)
        for (size_t p = 0; p < positions; p++) {
            const int32_t *a = acc + (i * positions + p) * stride;
            for (int c = 0; c < channels; c++) {
                const int64_t v = clip(rq1(a[c], rq->mul[c], rq->add[c], rq->shift), rq->lo, rq->hi);
                const size_t o = nhwc ? (i * positions + p) * (size_t)channels + (size_t)c
                                      : (i * (size_t)channels + (size_t)c) * positions + p;
                if (y_dt == EQ_U8)
                    ((uint8_t *)y)[o] = (uint8_t)v;
                else if (y_dt == EQ_S8)
                    ((int8_t *)y)[o] = (int8_t)v;
                else
                    eq_store_i(y, y_dt, o, v);
            }
        }
}
