/* The armcl backend's runtime (DESIGN §7): ACL 20.08 computes u8·u8 -> S32 products
 * (NEGEMMLowpMatrixMultiplyCore, output stage NONE, no bias); edgeq's own C code does
 * im2col (with the +128 shift of signed operands) and the RequantShift, so results are
 * bit-exact with the reference backend. */
#ifndef EQA_KERNELS_H
#define EQA_KERNELS_H
#include <stddef.h>
#include <stdint.h>

#include "eq_kernels.h"
#include "eqa_acl.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Convolution geometry (one image), as the C backend's eq_conv_shape. */
typedef struct {
    int c, h, w, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl;
} eqa_conv;

/* rows[p*stride + k] for p < oh*ow, k = (ky*kw + kx)*c + ch (tap-major, channel-minor),
 * from one 8-bit image in NCHW (nhwc == 0) or NHWC; signed values are stored +128 and
 * padding taps hold the encoded zero. */
void eqa_im2col(const void *x, int x_signed, int nhwc, const eqa_conv *g, uint8_t *rows,
                size_t stride);

/* rows[r*stride + j] = x[r*k + j] (+128 when signed), for r < m, j < k. */
void eqa_copy_rows(const void *x, int x_signed, size_t m, size_t k, uint8_t *rows,
                   size_t stride);

/* y = clip(floor((acc·mul[c] + add[c]) / 2^shift)) for acc[(img*positions + p)*stride + c];
 * the output is [img][c][p] (NCHW, nhwc == 0) or [img][p][c]. */
void eqa_requant(const int32_t *acc, size_t stride, size_t imgs, size_t positions,
                 int channels, const eq_rq *rq, int nhwc, void *y, int y_dt);

#ifdef __cplusplus
}
#endif
#endif
