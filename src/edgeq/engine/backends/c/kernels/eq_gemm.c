/* Matrix products y = a . w^T (+ bias), requantised per output column: the generic
 * int64 path, the int32 path (accumulators proven to fit int32) and the float path (the
 * 8-bit path, eq_gemm_q8, shares eq_conv.c's core). */
#include "eq_kernels.h"

void eq_gemm_i64(int rows, int cols, int k, const void *a, int a_dt, const int64_t *w,
                 const int64_t *bias, const eq_rq *rq, void *y, int y_dt, int64_t *row) {
    for (int r = 0; r < rows; r++) {
        /* widen the row once, so the dot products below are plain int64 loops */
        for (int t = 0; t < k; t++) row[t] = eq_load_i(a, a_dt, (size_t)r * k + t);
        for (int j = 0; j < cols; j++) {
            int64_t s = bias ? bias[j] : 0;
            const int64_t *wj = w + (size_t)j * k;
            for (int t = 0; t < k; t++) s += row[t] * wj[t];
            eq_store_row64(&s, 1, rq, j, y, y_dt, (size_t)r * cols + j);
        }
    }
}

/* a's row as uint32 (values proven to fit int32): one conversion loop per dtype */
static void row_u32(const void *a, int a_dt, size_t off, int k, uint32_t *row) {
    switch (a_dt) {
#define ROW(T)                                                                           \
    {                                                                                    \
        const T *p = (const T *)a + off;                                                 \
        for (int t = 0; t < k; t++) row[t] = (uint32_t)(int32_t)p[t];                    \
        return;                                                                          \
    }
    case EQ_U8: ROW(uint8_t)
    case EQ_S8: ROW(int8_t)
    case EQ_U16: ROW(uint16_t)
    case EQ_S16: ROW(int16_t)
    case EQ_U32: ROW(uint32_t)
    case EQ_S32: ROW(int32_t)
    case EQ_S64: ROW(int64_t)
#undef ROW
    default:
        for (int t = 0; t < k; t++) row[t] = (uint32_t)(int32_t)eq_load_i(a, a_dt, off + (size_t)t);
    }
}

void eq_gemm_i32(int rows, int cols, int k, const void *a, int a_dt, const int32_t *w,
                 const int32_t *bias, const eq_rq *rq, void *y, int y_dt, int32_t *scratch) {
    uint32_t *row = (uint32_t *)scratch;
    for (int r = 0; r < rows; r++) {
        row_u32(a, a_dt, (size_t)r * k, k, row);
        for (int j = 0; j < cols; j++) {
            /* modulo 2^32: exact once the whole sum fits int32, whatever the partial sums */
            uint32_t s = bias ? (uint32_t)bias[j] : 0u;
            const int32_t *wj = w + (size_t)j * k;
            for (int t = 0; t < k; t++) s += row[t] * (uint32_t)wj[t];
            const int64_t v = (int32_t)s;
            eq_store_row64(&v, 1, rq, j, y, y_dt, (size_t)r * cols + j);
        }
    }
}

void eq_gemm_f(int rows, int cols, int k, const void *a, int a_dt, const float *w,
               const float *bias, void *y, int y_dt) {
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < cols; j++) {
            float s = bias ? bias[j] : 0.0f;
            const float *wj = w + (size_t)j * k;
            for (int t = 0; t < k; t++) s += (float)eq_load_f(a, a_dt, (size_t)r * k + t) * wj[t];
            eq_store_f(y, y_dt, (size_t)r * cols + j, s);
        }
}
