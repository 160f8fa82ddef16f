/* edgeq C kernel library: integer (DESIGN §3) and float32 kernels on NCHW tensors.
 *
 * Every tensor is a flat array in its value's element type (enum eq_dtype). Integer
 * kernels are exact: products and sums in int32 only where the generator proved the
 * bound (DESIGN §3.7), else int64; RequantShift is floor((acc*mul + add) / 2^shift)
 * as an arithmetic right shift of a signed int64, then a clip to [lo, hi].
 * Kernels whose output may alias their input (RequantShift, HarmonisedAdd into input 0,
 * Relu, Clip) read each element before writing it, in one forward pass.
 */
#ifndef EQ_KERNELS_H
#define EQ_KERNELS_H

#include <stddef.h>
#include <stdint.h>

enum eq_dtype { EQ_U8, EQ_S8, EQ_U16, EQ_S16, EQ_U32, EQ_S32, EQ_S64, EQ_F32, EQ_F64 };

/* ---- element access (eq_common.c) ---- */
int64_t eq_load_i(const void *p, int dt, size_t i);
void eq_store_i(void *p, int dt, size_t i, int64_t v);
double eq_load_f(const void *p, int dt, size_t i);
void eq_store_f(void *p, int dt, size_t i, double v);
size_t eq_dtype_size(int dt);

/* ---- requantisation (eq_requant.c) ---- */
/* Per-channel constants: mul[c], add[c] (the generator expands scalars). */
typedef struct {
    const int64_t *mul;
    const int64_t *add;
    int shift;
    int64_t lo, hi;
} eq_rq;

/* y[j*ystride] = rq(acc[j]) for j < n, channel ch; rq == NULL stores acc unchanged. */
void eq_store_row32(const int32_t *acc, size_t n, const eq_rq *rq, int ch,
                    void *y, int y_dt, size_t y_off);
void eq_store_row64(const int64_t *acc, size_t n, const eq_rq *rq, int ch,
                    void *y, int y_dt, size_t y_off);

/* Standalone RequantShift over a tensor seen as [outer][channels][inner]. */
void eq_requant(const void *x, int x_dt, size_t outer, int channels, size_t inner,
                const eq_rq *rq, void *y, int y_dt);

/* HarmonisedAdd of n_in tensors of numel elements each (same shape). */
typedef struct {
    int n_in;
    const void *const *x;
    const int *x_dt;
    const int64_t *in_mul, *in_add;
    const int *in_shift, *in_rq;
    int64_t out_mul, out_add;
    int out_shift, out_rq;
    int64_t lo, hi;
} eq_hadd;
void eq_harmonised_add(const eq_hadd *p, size_t numel, void *y, int y_dt);

/* ---- threads (eq_threads.c) ---- */
#define EQ_MAX_THREADS 16
typedef void (*eq_task)(void *ctx, int t, int nt);
void eq_parallel(eq_task fn, void *ctx, int nt);
/* `shares` pieces (fn's t < shares) claimed by up to nt threads: no per-thread scratch */
void eq_parallel_shares(eq_task fn, void *ctx, int shares, int nt);

/* ---- convolution (eq_conv.c) ---- */
typedef struct {
    int n, c, h, w;     /* input NCHW */
    int m, oh, ow;      /* output channels and spatial size */
    int kh, kw, sh, sw, dh, dw, pt, pl;
    int group;
} eq_conv_shape;

/* 8-bit fast path: x is u8 or s8 (s8 is shifted by +128 into u8, bias corrected by the
 * generator: bias - 128*sum(w)); acc in int32 (proven). K = (c/group)*kh*kw taps in
 * (c, ky, kx) order, zero-padded to kp (a multiple of 4). Weights are packed per group,
 * per block of 16 output channels (channels padded with zeros to 16), as
 * [k/4][16 channels][4 taps] int8: eq_packed_size(m/group, kp) bytes per group.
 * cols: pb*kp bytes, acc: 16*pb int32, where pb = eq_conv_block(kp, oh*ow), times
 * `threads` (each thread has its own slice; threads split the output positions). */
int eq_conv_block(int kp, int positions);
int eq_packed_size(int m, int kp);
void eq_conv_q8(const eq_conv_shape *s, const void *x, int x_dt, const int8_t *w, int kp,
                const int32_t *bias, const eq_rq *rq, void *y, int y_dt,
                uint8_t *cols, int32_t *acc, int threads);

/* Depthwise (group == c == m) fast path for 8-bit inputs: int32 acc (proven).
 * w is [m][kh*kw] int8; pad: eq_dw_pad_size(s) bytes (the zero-padded plane);
 * acc: eq_dw_acc_size(s) int32; both times `threads` (threads split the channels). */
size_t eq_dw_pad_size(const eq_conv_shape *s);
size_t eq_dw_acc_size(const eq_conv_shape *s);
void eq_conv_dw8(const eq_conv_shape *s, const void *x, int x_dt, const int8_t *w,
                 const int32_t *bias, const eq_rq *rq, void *y, int y_dt,
                 uint8_t *pad, int32_t *acc, int threads);

/* Any integer types, int64 accumulation: w is [m][K] int64, bias [m] int64 or NULL. */
void eq_conv_i64(const eq_conv_shape *s, const void *x, int x_dt, const int64_t *w,
                 const int64_t *bias, const eq_rq *rq, void *y, int y_dt, int64_t *acc);

/* Float32/64 convolution (x, w, y in dt), plain loops. w is [m][K], bias or NULL. */
void eq_conv_f(const eq_conv_shape *s, const void *x, int x_dt, const float *w,
               const float *bias, void *y, int y_dt);

/* ---- matrix products (eq_gemm.c) ---- */
/* y[r][j] = rq(bias[j] + sum_k a[r][k] * w[j][k]) for r < rows, j < cols; a is rows x k
 * (u8 or s8, row stride k), w packed as eq_conv_q8's (cols output channels, one group).
 * cols_buf: pb*kp bytes, acc: 16*pb int32 with pb = eq_conv_block(kp, rows). */
void eq_gemm_q8(int rows, int cols, int k, const void *a, int a_dt, const int8_t *w,
                int kp, const int32_t *bias, const eq_rq *rq, void *y, int y_dt,
                uint8_t *cols_buf, int32_t *acc);
/* row: k int64 of scratch */
void eq_gemm_i64(int rows, int cols, int k, const void *a, int a_dt, const int64_t *w,
                 const int64_t *bias, const eq_rq *rq, void *y, int y_dt, int64_t *row);
/* Integer a (values fitting int32) and accumulators proven to fit int32 (bias included):
 * int32 weights, sums modulo 2^32 (vectorised); scratch: k int32. */
void eq_gemm_i32(int rows, int cols, int k, const void *a, int a_dt, const int32_t *w,
                 const int32_t *bias, const eq_rq *rq, void *y, int y_dt, int32_t *scratch);
void eq_gemm_f(int rows, int cols, int k, const void *a, int a_dt, const float *w,
               const float *bias, void *y, int y_dt);

/* ---- pooling (eq_pool.c) ---- */
typedef struct {
    int n, c, h, w, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl;
} eq_pool_shape;
void eq_maxpool(const eq_pool_shape *s, const void *x, int dt, void *y);
/* Window sum (integer: exact int64) divided by the count of input taps (or all taps
 * when count_pad) in double; y is float (dt_y) -- the reference's AveragePool rule. */
void eq_avgpool(const eq_pool_shape *s, const void *x, int x_dt, int count_pad,
                void *y, int y_dt);

/* ---- elementwise and data movement (eq_misc.c) ---- */
void eq_clip_i(const void *x, int x_dt, size_t n, int64_t lo, int64_t hi, void *y, int y_dt);
void eq_clip_f(const void *x, int x_dt, size_t n, double lo, double hi, void *y, int y_dt);
void eq_sigmoid(const void *x, int x_dt, size_t n, void *y, int y_dt);
/* Copy a [outer][inner] block into y at column offset col of rows of width row (elements),
 * converting the element type (integers exactly, integer -> float as a real value). */
void eq_copy_block(const void *x, int x_dt, size_t outer, size_t inner,
                   void *y, int y_dt, size_t row, size_t col);
/* Gather along an axis: x is [outer][axis_len][inner], indices (already non-negative). */
void eq_gather(const void *x, int dt, size_t outer, size_t axis_len, size_t inner,
               const int64_t *idx, size_t n_idx, void *y);
/* Elementwise binary op with NumPy broadcasting over up to 6 dims (shapes padded to
 * rank 6 by the generator); op: 0 add, 1 sub, 2 mul. Integer: exact int64; float: dt. */
void eq_binary(int op, const void *a, int a_dt, const long *a_strides,
               const void *b, int b_dt, const long *b_strides,
               const long *shape, void *y, int y_dt);

/* ---- NHWC 8-bit kernels (eq_nhwc.c): tensors [N][H][W][C] (the layout pass) ----
 * Weights of eq_gemm_nhwc / eq_conv_nhwc are packed as eq_conv_q8's (one group):
 * per block of 16 output channels [kp/4][16][4] int8, taps (ky, kx, c) for a conv.
 * a / x are u8 or s8 (s8: +128 in the kernel, bias - 128*sum(w) by the generator). */
void eq_gemm_nhwc(int rows, int m, int k, const void *a, int a_dt, const int8_t *w, int kp,
                  const int32_t *bias, const eq_rq *rq, void *y, int y_dt, int threads);
/* cols: eq_nhwc_block(kp) * kp bytes per thread */
int eq_nhwc_block(int kp);
void eq_conv_nhwc(const eq_conv_shape *s, const void *x, int x_dt, const int8_t *w, int kp,
                  const int32_t *bias, const eq_rq *rq, void *y, int y_dt, uint8_t *cols,
                  int threads);
/* Depthwise: w is [kh*kw][c] int16, bias [c] (no +128 shift); acc: c int32 per thread. */
void eq_dw_nhwc(const eq_conv_shape *s, const void *x, int x_dt, const int16_t *w,
                const int32_t *bias, const eq_rq *rq, void *y, int y_dt, int32_t *acc,
                int threads);
/* MaxPool of u8 (dt EQ_U8) or s8 (EQ_S8) NHWC tensors; every window holds an input tap. */
void eq_maxpool_nhwc(const eq_pool_shape *s, const void *x, int dt, void *y);
/* LayoutConvert: y = transpose(x, perm), 4-D, elements of es bytes. */
void eq_transpose4(const void *x, size_t es, const int *shape, const int *perm, void *y);

/* ---- third-party formats: NEMO, onnxruntime QDQ/QOperator, QONNX ---- */
#include "eq_thirdparty.h"

#endif
