/* u8 x s8 -> s32 dot products written for gcc's vectoriser (vpdpbusd with AVX512-VNNI). */
#ifndef EQ_DOT_H
#define EQ_DOT_H
#include <stdint.h>

static inline void eq_dot4(const uint8_t *a, const int8_t *w, int kp, int32_t out[4]) {
    const int8_t *w0 = w, *w1 = w + kp, *w2 = w + 2 * kp, *w3 = w + 3 * kp;
    int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (int k = 0; k < kp; k++) {
        const int32_t x = a[k];
        s0 += x * w0[k];
        s1 += x * w1[k];
        s2 += x * w2[k];
        s3 += x * w3[k];
    }
    out[0] = s0, out[1] = s1, out[2] = s2, out[3] = s3;
}

static inline int32_t eq_dot1(const uint8_t *a, const int8_t *w, int kp) {
    int32_t s = 0;
    for (int k = 0; k < kp; k++) s += (int32_t)a[k] * w[k];
    return s;
}
#endif
