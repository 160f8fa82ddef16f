/* NHWC 8-bit kernels (the layout pass stores convolution activations as [N][H][W][C]):
 *
 * - eq_gemm_nhwc: y[p][j] = rq(bias[j] + sum_k a[p][k] * w[j][k]) -- pointwise 1x1
 *   convolutions (a = the input tensor itself, p = pixel, k = channel), im2col'ed
 *   convolutions and Gemm. Register-blocked over 4 pixels x 64 output channels:
 *   16 AVX-512 VNNI accumulators fed by vpdpbusd (u8 x s8, 4 taps per lane); a plain C
 *   loop on the same packed weights elsewhere (aarch64/NEON by auto-vectorisation).
 * - eq_conv_nhwc: any group-1 convolution as im2col (taps in (ky, kx, c) order) into it.
 * - eq_dw_nhwc: depthwise with the channel loop innermost (vectorises): u8/s8 x int16
 *   weights into int32, borders by clipping the tap range, no padded copy.
 * - eq_transpose4: LayoutConvert.
 *
 * Activations are u8 or s8; s8 is shifted by +128 into u8 for vpdpbusd (XOR 0x80),
 * the generator folds -128*sum(w) into the bias. Requantisation is fused in the output
 * loop, per pixel over channels (exact int64 as eq_store_row32). */
#include "eq_kernels.h"
#include <string.h>

#if defined(__AVX512VNNI__) && defined(__AVX512F__) && defined(__AVX512DQ__) && \
    defined(__AVX512BW__) && defined(__AVX512VL__)
#include <immintrin.h>
#define EQ_NHWC_VNNI 1

/* Requantisation of 16 int32 lanes (channels j..j+15) to 16 bytes, exact in int64:
 * clip(floor((acc*mul + add) / 2^shift)) -- the same integers as store_channels.
 *
 * Fast form (`fast`: every mul fits int32, shift >= 32, lo/hi fit int32 -- calibrated
 * 8-bit layers): vpmuldq gives the exact 64-bit acc*mul of the even and the odd
 * channels in place (no widening shuffles); after + add only the high 32 bits matter,
 * as floor(v / 2^shift) = floor(hi32(v) / 2^(shift-32)) (floors compose), so the shift
 * and the clip run on 16 int32 lanes and one vpmovdb narrows them. */
typedef struct {
    __m128i sh;
    __m512i lo, hi;
    int fast;
    int sat; /* fast form: the clip is a saturating narrowing (1: [0, 255], 2: [-128, 127]) */
} rq_vec;

/* for channels [j0, j1) */
static inline rq_vec rq_setup(const eq_rq *rq, int j0, int j1) {
    int fast = rq->shift >= 32 && rq->lo >= INT32_MIN && rq->hi <= INT32_MAX && rq->lo <= rq->hi;
    for (int j = j0; j < j1 && fast; j++) fast = rq->mul[j] >= INT32_MIN && rq->mul[j] <= INT32_MAX;
    if (fast) {
        const int sat = rq->lo == 0 && rq->hi == 255 ? 1 : rq->lo == -128 && rq->hi == 127 ? 2 : 0;
        rq_vec r = {_mm_cvtsi32_si128(rq->shift - 32), _mm512_set1_epi32((int32_t)rq->lo),
                    _mm512_set1_epi32((int32_t)rq->hi), 1, sat};
        return r;
    }
    rq_vec r = {_mm_cvtsi32_si128(rq->shift), _mm512_set1_epi64(rq->lo), _mm512_set1_epi64(rq->hi),
                0, 0};
    return r;
}

static inline __mmask16 lanes(int n) { return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1); }

/* the per-channel constants of 16 lanes (n valid; the rest of mul/add is not read).
 * Fast form: m0 = mul as int32 in its channel's lane, m1 = the odd channels' mul moved to
 * the even lanes, a0/a1 = add of the even/odd channels as int64. */
typedef struct {
    __m512i m0, m1, a0, a1;
} rq_ch;

static inline __attribute__((always_inline)) rq_ch rq_load(const int64_t *mul, const int64_t *add, int n, const rq_vec *r) {
    const __mmask8 k0 = (__mmask8)lanes(n), k1 = (__mmask8)(lanes(n) >> 8);
    const __m512i ml = _mm512_maskz_loadu_epi64(k0, mul), mh = _mm512_maskz_loadu_epi64(k1, mul + 8);
    const __m512i al = _mm512_maskz_loadu_epi64(k0, add), ah = _mm512_maskz_loadu_epi64(k1, add + 8);
    if (!r->fast) {
        const rq_ch c = {ml, mh, al, ah};
        return c;
    }
    const __m512i m32 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(ml)),
                                           _mm512_cvtepi64_epi32(mh), 1);
    const __m512i ev = _mm512_set_epi64(14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i od = _mm512_set_epi64(15, 13, 11, 9, 7, 5, 3, 1);
    const rq_ch c = {m32, _mm512_srli_epi64(m32, 32), _mm512_permutex2var_epi64(al, ev, ah),
                     _mm512_permutex2var_epi64(al, od, ah)};
    return c;
}

/* acc += a (u8 lanes) . w (s8 lanes), 4 products per int32 lane (see tile_vnni) */
#define DPBUSD(acc, a, w) __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(w))
/* acc += a (s16 pairs) . w (s16 pairs); inline asm for the same reason as DPBUSD */
#define DPWSSD(acc, a, w) __asm__("vpdpwssd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(w))

static inline __attribute__((always_inline)) __m128i rq16c(__m512i acc, const rq_ch *c, const rq_vec *r) {
    if (r->fast) {
        const __m512i e = _mm512_add_epi64(_mm512_mul_epi32(acc, c->m0), c->a0);
        const __m512i o = _mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64(acc, 32), c->m1), c->a1);
        /* even lanes: the high halves of e (dwords swapped in place), odd lanes: of o */
        __m512i v = _mm512_mask_shuffle_epi32(o, (__mmask16)0x5555, e, _MM_PERM_CDAB);
        v = _mm512_sra_epi32(v, r->sh);
        if (r->sat == 1) return _mm512_cvtusepi32_epi8(_mm512_max_epi32(v, _mm512_setzero_si512()));
        if (r->sat == 2) return _mm512_cvtsepi32_epi8(v);
        v = _mm512_min_epi32(_mm512_max_epi32(v, r->lo), r->hi);
        return _mm512_cvtepi32_epi8(v);
    }
    __m512i a0 = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(acc));
    __m512i a1 = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(acc, 1));
    a0 = _mm512_sra_epi64(_mm512_add_epi64(_mm512_mullo_epi64(a0, c->m0), c->a0), r->sh);
    a1 = _mm512_sra_epi64(_mm512_add_epi64(_mm512_mullo_epi64(a1, c->m1), c->a1), r->sh);
    a0 = _mm512_min_epi64(_mm512_max_epi64(a0, r->lo), r->hi);
    a1 = _mm512_min_epi64(_mm512_max_epi64(a1, r->lo), r->hi);
    return _mm_unpacklo_epi64(_mm512_cvtepi64_epi8(a0), _mm512_cvtepi64_epi8(a1));
}

#endif

/* y[off + j] = rq_j(acc[j]) for j < m (channels j0 + j): per-channel mul/add. */
static void store_channels(const int32_t *acc, int m, int j0, const eq_rq *rq, void *y,
                           int y_dt, size_t off) {
    if (rq == NULL) {
        for (int j = 0; j < m; j++) eq_store_i(y, y_dt, off + j, acc[j]);
        return;
    }
    const int64_t *mul = rq->mul + j0, *add = rq->add + j0, lo = rq->lo, hi = rq->hi;
    const int sh = rq->shift;
    if (y_dt == EQ_U8 || y_dt == EQ_S8) {
        uint8_t *o = (uint8_t *)y + off;
        for (int j = 0; j < m; j++) {
            int64_t v = ((int64_t)acc[j] * mul[j] + add[j]) >> sh;
            v = v < lo ? lo : v > hi ? hi : v;
            o[j] = (uint8_t)v; /* two's complement byte: the s8 value for EQ_S8 */
        }
        return;
    }
    for (int j = 0; j < m; j++) {
        int64_t v = ((int64_t)acc[j] * mul[j] + add[j]) >> sh;
        eq_store_i(y, y_dt, off + j, v < lo ? lo : v > hi ? hi : v);
    }
}

/* 4 consecutive bytes of a row at k, XOR flip (the tail past k_len reads as zeros --
 * its weights are zero anyway). */
static inline uint32_t load4(const uint8_t *row, int k, int k_len, uint32_t flip) {
    uint32_t v = 0;
    const int n = k_len - k < 4 ? k_len - k : 4;
    memcpy(&v, row + k, (size_t)n);
    return v ^ flip;
}

#ifdef EQ_NHWC_VNNI
/* One row's 4 bytes at k4 against NB weight vectors (accumulators X0..X3). */
#define ROW_DOT(r, X0, X1, X2, X3)                                                       \
    {                                                                                    \
        int32_t v;                                                                       \
        memcpy(&v, a + (size_t)(r) * lda + 4 * k4, 4);                                   \
        __m512i av = _mm512_set1_epi32(v);                                               \
        if (FL) av = _mm512_xor_si512(av, fl); /* s8 activations */                      \
        DPBUSD(X0, av, w0);                                            \
        if (NB > 1) DPBUSD(X1, av, w1);                                \
        if (NB > 2) DPBUSD(X2, av, w2);                                \
        if (NB > 3) DPBUSD(X3, av, w3);                                \
    }
#define ROW_TAIL(r, X0, X1, X2, X3)                                                      \
    {                                                                                    \
        const __m512i av = _mm512_set1_epi32((int)load4(a + (size_t)(r) * lda, 4 * k4, K, flip)); \
        DPBUSD(X0, av, w0);                                            \
        if (NB > 1) DPBUSD(X1, av, w1);                                \
        if (NB > 2) DPBUSD(X2, av, w2);                                \
        if (NB > 3) DPBUSD(X3, av, w3);                                \
    }
/* the weights of tap group k4 for the NB channel blocks */
#define LOAD_W                                                                           \
    const __m512i w0 = _mm512_loadu_si512((const void *)wk);                             \
    const __m512i w1 = NB > 1 ? _mm512_loadu_si512((const void *)(wk + bs)) : z;        \
    const __m512i w2 = NB > 2 ? _mm512_loadu_si512((const void *)(wk + 2 * bs)) : z;    \
    const __m512i w3 = NB > 3 ? _mm512_loadu_si512((const void *)(wk + 3 * bs)) : z;
#define ROW_OUT(r, X0, X1, X2, X3)                                                       \
    {                                                                                    \
        tile_out(X0, r, 0, tc, y8, ldy, out);                                            \
        if (NB > 1) tile_out(X1, r, 1, tc, y8, ldy, out);                                \
        if (NB > 2) tile_out(X2, r, 2, tc, y8, ldy, out);                                \
        if (NB > 3) tile_out(X3, r, 3, tc, y8, ldy, out);                                \
    }

/* Per-channel constants of up to 4 blocks of 16 output channels, set up once per block
 * of channels rather than per tile (for a short K they cost as much as the products). */
typedef struct {
    __m512i bias[4];
    rq_ch rc[4];
    __mmask16 mask[4];
    const rq_vec *rv;
} tile_consts;

static inline void tile_setup(tile_consts *tc, int nj, const int32_t *bias, const int64_t *mul,
                              const int64_t *add, const rq_vec *rv) {
    tc->rv = rv;
    for (int b = 0; b < 4; b++) {
        const int n = nj - 16 * b;
        tc->mask[b] = n > 0 ? lanes(n) : 0;
        tc->bias[b] = _mm512_maskz_loadu_epi32(tc->mask[b], bias + 16 * b);
        const rq_ch none = {_mm512_setzero_si512(), _mm512_setzero_si512(),
                            _mm512_setzero_si512(), _mm512_setzero_si512()};
        tc->rc[b] = mul != NULL && n > 0 ? rq_load(mul + 16 * b, add + 16 * b, n, rv) : none;
    }
}

/* acc of row r, channel block b (bias included): requantised bytes to y8 + r*ldy
 * (y8 != NULL), else int32 to out[r*64 + 16b] */
static inline __attribute__((always_inline)) void tile_out(
    __m512i acc, int r, int b, const tile_consts *tc, uint8_t *y8, size_t ldy, int32_t *out) {
    if (y8)
        _mm_mask_storeu_epi8(y8 + (size_t)r * ldy + 16 * b, tc->mask[b],
                             rq16c(acc, &tc->rc[b], tc->rv));
    else
        _mm512_storeu_si512((void *)(out + (size_t)r * 64 + b * 16), acc);
}

/* R pixels (rows of a; 1 or 4) x NB blocks of 16 channels: acc = bias + a[r] . w[b].
 * y8 != NULL: requantised bytes to y8 + r*ldy; else the int32 sums to out[r*64 + j].
 * The 16 accumulators are named variables, not an array, and vpdpbusd is inline asm
 * (DPBUSD): gcc 12 kept an array's elements in memory, and with the intrinsic it copied
 * accumulators out and back around each vpdpbusd (32 register moves and 2 spills per 16
 * vpdpbusd, measured). */
static inline __attribute__((always_inline)) void tile_vnni(
    const uint8_t *a, size_t lda, int K, uint32_t flip, const int8_t *w, int kp,
    const int R, const int NB, const int FL, const tile_consts *tc, uint8_t *y8, size_t ldy,
    int32_t *out) {
    const __m512i z = _mm512_setzero_si512();
    const __m512i b0 = tc->bias[0], b1 = tc->bias[1], b2 = tc->bias[2], b3 = tc->bias[3];
    __m512i c00 = b0, c01 = b1, c02 = b2, c03 = b3, c10 = b0, c11 = b1, c12 = b2, c13 = b3;
    __m512i c20 = b0, c21 = b1, c22 = b2, c23 = b3, c30 = b0, c31 = b1, c32 = b2, c33 = b3;
    const int k4full = K / 4;
    const __m512i fl = _mm512_set1_epi32((int)flip);
    const int8_t *wk = w;
    const size_t bs = (size_t)16 * kp; /* bytes between channel blocks */
    for (int k4 = 0; k4 < k4full; k4++, wk += 64) {
        LOAD_W
        ROW_DOT(0, c00, c01, c02, c03)
        if (R > 1) {
            ROW_DOT(1, c10, c11, c12, c13)
            ROW_DOT(2, c20, c21, c22, c23)
            ROW_DOT(3, c30, c31, c32, c33)
        }
    }
    if (K % 4) {
        const int k4 = k4full;
        LOAD_W
        ROW_TAIL(0, c00, c01, c02, c03)
        if (R > 1) {
            ROW_TAIL(1, c10, c11, c12, c13)
            ROW_TAIL(2, c20, c21, c22, c23)
            ROW_TAIL(3, c30, c31, c32, c33)
        }
    }
    ROW_OUT(0, c00, c01, c02, c03)
    if (R > 1) {
        ROW_OUT(1, c10, c11, c12, c13)
        ROW_OUT(2, c20, c21, c22, c23)
        ROW_OUT(3, c30, c31, c32, c33)
    }
}
#endif

#if !defined(EQ_NHWC_VNNI) && defined(__aarch64__)
#include <arm_neon.h>
#define EQ_NHWC_NEON 1
#ifndef NEON_R
#define NEON_R 2 /* pixels per tile: 8 * NEON_R accumulators of the 32 vector registers */
#endif

/* The A72 has no sdot. The tile multiplies in s8 x s8 -> int16 (smull: 8 exact products
 * per instruction, |p| <= 2^14, no widening of the packed weights) and adds adjacent
 * pairs into int32 (sadalp). The u8 taps u = a ^ flip enter as u - 128 (XOR 0x80);
 * sum_k u*w = sum_k (u - 128)*w + 128*sum_k w, the last term per channel (wsum16). */

/* acc[r][2i], acc[r][2i+1] += the products of 16 packed weights (channels 4i..4i+3 x 4
 * taps; low 8 bytes = channels 4i, 4i+1) with pixel r's 4 taps x[r] (repeated 4 times):
 * lanes (channel, tap pair). */
#define NEON_MAC(R, x, wk, acc)                                                          \
    for (int i = 0; i < 4; i++) {                                                        \
        const int8x16_t wv = vld1q_s8((wk) + 16 * i);                                    \
        for (int r = 0; r < (R); r++) {                                                  \
            acc[r][2 * i] = vpadalq_s16(acc[r][2 * i], vmull_s8(vget_low_s8(x[r]),       \
                                                                  vget_low_s8(wv)));     \
            acc[r][2 * i + 1] = vpadalq_s16(acc[r][2 * i + 1], vmull_high_s8(x[r], wv)); \
        }                                                                                \
    }

/* 4 taps (u8 bytes of v XOR flip) as s8 u - 128 (fl = flip ^ 0x80808080), repeated over
 * the 16 lanes */
static inline __attribute__((always_inline)) int8x16_t taps4(uint32_t v, uint32_t fl) {
    return vreinterpretq_s8_u32(vdupq_n_u32(v ^ fl));
}

/* R pixels (rows a, a + lda, ...) x one block of 16 channels (w: [kp/4][16][4]):
 * out[r * 64 + j] = corr[j] + sum_k (u[r][k] - 128) * w[j][k], u = a ^ flip. 8 int32x4
 * accumulators per pixel; each weight vector feeds R pixels. */
static inline __attribute__((always_inline)) void tile_neon(
    const uint8_t *a, size_t lda, int K, uint32_t flip, const int8_t *w, const int R,
    const int32_t *corr, int32_t *out) {
    int32x4_t acc[4][8];
    for (int r = 0; r < R; r++)
        for (int i = 0; i < 8; i++) acc[r][i] = vdupq_n_s32(0);
    const uint32_t fl = flip ^ 0x80808080u;
    const uint8x8_t fl8 = vreinterpret_u8_u32(vdup_n_u32(fl));
    int k = 0;
    for (; k + 8 <= K; k += 8) { /* 8 taps per pixel: one load, two broadcasts */
        int8x16_t x0[4], x1[4];
        for (int r = 0; r < R; r++) {
            const uint32x2_t v = vreinterpret_u32_u8(veor_u8(vld1_u8(a + r * lda + k), fl8));
            x0[r] = vreinterpretq_s8_u32(vdupq_lane_u32(v, 0));
            x1[r] = vreinterpretq_s8_u32(vdupq_lane_u32(v, 1));
        }
        NEON_MAC(R, x0, w + (size_t)k * 16, acc)
        NEON_MAC(R, x1, w + (size_t)k * 16 + 64, acc)
    }
    if (k + 4 <= K) {
        int8x16_t x[4];
        for (int r = 0; r < R; r++) {
            uint32_t v;
            memcpy(&v, a + r * lda + k, 4);
            x[r] = taps4(v, fl);
        }
        NEON_MAC(R, x, w + (size_t)k * 16, acc)
        k += 4;
    }
    if (k < K) { /* taps past K: u = 0 against zero weights */
        int8x16_t x[4];
        for (int r = 0; r < R; r++) x[r] = taps4(load4(a + r * lda, k, K, 0), fl);
        NEON_MAC(R, x, w + (size_t)k * 16, acc)
    }
    for (int r = 0; r < R; r++)
        for (int i = 0; i < 4; i++) {
            const int32x4_t s = vpaddq_s32(acc[r][2 * i], acc[r][2 * i + 1]);
            vst1q_s32(out + r * 64 + 4 * i, vaddq_s32(s, vld1q_s32(corr + 4 * i)));
        }
}

/* Vector requantisation of 8-bit outputs, exact in int64 as store_channels:
 * clip(floor((acc*mul + add) / 2^shift)) with smlal (exact 32x32+64 -> 64 bits), sshl by
 * -shift (an arithmetic shift right: floor), a saturating narrowing to int32 (the clip to
 * [lo, hi] inside int32 gives the same byte) and the int32 clip. For channel blocks whose
 * mul all fit int32 (calibrated layers); rq_vec_ok says when. */
typedef struct {
    int32_t mul[64];
    int64_t add[64];
    int64x2_t nsh;
    int32x4_t lo, hi;
} rq_neon;

/* channels [jb, jb + nj): 1 and the constants when the vector form applies */
static int rq_neon_setup(const eq_rq *rq, int y_dt, int jb, int nj, rq_neon *v) {
    if (rq == NULL || (y_dt != EQ_U8 && y_dt != EQ_S8) || rq->shift < 0 || rq->shift > 63 ||
        rq->lo < INT32_MIN || rq->hi > INT32_MAX || rq->lo > rq->hi)
        return 0;
    for (int j = 0; j < 64; j++) {
        const int64_t m = j < nj ? rq->mul[jb + j] : 0;
        if (m < INT32_MIN || m > INT32_MAX) return 0;
        v->mul[j] = (int32_t)m;
        v->add[j] = j < nj ? rq->add[jb + j] : 0;
    }
    v->nsh = vdupq_n_s64(-(int64_t)rq->shift);
    v->lo = vdupq_n_s32((int32_t)rq->lo);
    v->hi = vdupq_n_s32((int32_t)rq->hi);
    return 1;
}

static inline __attribute__((always_inline)) int16x4_t rq4(const int32_t *acc, const rq_neon *v,
                                                           int c) {
    const int32x4_t a = vld1q_s32(acc + c), m = vld1q_s32(v->mul + c);
    int64x2_t lo = vmlal_s32(vld1q_s64(v->add + c), vget_low_s32(a), vget_low_s32(m));
    int64x2_t hi = vmlal_high_s32(vld1q_s64(v->add + c + 2), a, m);
    lo = vshlq_s64(lo, v->nsh);
    hi = vshlq_s64(hi, v->nsh);
    const int32x4_t r = vqmovn_high_s64(vqmovn_s64(lo), hi);
    return vmovn_s32(vminq_s32(vmaxq_s32(r, v->lo), v->hi));
}

/* y[j] = rq(acc[j]) for j < nj (bytes: the low byte of the clipped value, as
 * store_channels; acc lanes past nj up to the next 16 are computed and dropped) */
static void store_neon(const int32_t *acc, int nj, const rq_neon *v, uint8_t *y) {
    for (int c = 0; c < nj; c += 16) {
        const int16x8_t h0 = vcombine_s16(rq4(acc, v, c), rq4(acc, v, c + 4));
        const int16x8_t h1 = vcombine_s16(rq4(acc, v, c + 8), rq4(acc, v, c + 12));
        const uint8x16_t b = vreinterpretq_u8_s8(vmovn_high_s16(vmovn_s16(h0), h1));
        if (nj - c >= 16) {
            vst1q_u8(y + c, b);
        } else {
            uint8_t t[16];
            vst1q_u8(t, b);
            memcpy(y + c, t, (size_t)(nj - c));
        }
    }
}

/* corr[j] = bias[j] + 128 * sum_k w[j][k] for the 16 channels of a packed block (int32
 * lanes wrap as the accumulator does; the generator proves the sum fits). */
static void wsum16(const int8_t *w, int kp, const int32_t *bias, int nj, int32_t *corr) {
    int32x4_t s[4] = {vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0)};
    for (int k = 0; k < kp; k += 4)
        for (int i = 0; i < 4; i++)
            s[i] = vpadalq_s16(s[i], vpaddlq_s8(vld1q_s8(w + (size_t)k * 16 + 16 * i)));
    int32_t b[16] = {0};
    memcpy(b, bias, (size_t)(nj < 16 ? nj : 16) * sizeof(int32_t));
    for (int i = 0; i < 4; i++) /* s[i] lanes: channels 4i..4i+3 (4 taps summed) */
        vst1q_s32(corr + 4 * i, vaddq_s32(vld1q_s32(b + 4 * i), vshlq_n_s32(s[i], 7)));
}
#endif

#if !defined(EQ_NHWC_VNNI) && !defined(EQ_NHWC_NEON)
/* Portable: one pixel x NB blocks of 16 channels (gcc vectorises the j loop). */
static void tile_c(const uint8_t *a, int K, uint32_t flip, const int8_t *w, int kp, int NB,
                   int32_t *out) {
    for (int b = 0; b < NB; b++) {
        int32_t t[16] = {0};
        const int8_t *wb = w + (size_t)b * 16 * kp;
        for (int k4 = 0; k4 * 4 < K; k4++) {
            const uint32_t v = load4(a, 4 * k4, K, flip);
            const int32_t x0 = v & 0xff, x1 = (v >> 8) & 0xff, x2 = (v >> 16) & 0xff, x3 = v >> 24;
            const int8_t *wk = wb + (size_t)k4 * 64;
            for (int j = 0; j < 16; j++)
                t[j] += x0 * wk[4 * j] + x1 * wk[4 * j + 1] + x2 * wk[4 * j + 2] + x3 * wk[4 * j + 3];
        }
        memcpy(out + b * 16, t, sizeof t);
    }
}
#endif

#ifdef EQ_NHWC_VNNI
#define TILE1(R, NB, FL)                                                                 \
    tile_vnni(ap, lda, K, flip, wb, kp, R, NB, FL, &tc, y8 ? y8 + (size_t)p * ldy + jb : NULL, \
              ldy, out)
/* constant R, NB and FL: the tile's loops unroll and its accumulators stay in registers */
#define TILE(R, NB)                                                                      \
    do {                                                                                 \
        if (flip)                                                                        \
            TILE1(R, NB, 1);                                                             \
        else                                                                             \
            TILE1(R, NB, 0);                                                             \
    } while (0)
#endif

#if defined(EQ_NHWC_NEON) && !defined(__clang__)
/* gcc's pre-allocation scheduler hoists all of a k step's weight loads and spills the
 * accumulators; without it the tile's registers fit (fewer guest instructions) */
#define GEMM_RANGE_ATTR __attribute__((optimize("no-schedule-insns")))
#else
#define GEMM_RANGE_ATTR
#endif

/* Rows [p0, p1) x output channels [j0, j1) (j0 a multiple of 16). */
static GEMM_RANGE_ATTR void gemm_range(const uint8_t *a, size_t lda, int K, uint32_t flip, const int8_t *w,
                       int kp, const int32_t *bias, const eq_rq *rq, void *y, int y_dt,
                       size_t ldy, int p0, int p1, int j0, int j1) {
    int32_t out[4 * 64];
    /* pixel blocks whose rows stay in L1 while every channel block passes over them */
    int pb = (int)(16384 / (K > 0 ? K : 1));
    pb = pb < 4 ? 4 : pb & ~3;
#ifdef EQ_NHWC_VNNI
    const int fast = rq != NULL && (y_dt == EQ_U8 || y_dt == EQ_S8);
    uint8_t *y8 = fast ? (uint8_t *)y : NULL;
    const int64_t *mul = fast ? rq->mul : NULL, *add = fast ? rq->add : NULL;
    const rq_vec rv = fast ? rq_setup(rq, j0, j1)
                           : (rq_vec){_mm_setzero_si128(), _mm512_setzero_si512(),
                                      _mm512_setzero_si512(), 0, 0};
#endif
    for (int q0 = p0; q0 < p1; q0 += pb) {
        const int q1 = q0 + pb < p1 ? q0 + pb : p1;
        for (int jb = j0; jb < j1; jb += 64) {
            const int nj = j1 - jb < 64 ? j1 - jb : 64, nb = (nj + 15) / 16;
            const int8_t *wb = w + (size_t)jb * kp;
            int p = q0;
#ifdef EQ_NHWC_VNNI
            tile_consts tc;
            tile_setup(&tc, nj, bias + jb, mul ? mul + jb : NULL, add ? add + jb : NULL, &rv);
            for (; p + 4 <= q1; p += 4) {
                const uint8_t *ap = a + (size_t)p * lda;
                switch (nb) {
                case 4: TILE(4, 4); break;
                case 3: TILE(4, 3); break;
                case 2: TILE(4, 2); break;
                default: TILE(4, 1); break;
                }
                if (!y8)
                    for (int r = 0; r < 4; r++)
                        store_channels(out + r * 64, nj, jb, rq, y, y_dt, (size_t)(p + r) * ldy + jb);
            }
            for (; p < q1; p++) {
                const uint8_t *ap = a + (size_t)p * lda;
                switch (nb) {
                case 4: TILE(1, 4); break;
                case 3: TILE(1, 3); break;
                case 2: TILE(1, 2); break;
                default: TILE(1, 1); break;
                }
                if (!y8) store_channels(out, nj, jb, rq, y, y_dt, (size_t)p * ldy + jb);
            }
#elif defined(EQ_NHWC_NEON)
            int32_t corr[64];
            rq_neon rv;
            const int vq = rq_neon_setup(rq, y_dt, jb, nj, &rv);
            for (int b = 0; b < nb; b++)
                wsum16(wb + (size_t)b * 16 * kp, kp, bias + jb + 16 * b, nj - 16 * b, corr + 16 * b);
            for (; p < q1; p += NEON_R) {
                const uint8_t *ap = a + (size_t)p * lda;
                const int nr = q1 - p < NEON_R ? q1 - p : NEON_R;
                for (int b = 0; b < nb; b++) {
                    const int8_t *w16 = wb + (size_t)b * 16 * kp;
                    if (nr == NEON_R)
                        tile_neon(ap, lda, K, flip, w16, NEON_R, corr + 16 * b, out + b * 16);
                    else
                        for (int r = 0; r < nr; r++)
                            tile_neon(ap + r * lda, lda, K, flip, w16, 1, corr + 16 * b,
                                      out + r * 64 + b * 16);
                }
                for (int r = 0; r < nr; r++) {
                    const size_t off = (size_t)(p + r) * ldy + jb;
                    if (vq)
                        store_neon(out + r * 64, nj, &rv, (uint8_t *)y + off);
                    else
                        store_channels(out + r * 64, nj, jb, rq, y, y_dt, off);
                }
            }
#else
            for (; p < q1; p++) {
                tile_c(a + (size_t)p * lda, K, flip, wb, kp, nb, out);
                for (int j = 0; j < nj; j++) out[j] += bias[jb + j];
                store_channels(out, nj, jb, rq, y, y_dt, (size_t)p * ldy + jb);
            }
#endif
        }
    }
}

/* Thread t's share: pixels when there are enough of them, else channel blocks of 16. */
static void split(int rows, int m, int t, int nt, int *p0, int *p1, int *j0, int *j1) {
    *p0 = 0, *p1 = rows, *j0 = 0, *j1 = m;
    if (nt <= 1) return;
    if (rows >= 16 * nt) {
        const int share = ((rows + nt - 1) / nt + 3) & ~3;
        *p0 = t * share < rows ? t * share : rows;
        *p1 = *p0 + share < rows ? *p0 + share : rows;
    } else {
        const int blocks = (m + 15) / 16, share = (blocks + nt - 1) / nt;
        *j0 = t * share * 16 < m ? t * share * 16 : m;
        *j1 = *j0 + share * 16 < m ? *j0 + share * 16 : m;
    }
}

typedef struct {
    const uint8_t *a;
    size_t lda;
    int rows, k, kp, m;
    uint32_t flip;
    const int8_t *w;
    const int32_t *bias;
    const eq_rq *rq;
    void *y;
    int y_dt;
} gemm_ctx;

static void gemm_task(void *arg, int t, int nt) {
    const gemm_ctx *g = (const gemm_ctx *)arg;
    int p0, p1, j0, j1;
    split(g->rows, g->m, t, nt, &p0, &p1, &j0, &j1);
    if (p0 < p1 && j0 < j1)
        gemm_range(g->a, g->lda, g->k, g->flip, g->w, g->kp, g->bias, g->rq, g->y,
                   g->y_dt, (size_t)g->m, p0, p1, j0, j1);
}

void eq_gemm_nhwc(int rows, int m, int k, const void *a, int a_dt, const int8_t *w, int kp,
                  const int32_t *bias, const eq_rq *rq, void *y, int y_dt, int threads) {
    const gemm_ctx g = {(const uint8_t *)a, (size_t)k, rows, k, kp, m,
                        a_dt == EQ_S8 ? 0x80808080u : 0u, w, bias, rq, y, y_dt};
    /* 4 shares per thread: a preempted thread holds back a quarter of its part only */
    threads = threads < 1 ? 1 : threads;
    eq_parallel_shares(gemm_task, (void *)&g, threads > 1 ? 4 * threads : 1, threads);
}

/* ---- general (group 1) convolution: im2col rows of kp bytes, taps (ky, kx, c) ---- */
int eq_nhwc_block(int kp) {
    int pb = 32768 / (kp > 0 ? kp : 1);
    pb = pb < 4 ? 4 : pb & ~3;
    return pb;
}

static inline void copy16(uint8_t *d, const uint8_t *src, uint64_t flip64) {
    uint64_t a, b;
    memcpy(&a, src, 8);
    memcpy(&b, src + 8, 8);
    a ^= flip64, b ^= flip64;
    memcpy(d, &a, 8);
    memcpy(d + 8, &b, 8);
}

/* The im2col row of an output pixel whose window lies inside the image and whose rows of
 * taps (kw*C bytes, dilation 1 across) fit 16 bytes -- a first layer on RGB: one 16-byte
 * copy per ky, each overwriting the surplus of the previous one, and a zero tail. Returns
 * 0 (nothing written) for any other pixel, or when a copy would cross the end of x or
 * of cols. */
static inline int interior16(const eq_conv_shape *s, int ni, int oy, int ox, int kp,
                             const uint8_t *x, const uint8_t *x_end, uint8_t *col,
                             const uint8_t *cols_end, uint64_t flip64) {
    const int C = s->c, span = s->kw * C, iy0 = oy * s->sh - s->pt, ix0 = ox * s->sw - s->pl;
    const int taps = s->kh * span;
    if (span > 16 || s->dw != 1 || kp - taps > 4 || iy0 < 0 || iy0 + (s->kh - 1) * s->dh >= s->h ||
        ix0 < 0 || ix0 + s->kw > s->w)
        return 0;
    const uint8_t *src = x + (((size_t)ni * s->h + iy0) * s->w + ix0) * C;
    const size_t row = (size_t)s->dh * s->w * C;
    if (src + (size_t)(s->kh - 1) * row + 16 > x_end || col + (s->kh - 1) * span + 16 > cols_end ||
        col + taps + 4 > cols_end)
        return 0;
    for (int ky = 0; ky < s->kh; ky++) copy16(col + ky * span, src + (size_t)ky * row, flip64);
    const uint32_t zero = 0;
    memcpy(col + taps, &zero, 4); /* the zero taps up to kp (and bytes the next row rewrites) */
    return 1;
}

static void im2col_nhwc(const eq_conv_shape *s, const uint8_t *x, uint8_t flip, int q0, int nq,
                        int kp, uint8_t *cols) {
    const int C = s->c, H = s->h, W = s->w, OW = s->ow, OHW = s->oh * s->ow;
    const uint8_t *x_end = x + (size_t)s->n * H * W * C, *cols_end = cols + (size_t)nq * kp;
    const uint64_t flip64 = flip ? 0x8080808080808080ull : 0;
    int ni = q0 / OHW, oy = (q0 % OHW) / OW, ox = q0 % OW;
    for (int i = 0; i < nq; i++, ox++) {
        if (ox == OW) {
            ox = 0;
            if (++oy == s->oh) oy = 0, ni++;
        }
        uint8_t *col = cols + (size_t)i * kp;
        if (interior16(s, ni, oy, ox, kp, x, x_end, col, cols_end, flip64)) continue;
        int t = 0;
        for (int ky = 0; ky < s->kh; ky++) {
            const int iy = oy * s->sh - s->pt + ky * s->dh;
            if (s->dw == 1 && iy >= 0 && iy < H && ox * s->sw - s->pl >= 0 &&
                ox * s->sw - s->pl + s->kw <= W) { /* the whole kx run is one span */
                const uint8_t *src = x + (((size_t)ni * H + iy) * W + ox * s->sw - s->pl) * C;
                const int span = s->kw * C, span16 = (span + 15) & ~15;
                if (src + span16 <= x_end && col + t + span16 <= cols_end) {
                    /* 8-byte words; the bytes copied past the span are overwritten by
                     * the next span or the zero tail */
                    for (int e = 0; e < span16; e += 8) {
                        uint64_t v;
                        memcpy(&v, src + e, 8);
                        v ^= flip64;
                        memcpy(col + t + e, &v, 8);
                    }
                } else {
                    for (int e = 0; e < span; e++) col[t + e] = src[e] ^ flip;
                }
                t += span;
                continue;
            }
            for (int kx = 0; kx < s->kw; kx++, t += C) {
                const int ix = ox * s->sw - s->pl + kx * s->dw;
                if (iy < 0 || iy >= H || ix < 0 || ix >= W) {
                    memset(col + t, flip, (size_t)C); /* the integer 0 */
                    continue;
                }
                const uint8_t *src = x + (((size_t)ni * H + iy) * W + ix) * C;
                for (int c = 0; c < C; c++) col[t + c] = src[c] ^ flip;
            }
        }
        memset(col + t, 0, (size_t)(kp - t));
    }
}

typedef struct {
    const eq_conv_shape *s;
    const uint8_t *x;
    uint8_t flip;
    int kp;
    const int8_t *w;
    const int32_t *bias;
    const eq_rq *rq;
    void *y;
    int y_dt;
    uint8_t *cols;
} conv_ctx;

static void conv_task(void *arg, int t, int nt) {
    const conv_ctx *c = (const conv_ctx *)arg;
    const eq_conv_shape *s = c->s;
    const int total = s->n * s->oh * s->ow, pb = eq_nhwc_block(c->kp);
    uint8_t *cols = c->cols + (size_t)t * pb * c->kp;
    const int nblocks = (total + pb - 1) / pb;
    for (int bi = t; bi < nblocks; bi += nt) {
        const int q0 = bi * pb, nq = total - q0 < pb ? total - q0 : pb;
        im2col_nhwc(s, c->x, c->flip, q0, nq, c->kp, cols);
        gemm_range(cols, (size_t)c->kp, c->kp, 0, c->w, c->kp, c->bias, c->rq,
                   (uint8_t *)c->y + (size_t)q0 * s->m * eq_dtype_size(c->y_dt), c->y_dt,
                   (size_t)s->m, 0, nq, 0, s->m);
    }
}

void eq_conv_nhwc(const eq_conv_shape *s, const void *x, int x_dt, const int8_t *w, int kp,
                  const int32_t *bias, const eq_rq *rq, void *y, int y_dt, uint8_t *cols,
                  int threads) {
    const conv_ctx c = {s, (const uint8_t *)x, x_dt == EQ_S8 ? 0x80 : 0, kp, w, bias, rq, y,
                        y_dt, cols};
    eq_parallel(conv_task, (void *)&c, threads < 1 ? 1 : threads);
}

/* ---- depthwise: channel loop innermost ---- */
typedef struct {
    const eq_conv_shape *s;
    const void *x;
    int x_dt;
    const int16_t *w; /* [kh*kw][c] */
    const int32_t *bias;
    const eq_rq *rq;
    void *y;
    int y_dt;
    int32_t *acc;
} dw_ctx;

#define DW_PIXEL(T)                                                                      \
    {                                                                                    \
        const T *xb = (const T *)d->x;                                                   \
        for (int ky = ky0; ky < ky1; ky++) {                                             \
            const int iy = iy0 + ky * DH;                                                \
            for (int kx = kx0; kx < kx1; kx++) {                                         \
                const T *xp = xb + (((size_t)ni * H + iy) * W + ix0 + kx * DW) * C;      \
                const int16_t *wp = d->w + (size_t)(ky * KW + kx) * C;                   \
                for (int c = 0; c < C; c++) acc[c] += (int32_t)wp[c] * (int32_t)xp[c];   \
            }                                                                            \
        }                                                                                \
    }

/* The tap range [k0, k1) with 0 <= i0 + k*d < n. */
static inline void tap_range(int i0, int d, int k, int n, int *k0, int *k1) {
    int a = 0, b = k;
    while (a < k && i0 + a * d < 0) a++;
    while (b > a && i0 + (b - 1) * d >= n) b--;
    *k0 = a, *k1 = b;
}

#ifdef EQ_NHWC_VNNI
#define DW_MAX_TAPS 25
/* OB neighbouring outputs of a 3x3 window (dilation 1, stride S; rows ky0..ky1-1 inside
 * the image), 16 channels: each input column is loaded and widened once and feeds every
 * output whose window covers it (3x fewer loads at stride 1). A column outside the image
 * is a load with an all-zero mask (reads nothing, gives the zeros of the padding), so
 * border outputs take this path too; only the first nout outputs are stored. S, OB and
 * SG (s8 input) are constants: the loops unroll, accumulators stay in registers. */
static inline __attribute__((always_inline)) void dw3_block(
    const uint8_t *xb, int W, int C, int iy0, int ix0, int ky0, int ky1, const __m512i *wv,
    __m512i bv, __mmask16 mk, const int S, const int OB, const int SG, const rq_ch *rc,
    const rq_vec *rv, uint8_t *yp, int nout) {
    __m512i acc[8];
    /* every column inside the image: plain loads at a running address, no masks */
    const int inside = ix0 >= 0 && ix0 + (OB - 1) * S + 3 <= W;
#pragma GCC unroll 8
    for (int j = 0; j < OB; j++) acc[j] = bv;
    for (int ky = 0; ky < 3; ky++) {
        if (ky < ky0 || ky >= ky1) continue;
        const __m512i w0 = wv[ky * 3], w1 = wv[ky * 3 + 1], w2 = wv[ky * 3 + 2];
        const uint8_t *xr = xb + (size_t)(iy0 + ky) * W * C;
        __m512i xv[(8 - 1) * 2 + 3];
        if (inside) {
            const uint8_t *xc = xr + (size_t)ix0 * C;
#pragma GCC unroll 17
            for (int col = 0; col < (OB - 1) * S + 3; col++, xc += C) {
                const __m128i raw = _mm_maskz_loadu_epi8(mk, xc);
                xv[col] = SG ? _mm512_cvtepi8_epi32(raw) : _mm512_cvtepu8_epi32(raw);
            }
        } else {
#pragma GCC unroll 17
            for (int col = 0; col < (OB - 1) * S + 3; col++) {
                const int ix = ix0 + col;
                const unsigned in = 0u - (unsigned)((unsigned)ix < (unsigned)W); /* ones inside */
                const __m128i raw = _mm_maskz_loadu_epi8((__mmask16)(mk & in),
                                                         xr + (size_t)((unsigned)ix & in) * C);
                xv[col] = SG ? _mm512_cvtepi8_epi32(raw) : _mm512_cvtepu8_epi32(raw);
            }
        }
#pragma GCC unroll 8
        for (int j = 0; j < OB; j++) {
            DPWSSD(acc[j], xv[j * S], w0);
            DPWSSD(acc[j], xv[j * S + 1], w1);
            DPWSSD(acc[j], xv[j * S + 2], w2);
        }
    }
#pragma GCC unroll 8
    for (int j = 0; j < OB; j++)
        if (j < nout) _mm_mask_storeu_epi8(yp + (size_t)j * C, mk, rq16c(acc[j], rc, rv));
}

/* dw3_block at stride 1, OB outputs, SG chosen at run time */
#define DW3(S, OB)                                                                       \
    do {                                                                                 \
        const int nout = OW - ox < OB ? OW - ox : OB;                                    \
        if (sgn)                                                                         \
            dw3_block(xb + cb, W, C, iy0, ix0, ky0, ky1, wv, bv, mk, S, OB, 1, &rc, rv, yo, nout); \
        else                                                                             \
            dw3_block(xb + cb, W, C, iy0, ix0, ky0, ky1, wv, bv, mk, S, OB, 0, &rc, rv, yo, nout); \
    } while (0)
/* One output row, 16 channels [cb, cb+nc) at a time, the block's weights in registers:
 * lanes of x (u8 zero- / s8 sign-extended) times lanes (w, 0) by vpdpwssd = x*w exactly. */
static void dw_rows_vnni(const dw_ctx *d, int r0, int r1, const rq_vec *rv) {
    const eq_conv_shape *s = d->s;
    const int C = s->c, H = s->h, W = s->w, OW = s->ow, KH = s->kh, KW = s->kw;
    const int DH = s->dh, DW = s->dw, sgn = d->x_dt == EQ_S8;
    /* channel blocks outside the rows: a block's weights and constants are set up once */
    for (int cb = 0; cb < C; cb += 16) {
        const int nc = C - cb < 16 ? C - cb : 16;
        const __mmask16 mk = lanes(nc);
        __m512i wv[DW_MAX_TAPS];
        for (int t = 0; t < KH * KW; t++)
            wv[t] = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mk, d->w + (size_t)t * C + cb));
        const __m512i bv = _mm512_maskz_loadu_epi32(mk, d->bias + cb);
        const rq_ch rc = rq_load(d->rq->mul + cb, d->rq->add + cb, nc, rv);
      for (int r = r0; r < r1; r++) {
        const int ni = r / s->oh, oy = r % s->oh, iy0 = oy * s->sh - s->pt;
        int ky0, ky1;
        tap_range(iy0, DH, KH, H, &ky0, &ky1);
        const uint8_t *xb = (const uint8_t *)d->x + (size_t)ni * H * W * C;
        uint8_t *yr = (uint8_t *)d->y + ((size_t)ni * s->oh + oy) * OW * C;
        const size_t xs = (size_t)s->sw * C; /* x step between neighbouring outputs */
        /* 3x3 stride 1: column reuse (stride 2 measured faster on the 4-output path) */
        /* 3x3, stride 1 or 2: column reuse */
        const int k33 = KH == 3 && KW == 3 && DH == 1 && DW == 1 && (s->sw == 1 || s->sw == 2);
        int ox = 0;
        for (; ox < OW; ox++) {
            const int ix0 = ox * s->sw - s->pl;
            uint8_t *yo = yr + (size_t)ox * C + cb;
            if (k33 && s->sw == 1) {
                if (OW >= 8) DW3(1, 8); else DW3(1, 4);
                ox += OW >= 8 ? 7 : 3;
                continue;
            }
            if (k33) {
                DW3(2, 4);
                ox += 3;
                continue;
            }
            if (ox + 4 <= OW && ix0 >= 0 && ix0 + 3 * s->sw + (KW - 1) * DW < W) {
                /* 4 interior outputs: 4 independent accumulator chains */
                __m512i a0 = bv, a1 = bv, a2 = bv, a3 = bv;
                for (int ky = ky0; ky < ky1; ky++) {
                    const uint8_t *xr = xb + ((size_t)(iy0 + ky * DH) * W + ix0) * C + cb;
                    for (int kx = 0; kx < KW; kx++) {
                        const uint8_t *xp = xr + (size_t)kx * DW * C;
                        const __m512i wk = wv[ky * KW + kx];
#define DW_LANE(A, J)                                                                    \
    {                                                                                    \
        const __m128i raw = _mm_maskz_loadu_epi8(mk, xp + (J) * xs);                     \
        const __m512i xw = sgn ? _mm512_cvtepi8_epi32(raw) : _mm512_cvtepu8_epi32(raw);  \
        DPWSSD(A, xw, wk);                                                               \
    }
                        DW_LANE(a0, 0)
                        DW_LANE(a1, 1)
                        DW_LANE(a2, 2)
                        DW_LANE(a3, 3)
#undef DW_LANE
                    }
                }
                const __m512i av[4] = {a0, a1, a2, a3};
                for (int j = 0; j < 4; j++)
                    _mm_mask_storeu_epi8(yr + (size_t)(ox + j) * C + cb, mk,
                                         rq16c(av[j], &rc, rv));
                ox += 3;
                continue;
            }
            int kx0, kx1;
            tap_range(ix0, DW, KW, W, &kx0, &kx1);
            __m512i acc = bv, acc2 = _mm512_setzero_si512(); /* two chains: half the latency */
            int odd = 0;
            for (int ky = ky0; ky < ky1; ky++) {
                const uint8_t *xr = xb + ((size_t)(iy0 + ky * DH) * W + ix0) * C + cb;
                for (int kx = kx0; kx < kx1; kx++, odd ^= 1) {
                    const __m128i raw = _mm_maskz_loadu_epi8(mk, xr + (size_t)kx * DW * C);
                    const __m512i xv = sgn ? _mm512_cvtepi8_epi32(raw) : _mm512_cvtepu8_epi32(raw);
                    if (odd)
                        DPWSSD(acc2, xv, wv[ky * KW + kx]);
                    else
                        DPWSSD(acc, xv, wv[ky * KW + kx]);
                }
            }
            acc = _mm512_add_epi32(acc, acc2);
            _mm_mask_storeu_epi8(yr + (size_t)ox * C + cb, mk, rq16c(acc, &rc, rv));
        }
      }
    }
}
#endif

static void dw_task(void *arg, int t, int nt) {
    const dw_ctx *d = (const dw_ctx *)arg;
    const eq_conv_shape *s = d->s;
    const int C = s->c, H = s->h, W = s->w, OH = s->oh, OW = s->ow, KH = s->kh, KW = s->kw;
    const int DH = s->dh, DW = s->dw;
    int32_t *acc = d->acc + (size_t)t * C;
    const int rows = s->n * OH, share = (rows + nt - 1) / nt;
    const int r0 = t * share, r1 = r0 + share < rows ? r0 + share : rows;
#ifdef EQ_NHWC_VNNI
    if (d->rq != NULL && (d->y_dt == EQ_U8 || d->y_dt == EQ_S8) && KH * KW <= DW_MAX_TAPS) {
        const rq_vec rv = rq_setup(d->rq, 0, C);
        if (r0 < r1) dw_rows_vnni(d, r0, r1, &rv);
        return;
    }
#endif
    for (int r = r0; r < r1; r++) {
        const int ni = r / OH, oy = r % OH, iy0 = oy * s->sh - s->pt;
        int ky0, ky1;
        tap_range(iy0, DH, KH, H, &ky0, &ky1);
        for (int ox = 0; ox < OW; ox++) {
            const int ix0 = ox * s->sw - s->pl;
            int kx0, kx1;
            tap_range(ix0, DW, KW, W, &kx0, &kx1);
            memcpy(acc, d->bias, sizeof(int32_t) * (size_t)C);
            if (d->x_dt == EQ_U8)
                DW_PIXEL(uint8_t)
            else
                DW_PIXEL(int8_t)
            store_channels(acc, C, 0, d->rq, d->y, d->y_dt, ((size_t)r * OW + ox) * C);
        }
    }
}

void eq_dw_nhwc(const eq_conv_shape *s, const void *x, int x_dt, const int16_t *w,
                const int32_t *bias, const eq_rq *rq, void *y, int y_dt, int32_t *acc,
                int threads) {
    const dw_ctx d = {s, x, x_dt, w, bias, rq, y, y_dt, acc};
    threads = threads < 1 ? 1 : threads;
    int shares = threads; /* the portable loop's scratch is per share */
#ifdef EQ_NHWC_VNNI
    if (rq != NULL && (y_dt == EQ_U8 || y_dt == EQ_S8) && s->kh * s->kw <= DW_MAX_TAPS)
        shares = threads > 1 ? 4 * threads : 1; /* no scratch: finer shares (eq_threads.c) */
#endif
    eq_parallel_shares(dw_task, (void *)&d, shares, threads);
}

/* ---- LayoutConvert: y = transpose(x, perm) of a 4-D tensor of element size es ---- */
/* NCHW -> NHWC of bytes (perm 0, 2, 3, 1; the model input before the first conv): one
 * contiguous read per channel plane, stores C bytes apart (measured 5x the general loop
 * for C = 3) */
static void nchw_to_nhwc8(const uint8_t *x, int n, int c, size_t hw, uint8_t *y) {
    for (int ni = 0; ni < n; ni++, x += (size_t)c * hw, y += (size_t)c * hw) {
        if (c == 3) { /* RGB: one interleaving pass (gcc vectorises it) */
            const uint8_t *r = x, *g = x + hw, *b = x + 2 * hw;
            for (size_t p = 0; p < hw; p++) {
                y[3 * p] = r[p];
                y[3 * p + 1] = g[p];
                y[3 * p + 2] = b[p];
            }
            continue;
        }
        for (int ci = 0; ci < c; ci++) {
            const uint8_t *src = x + (size_t)ci * hw;
            uint8_t *dst = y + ci;
            for (size_t p = 0; p < hw; p++) dst[p * (size_t)c] = src[p];
        }
    }
}

void eq_transpose4(const void *x, size_t es, const int *shape, const int *perm, void *y) {
    if (es == 1 && perm[0] == 0 && perm[1] == 2 && perm[2] == 3 && perm[3] == 1) {
        nchw_to_nhwc8((const uint8_t *)x, shape[0], shape[1], (size_t)shape[2] * shape[3],
                      (uint8_t *)y);
        return;
    }
    size_t st[4], acc = 1;
    for (int i = 3; i >= 0; i--) st[i] = acc, acc *= (size_t)shape[i];
    const int d0 = shape[perm[0]], d1 = shape[perm[1]], d2 = shape[perm[2]], d3 = shape[perm[3]];
    const size_t s0 = st[perm[0]], s1 = st[perm[1]], s2 = st[perm[2]], s3 = st[perm[3]];
    const uint8_t *xb = (const uint8_t *)x;
    uint8_t *o = (uint8_t *)y;
    for (int a = 0; a < d0; a++)
        for (int b = 0; b < d1; b++)
            for (int c = 0; c < d2; c++) {
                const uint8_t *src = xb + (a * s0 + b * s1 + c * s2) * es;
                if (es == 1)
                    for (int e = 0; e < d3; e++) *o++ = src[e * s3];
                else
                    for (int e = 0; e < d3; e++, o += es) memcpy(o, src + e * s3 * es, es);
            }
}

/* ---- MaxPool on NHWC u8/s8: the channel loop innermost; padding never wins (ONNX) ---- */
#define MAXPOOL_NHWC(T)                                                                   \
    {                                                                                     \
        const T *xb = (const T *)x;                                                       \
        T *yb = (T *)y;                                                                   \
        for (int ni = 0; ni < s->n; ni++)                                                 \
            for (int oy = 0; oy < s->oh; oy++)                                            \
                for (int ox = 0; ox < s->ow; ox++) {                                      \
                    const int iy0 = oy * s->sh - s->pt, ix0 = ox * s->sw - s->pl;         \
                    int ky0, ky1, kx0, kx1;                                               \
                    tap_range(iy0, s->dh, s->kh, s->h, &ky0, &ky1);                       \
                    tap_range(ix0, s->dw, s->kw, s->w, &kx0, &kx1);                       \
                    T *o = yb + (((size_t)ni * s->oh + oy) * s->ow + ox) * C;             \
                    int first = 1;                                                        \
                    for (int ky = ky0; ky < ky1; ky++)                                    \
                        for (int kx = kx0; kx < kx1; kx++) {                              \
                            const T *p = xb + (((size_t)ni * s->h + iy0 + ky * s->dh) * s->w + \
                                               ix0 + kx * s->dw) * C;                     \
                            if (first)                                                    \
                                memcpy(o, p, (size_t)C * sizeof(T));                      \
                            else                                                          \
                                for (int c = 0; c < C; c++) o[c] = p[c] > o[c] ? p[c] : o[c]; \
                            first = 0;                                                    \
                        }                                                                 \
                }                                                                         \
    }

void eq_maxpool_nhwc(const eq_pool_shape *s, const void *x, int dt, void *y) {
    const int C = s->c;
    if (dt == EQ_S8)
        MAXPOOL_NHWC(int8_t)
    else
        MAXPOOL_NHWC(uint8_t)
}
