/* Pooling on NCHW: max (exact, any type) and average (integer: exact int64 window sum,
 * then one double division, as the reference's AveragePool; float: sum in double). */
#include "eq_kernels.h"

#define MAXPOOL(T)                                                                     \
    {                                                                                  \
        const T *xi = (const T *)x;                                                    \
        T *yo = (T *)y;                                                                \
        for (size_t pl = 0; pl < planes; pl++)                                         \
            for (int oy = 0; oy < s->oh; oy++)                                         \
                for (int ox = 0; ox < s->ow; ox++) {                                   \
                    int have = 0;                                                      \
                    T best = 0;                                                        \
                    for (int ky = 0; ky < s->kh; ky++) {                               \
                        const int iy = oy * s->sh - s->pt + ky * s->dh;                \
                        if (iy < 0 || iy >= s->h) continue;                            \
                        for (int kx = 0; kx < s->kw; kx++) {                           \
                            const int ix = ox * s->sw - s->pl + kx * s->dw;            \
                            if (ix < 0 || ix >= s->w) continue;                        \
                            const T v = xi[pl * hw + (size_t)iy * s->w + ix];          \
                            if (!have || v > best) best = v, have = 1;                 \
                        }                                                              \
                    }                                                                  \
                    yo[pl * ohw + (size_t)oy * s->ow + ox] = best;                     \
                }                                                                      \
    }

void eq_maxpool(const eq_pool_shape *s, const void *x, int dt, void *y) {
    const size_t planes = (size_t)s->n * s->c, hw = (size_t)s->h * s->w;
    const size_t ohw = (size_t)s->oh * s->ow;
    switch (dt) {
    case EQ_U8: MAXPOOL(uint8_t) break;
    case EQ_S8: MAXPOOL(int8_t) break;
    case EQ_U16: MAXPOOL(uint16_t) break;
    case EQ_S16: MAXPOOL(int16_t) break;
    case EQ_U32: MAXPOOL(uint32_t) break;
    case EQ_S32: MAXPOOL(int32_t) break;
    case EQ_S64: MAXPOOL(int64_t) break;
    case EQ_F32: MAXPOOL(float) break;
    default: MAXPOOL(double) break;
    }
}

void eq_avgpool(const eq_pool_shape *s, const void *x, int x_dt, int count_pad,
                void *y, int y_dt) {
    const size_t planes = (size_t)s->n * s->c, hw = (size_t)s->h * s->w;
    const size_t ohw = (size_t)s->oh * s->ow;
    const int is_float = x_dt == EQ_F32 || x_dt == EQ_F64;
    for (size_t pl = 0; pl < planes; pl++)
        for (int oy = 0; oy < s->oh; oy++)
            for (int ox = 0; ox < s->ow; ox++) {
                int64_t isum = 0, count = 0, padded = 0;
                double fsum = 0.0;
                for (int ky = 0; ky < s->kh; ky++)
                    for (int kx = 0; kx < s->kw; kx++) {
                        const int iy = oy * s->sh - s->pt + ky * s->dh;
                        const int ix = ox * s->sw - s->pl + kx * s->dw;
                        if (iy < 0 || iy >= s->h || ix < 0 || ix >= s->w) {
                            /* explicit padding counts only with count_include_pad */
                            padded++;
                            continue;
                        }
                        const size_t i = pl * hw + (size_t)iy * s->w + ix;
                        if (is_float)
                            fsum += eq_load_f(x, x_dt, i);
                        else
                            isum += eq_load_i(x, x_dt, i);
                        count++;
                    }
                if (count_pad) count += padded;
                const double sum = is_float ? fsum : (double)isum;
                eq_store_f(y, y_dt, pl * ohw + (size_t)oy * s->ow + ox, sum / (double)count);
            }
}
