/* Matrix products y = a . w^T (+ bias), requantised per output column: an 8-bit path
 * (u8 x s8 dot products, int32 acc where proven), a generic int64 path, a float path. */
#include "eq_kernels.h"
#include "eq_dot.h"

void eq_gemm_q8(int rows, int cols, int k, const void *a, int a_dt, const int8_t *w,
                int kp, const int32_t *bias, const eq_rq *rq, void *y, int y_dt,
                uint8_t *cols_buf, int32_t *acc) {
    const uint8_t flip = a_dt == EQ_S8 ? 0x80 : 0;
    const uint8_t *ab = (const uint8_t *)a;
    for (int r = 0; r < rows; r++) {
        for (int t = 0; t < k; t++) cols_buf[t] = ab[(size_t)r * k + t] ^ flip;
        for (int t = k; t < kp; t++) cols_buf[t] = 0;
        int j = 0;
        for (; j + 4 <= cols; j += 4) {
            eq_dot4(cols_buf, w + (size_t)j * kp, kp, acc);
            for (int t = 0; t < 4; t++) acc[t] += bias[j + t];
            for (int t = 0; t < 4; t++)
                eq_store_row32(acc + t, 1, rq, j + t, y, y_dt, (size_t)r * cols + j + t);
        }
        for (; j < cols; j++) {
            acc[0] = eq_dot1(cols_buf, w + (size_t)j * kp, kp) + bias[j];
            eq_store_row32(acc, 1, rq, j, y, y_dt, (size_t)r * cols + j);
        }
    }
}

void eq_gemm_i64(int rows, int cols, int k, const void *a, int a_dt, const int64_t *w,
                 const int64_t *bias, const eq_rq *rq, void *y, int y_dt) {
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < cols; j++) {
            int64_t s = bias ? bias[j] : 0;
            const int64_t *wj = w + (size_t)j * k;
            for (int t = 0; t < k; t++) s += eq_load_i(a, a_dt, (size_t)r * k + t) * wj[t];
            eq_store_row64(&s, 1, rq, j, y, y_dt, (size_t)r * cols + j);
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
