/* Matrix products y = a . w^T (+ bias), requantised per output column: the generic
 * int64 path and the float path (the 8-bit path, eq_gemm_q8, shares eq_conv.c's core). */
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
