/* Test harness of eq_gemm_nhwc / eq_conv_nhwc for a cross target (run under qemu):
 *   nhwc_harness IN.bin OUT.bin
 * IN: int64 header[32], then x (nx bytes), packed w (nw bytes), bias (m int32),
 * mul and add (m int64 each, when has_rq). OUT: the output tensor's bytes.
 * header: op (0 gemm, 1 conv), threads, x_dt, y_dt, has_rq, shift, lo, hi, nx, nw,
 *         ny (elements), y element size, rows, m, k, kp, then conv: the 16 int fields
 *         of eq_conv_shape from index 16. */
#include <stdio.h>
#include <stdlib.h>

#include "eq_kernels.h"

static void *read_n(FILE *f, size_t n) {
    void *p = malloc(n ? n : 1);
    if (p == NULL || fread(p, 1, n, f) != n) {
        fprintf(stderr, "short input\n");
        exit(2);
    }
    return p;
}

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    FILE *f = fopen(argv[1], "rb");
    if (f == NULL) return 2;
    int64_t *h = read_n(f, 32 * sizeof(int64_t));
    const int op = (int)h[0], threads = (int)h[1], x_dt = (int)h[2], y_dt = (int)h[3];
    const int m = (int)h[13], kp = (int)h[15];
    uint8_t *x = read_n(f, (size_t)h[8]);
    int8_t *w = read_n(f, (size_t)h[9]);
    int32_t *bias = read_n(f, (size_t)m * 4);
    eq_rq rq = {NULL, NULL, (int)h[5], h[6], h[7]};
    if (h[4]) {
        rq.mul = read_n(f, (size_t)m * 8);
        rq.add = read_n(f, (size_t)m * 8);
    }
    fclose(f);
    const size_t ybytes = (size_t)h[10] * (size_t)h[11];
    void *y = calloc(ybytes ? ybytes : 1, 1);
    if (op == 0) {
        eq_gemm_nhwc((int)h[12], m, (int)h[14], x, x_dt, w, kp, bias, h[4] ? &rq : NULL, y, y_dt,
                     threads);
    } else {
        int v[16];
        for (int i = 0; i < 16; i++) v[i] = (int)h[16 + i];
        const eq_conv_shape s = {v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7],
                                 v[8], v[9], v[10], v[11], v[12], v[13], v[14], v[15]};
        const size_t nc = (size_t)threads * (size_t)eq_nhwc_block(kp) * (size_t)kp;
        uint8_t *cols = malloc(nc);
        for (size_t i = 0; i < nc; i++) cols[i] = 99; /* garbage: the kernel must overwrite */
        eq_conv_nhwc(&s, x, x_dt, w, kp, bias, h[4] ? &rq : NULL, y, y_dt, cols, threads);
    }
    f = fopen(argv[2], "wb");
    if (f == NULL || fwrite(y, 1, ybytes, f) != ybytes || fclose(f) != 0) return 3;
    return 0;
}
