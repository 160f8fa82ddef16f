/* RequantShift (DESIGN §3.3) in the output loops, standalone, and HarmonisedAdd (§3.5). */
#include "eq_kernels.h"

/* floor((v*mul + add) / 2^shift): gcc's >> on a negative int64 is arithmetic (floor). */
static inline int64_t rq1(int64_t v, int64_t mul, int64_t add, int shift) {
    return (v * mul + add) >> shift;
}

static inline int64_t clip64(int64_t v, int64_t lo, int64_t hi) {
    return v < lo ? lo : v > hi ? hi : v;
}

#define STORE_ROW(NAME, ACC_T)                                                        \
    void NAME(const ACC_T *acc, size_t n, const eq_rq *rq, int ch, void *y, int y_dt,  \
              size_t y_off) {                                                        \
        if (rq == NULL) {                                                            \
            for (size_t j = 0; j < n; j++) eq_store_i(y, y_dt, y_off + j, acc[j]);     \
            return;                                                                  \
        }                                                                            \
        const int64_t mul = rq->mul[ch], add = rq->add[ch], lo = rq->lo, hi = rq->hi; \
        const int sh = rq->shift;                                                    \
        switch (y_dt) {                                                              \
        case EQ_U8: {                                                                \
            uint8_t *o = (uint8_t *)y + y_off;                                       \
            for (size_t j = 0; j < n; j++) o[j] = (uint8_t)clip64(rq1(acc[j], mul, add, sh), lo, hi); \
            break;                                                                   \
        }                                                                            \
        case EQ_S8: {                                                                \
            int8_t *o = (int8_t *)y + y_off;                                         \
            for (size_t j = 0; j < n; j++) o[j] = (int8_t)clip64(rq1(acc[j], mul, add, sh), lo, hi); \
            break;                                                                   \
        }                                                                            \
        default:                                                                     \
            for (size_t j = 0; j < n; j++)                                           \
                eq_store_i(y, y_dt, y_off + j, clip64(rq1(acc[j], mul, add, sh), lo, hi)); \
        }                                                                            \
    }

STORE_ROW(eq_store_row32, int32_t)
STORE_ROW(eq_store_row64, int64_t)

void eq_requant(const void *x, int x_dt, size_t outer, int channels, size_t inner,
                const eq_rq *rq, void *y, int y_dt) {
    size_t i = 0;
    for (size_t o = 0; o < outer; o++)
        for (int c = 0; c < channels; c++) {
            const int64_t mul = rq->mul[c], add = rq->add[c];
            for (size_t j = 0; j < inner; j++, i++) {
                int64_t v = clip64(rq1(eq_load_i(x, x_dt, i), mul, add, rq->shift), rq->lo, rq->hi);
                eq_store_i(y, y_dt, i, v);
            }
        }
}

void eq_harmonised_add(const eq_hadd *p, size_t numel, void *y, int y_dt) {
    for (size_t i = 0; i < numel; i++) {
        int64_t s = 0;
        for (int k = 0; k < p->n_in; k++) {
            int64_t v = eq_load_i(p->x[k], p->x_dt[k], i);
            if (p->in_rq[k]) v = rq1(v, p->in_mul[k], p->in_add[k], p->in_shift[k]);
            s += v;
        }
        if (p->out_rq) s = rq1(s, p->out_mul, p->out_add, p->out_shift);
        eq_store_i(y, y_dt, i, clip64(s, p->lo, p->hi));
    }
}
